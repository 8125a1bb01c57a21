import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import type { Connection } from '../src/server/connection.js';
import { FlushLoop } from '../src/server/flush.js';

/** A stand-in connection that records when it was flushed. */
function fakeConnection(log: string[], name: string): Connection {
  return { id: name, flush: () => void log.push(name) } as unknown as Connection;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('FlushLoop: a lone frame goes out at once, a backlog is batched per turn', () => {
  test('after a quiet spell the flush runs in a microtask; right after a flush it waits for the next turn', async () => {
    let now = 1000;
    const log: string[] = [];
    const loop = new FlushLoop(pino({ level: 'silent' }), () => {}, () => now);
    loop.schedule(fakeConnection(log, 'a'));
    await Promise.resolve();
    assert.deepEqual(log, ['a'], 'flushed before the next turn');
    // A frame right after that flush (same ms): a backlog, so it waits for the next turn.
    loop.schedule(fakeConnection(log, 'b'));
    await Promise.resolve();
    assert.deepEqual(log, ['a'], 'not flushed in a microtask');
    await nextTurn();
    assert.deepEqual(log, ['a', 'b']);
    // Quiet again (more than BACKLOG_WINDOW_MS later): at once.
    now += 5;
    loop.schedule(fakeConnection(log, 'c'));
    await Promise.resolve();
    assert.deepEqual(log, ['a', 'b', 'c']);
  });
});
