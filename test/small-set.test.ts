import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SmallSet } from '../src/server/small-set.js';

describe('SmallSet: a Set that holds one member inline', () => {
  test('empty, one member, then many: size, has and insertion order like a Set', () => {
    const set = new SmallSet<string>();
    assert.equal(set.size, 0);
    assert.equal(set.has('a'), false);
    assert.deepEqual([...set], []);
    set.add('a').add('a');
    assert.equal(set.size, 1);
    assert.equal(set.has('a'), true);
    assert.equal(set.has('b'), false);
    assert.deepEqual([...set], ['a']);
    set.add('b').add('c').add('b');
    assert.equal(set.size, 3);
    assert.deepEqual([...set], ['a', 'b', 'c']);
  });

  test('delete from one member and from many; a deleted member is gone and can come back', () => {
    const set = new SmallSet<number>();
    set.add(1);
    assert.equal(set.delete(2), false);
    assert.equal(set.delete(1), true);
    assert.equal(set.delete(1), false);
    assert.equal(set.size, 0);
    assert.deepEqual([...set], []);
    set.add(1).add(2).add(3);
    assert.equal(set.delete(2), true);
    assert.equal(set.delete(2), false);
    assert.deepEqual([...set], [1, 3]);
    set.delete(1);
    set.delete(3);
    assert.equal(set.size, 0);
    set.add(4);
    assert.deepEqual([...set], [4]);
    assert.equal(set.has(4), true);
  });

  test('undefined is never a member', () => {
    const set = new SmallSet<string | undefined>();
    assert.equal(set.has(undefined), false);
    assert.equal(set.delete(undefined), false);
    set.add('x');
    assert.equal(set.has(undefined), false);
  });
});
