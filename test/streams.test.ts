import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { STREAM_META_TTL_MS, StreamTable } from '../src/engines/memory/index.js';

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

  test('a stream only read keeps its epoch at least the TTL after its last read, and is forgotten after two TTLs unread', () => {
    let now = 1_000_000;
    const table = new StreamTable(() => now);
    const quiet = table.position('read:quiet');
    const busy = table.position('read:busy');
    now += STREAM_META_TTL_MS - 1;
    assert.deepEqual(table.position('read:busy'), busy, 'within the TTL');
    now += 2; // a new generation: both were read in the last one
    assert.equal(table.sweep(), 0);
    assert.equal(table.size, 2);
    assert.deepEqual(table.position('read:busy'), busy, 'read again: kept for another generation');
    now += STREAM_META_TTL_MS; // another generation: read:quiet was not read in the last one
    assert.equal(table.sweep(), 1);
    assert.deepEqual(table.position('read:busy'), busy);
    assert.notEqual(table.position('read:quiet').epoch, quiet.epoch, 'forgotten: a new epoch (never a silent gap)');
    // Publishing to a stream only read keeps its epoch; reads see the same position and history.
    const before = table.position('read:busy');
    const stored = table.append({ channel: 'read:busy', data: 1, time: 0 }, { size: 10, ttlMs: 60000 });
    assert.equal(stored.epoch, before.epoch);
    assert.deepEqual(table.position('read:busy'), { offset: 1, epoch: before.epoch });
    const read = table.read('read:busy', { limit: 10 });
    assert.deepEqual(read.publications.map((p) => p.offset), [1]);
    assert.equal(read.firstOffset, 1);
    const empty = table.read('read:empty', { limit: 10, since: { offset: 0, epoch: table.position('read:empty').epoch } });
    assert.deepEqual(empty, { publications: [], position: { offset: 0, epoch: empty.position.epoch }, firstOffset: 1 });
    now += 3 * STREAM_META_TTL_MS; // long idle: every read-only stream is forgotten at once, and the published one expired
    assert.equal(table.sweep(), 3, 'read:quiet (made again above), read:empty and read:busy');
    assert.equal(table.size, 0);
  });
});

