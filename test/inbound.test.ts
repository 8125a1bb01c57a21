/**
 * The inbound queue's flood control at its configured edges (`limits.maxPendingFrames`,
 * `limits.resumePendingFrames`): reading pauses one frame past the first and resumes exactly at
 * the second. End-to-end edges on each transport: hardening.test.ts (WebSocket) and
 * http-stream.test.ts (HTTP streaming).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InboundQueue } from '../src/server/inbound.js';
import { DEFAULT_LIMITS, resolveOptions } from '../src/server/options.js';
import { FakeTransport } from './fake-transport.js';

/** A task that waits until its gate opens; resolves when it has run. */
function gated(): { task: () => Promise<void>; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  return { task: () => gate, open };
}

/** Let the queue's promise chain settle (every task already open runs and its bookkeeping ends). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('inbound flood control', () => {
  for (const limits of [
    { maxPendingFrames: 4, resumePendingFrames: 1 },
    { maxPendingFrames: 3, resumePendingFrames: 0 },
    { maxPendingFrames: DEFAULT_LIMITS.maxPendingFrames, resumePendingFrames: DEFAULT_LIMITS.resumePendingFrames },
  ]) {
    test(`pauses past ${limits.maxPendingFrames} waiting frames and resumes at ${limits.resumePendingFrames}`, async () => {
      const transport = new FakeTransport();
      const queue = new InboundQueue(transport, limits);
      const tasks = Array.from({ length: limits.maxPendingFrames + 1 }, gated);
      for (const { task } of tasks.slice(0, -1)) queue.enqueue(task, (err) => assert.fail(String(err)));
      assert.equal(transport.isPaused, false, `${limits.maxPendingFrames} waiting: still reading`);
      queue.enqueue(tasks[tasks.length - 1]!.task, (err) => assert.fail(String(err)));
      assert.equal(transport.isPaused, true, 'one more: paused');
      // Finish tasks one by one: reading resumes when the waiting count reaches resumePendingFrames.
      for (let done = 1; done <= tasks.length; done++) {
        tasks[done - 1]!.open();
        await settle();
        const waiting = tasks.length - done;
        assert.equal(transport.isPaused, waiting > limits.resumePendingFrames, `${waiting} waiting`);
      }
      assert.equal(queue.idle, true);
    });
  }

  test('options: the limits are validated (resume below the pause point; resume may be 0)', () => {
    assert.deepEqual(
      [DEFAULT_LIMITS.maxPendingFrames, DEFAULT_LIMITS.resumePendingFrames, DEFAULT_LIMITS.maxEarlyMessages, DEFAULT_LIMITS.maxHeldMessages],
      [256, 32, 64, 256],
    );
    assert.equal(resolveOptions({ auth: { secret: 'x'.repeat(32) }, limits: { maxPendingFrames: 2, resumePendingFrames: 0 } }).limits.resumePendingFrames, 0);
    assert.throws(() => resolveOptions({ auth: { secret: 'x'.repeat(32) }, limits: { maxPendingFrames: 8, resumePendingFrames: 8 } }), /limits\.resumePendingFrames.*below limits\.maxPendingFrames \(8\)/);
    assert.throws(() => resolveOptions({ auth: { secret: 'x'.repeat(32) }, limits: { resumePendingFrames: 256 } }), /limits\.resumePendingFrames/);
    for (const key of ['maxPendingFrames', 'maxEarlyMessages', 'maxHeldMessages']) {
      assert.throws(() => resolveOptions({ auth: { secret: 'x'.repeat(32) }, limits: { [key]: 0 } }), new RegExp(`limits\\.${key}`), key);
    }
  });
});
