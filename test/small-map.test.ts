import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SmallMap } from '../src/server/small-map.js';

/** Apply the same operations to a SmallMap and a Map and compare what every read returns. */
function compare(ops: Array<['set', unknown, unknown] | ['delete', unknown] | ['clear']>): void {
  const small = new SmallMap<unknown, unknown>();
  const real = new Map<unknown, unknown>();
  for (const op of ops) {
    if (op[0] === 'set') assert.equal(small.set(op[1], op[2]), small);
    if (op[0] === 'set') real.set(op[1], op[2]);
    if (op[0] === 'delete') assert.equal(small.delete(op[1]), real.delete(op[1]), `delete ${String(op[1])}`);
    if (op[0] === 'clear') {
      small.clear();
      real.clear();
    }
    assert.equal(small.size, real.size);
    assert.deepEqual([...small], [...real]);
    assert.deepEqual([...small.keys()], [...real.keys()]);
    assert.deepEqual([...small.values()], [...real.values()]);
    assert.deepEqual([...small.entries()], [...real.entries()]);
    for (const key of ['a', 'b', 'c', NaN, undefined, 0]) {
      assert.equal(small.has(key), real.has(key), `has ${String(key)}`);
      assert.equal(small.get(key), real.get(key), `get ${String(key)}`);
    }
    const seen: unknown[] = [];
    small.forEach(function (this: unknown, value, key, map) {
      assert.equal(map, small);
      assert.equal(this, 'ctx');
      seen.push([key, value]);
    }, 'ctx');
    assert.deepEqual(seen, [...real]);
  }
}

describe('SmallMap: a Map that holds one entry inline', () => {
  test('behaves as a Map through one entry, many, deletes and clear', () => {
    compare([
      ['set', 'a', 1],
      ['set', 'a', 2],
      ['delete', 'b'],
      ['set', 'b', 3],
      ['set', 'c', 4],
      ['delete', 'a'],
      ['delete', 'a'],
      ['set', 'a', 5],
      ['clear'],
      ['set', 'c', 6],
      ['delete', 'c'],
      ['delete', 'c'],
    ]);
  });

  test('keys as a Map compares them: NaN equals NaN, undefined is a key, values may be undefined', () => {
    compare([
      ['set', NaN, 'nan'],
      ['set', NaN, 'nan again'],
      ['delete', NaN],
      ['set', undefined, undefined],
      ['set', 0, 'zero'],
      ['delete', undefined],
    ]);
  });

  test('is typed and tagged as a Map', () => {
    const map: Map<string, number> = new SmallMap<string, number>();
    map.set('x', 1);
    assert.equal(Object.prototype.toString.call(map), '[object Map]');
    assert.deepEqual(new Map(map), new Map([['x', 1]]));
  });
});
