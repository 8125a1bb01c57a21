import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StreamTable } from '../src/engines/memory/index.js';

describe('memory streams', () => {
  test('streams only read (never published) are capped, oldest first; published streams are never evicted for it', () => {
    const table = new StreamTable(Date.now, 3);
    table.append({ channel: 'pub:1', data: 1, time: 0 }, { size: 10, ttlMs: 60000 });
    const first = table.position('read:1');
    for (const c of ['read:2', 'read:3']) table.position(c);
    assert.equal(table.size, 4);
    assert.deepEqual(table.position('read:1'), first, 'within the cap: kept');
    table.position('read:4'); // a fourth read-only stream: read:1, the oldest, is forgotten
    assert.equal(table.size, 4);
    assert.notEqual(table.position('read:1').epoch, first.epoch, 'forgotten: a new epoch (never a silent gap)');
    assert.equal(table.position('pub:1').offset, 1, 'the published stream stays');
    // Publishing to a read stream takes it out of the cap.
    table.append({ channel: 'read:4', data: 1, time: 0 }, undefined);
    for (const c of ['read:5', 'read:6', 'read:7']) table.position(c);
    assert.equal(table.position('read:4').offset, 1);
  });
});
