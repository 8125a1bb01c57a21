import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TurnBatch } from '../src/engines/redis/turn-batch.js';

describe('TurnBatch: the requests of one event-loop turn as one command', () => {
  test('requests from separate callbacks of one turn go out together, each gets its own result', async () => {
    const sent: number[][] = [];
    const batch = new TurnBatch<number, number>(async (items) => {
      sent.push(items);
      return items.map((n) => n * 10);
    });
    // Two timers due together run in one timers phase of the loop, before its check phase.
    const results = await Promise.all([
      new Promise<number>((resolve) => setTimeout(() => void batch.add(1).then(resolve), 1)),
      new Promise<number>((resolve) => setTimeout(() => void batch.add(2).then(resolve), 1)),
    ]);
    assert.deepEqual(results, [10, 20]);
    assert.deepEqual(sent, [[1, 2]]);
    assert.equal(await batch.add(3), 30);
    assert.deepEqual(sent, [[1, 2], [3]]);
  });

  test('a full batch is sent at once; the rest waits for the end of the turn', async () => {
    const sent: string[][] = [];
    const batch = new TurnBatch<string, string>(async (items) => {
      sent.push(items);
      return items.map((s) => s.toUpperCase());
    }, 2);
    const pending = ['a', 'b', 'c'].map((s) => batch.add(s));
    assert.deepEqual(sent, [['a', 'b']]);
    assert.deepEqual(await Promise.all(pending), ['A', 'B', 'C']);
    assert.deepEqual(sent, [['a', 'b'], ['c']]);
  });

  test('a failed command, a throwing sender or a reply of the wrong length fails every request of the batch', async () => {
    const failing = new TurnBatch<number, number>(() => Promise.reject(new Error('down')));
    const a = await Promise.allSettled([failing.add(1), failing.add(2)]);
    assert.deepEqual(a.map((r) => r.status), ['rejected', 'rejected']);
    const throwing = new TurnBatch<number, number>(() => {
      throw new Error('bad arguments');
    });
    await assert.rejects(throwing.add(1), /bad arguments/);
    const short = new TurnBatch<number, number>(async () => [1]);
    const b = await Promise.allSettled([short.add(1), short.add(2)]);
    assert.deepEqual(b.map((r) => r.status), ['rejected', 'rejected']);
    assert.match(String((b[0] as PromiseRejectedResult).reason), /1 results for 2 requests/);
  });
});
