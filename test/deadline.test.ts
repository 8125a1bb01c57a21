import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Deadline, DeadlineExceededError } from '../src/engines/deadline.js';

describe('Deadline: one budget for an operation of several waits', () => {
  test('each step gets what is left: a spent budget rejects the next step at once', async () => {
    let t = 1000;
    const deadline = new Deadline(100, () => t);
    assert.equal(await deadline.race(Promise.resolve('first'), 'step 1'), 'first');
    t += 60;
    assert.equal(deadline.remaining(), 40);
    t += 40;
    assert.equal(deadline.expired, true);
    await assert.rejects(deadline.race(new Promise(() => {}), 'step 2'), (err: unknown) => {
      assert.ok(err instanceof DeadlineExceededError);
      assert.equal(err.code, 'DEADLINE_EXCEEDED');
      assert.equal(err.message, "step 2: no answer within the operation's 100 ms");
      return true;
    });
  });

  test('a step that never settles is cut off when the budget runs out; its own error passes through otherwise', async () => {
    const deadline = new Deadline(30, Date.now);
    const keepAlive = setTimeout(() => {}, 5000); // the Deadline's own timer is unref'd
    await assert.rejects(deadline.race(new Promise(() => {}), 'hang'), { code: 'DEADLINE_EXCEEDED' });
    clearTimeout(keepAlive);
    const other = new Deadline(1000, Date.now);
    await assert.rejects(other.race(Promise.reject(new Error('refused')), 'step'), /refused/);
  });
});
