import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { signToken, startServer, TestSocket, upgradeStatus } from './helpers.js';

describe('graceful shutdown', () => {
  test('clients get a disconnect frame with a reconnect hint and close 1001; health turns 503; new upgrades 503', async () => {
    const s = await startServer({ shutdown: { drainTimeoutMs: 2000, reconnectSpreadMs: 3000 } });
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const b = await TestSocket.connect(s.wsUrl, await signToken('bob'));
    await a.ok('subscribe', { channel: 'chat:bye' });
    await s.chorus.publish('chat:bye', { last: true });
    const closing = s.chorus.close();
    const health = await fetch(`${s.url}/healthz`);
    assert.equal(health.status, 503);
    const up = await upgradeStatus(`${s.wsUrl}?token=${await signToken('carol')}`);
    assert.equal(up.status, 503);
    assert.equal(JSON.parse(up.body).error.code, 'SHUTTING_DOWN');
    for (const x of [a, b]) {
      const d = (await x.find((f) => f.event === 'disconnect')).data as any;
      assert.equal(d.code, 1001);
      assert.equal(d.reconnect, true);
      assert.ok(d.retryAfterMs >= 0 && d.retryAfterMs < 3000);
      assert.equal((await x.closed).code, 1001);
    }
    // Drained: the publication queued before shutdown was delivered before the close.
    assert.equal(a.messages('chat:bye').length, 1);
    await closing;
    s.http.closeAllConnections();
    await new Promise<void>((r) => s.http.close(() => r()));
  });

  test('a client that ignores the close is terminated after the drain timeout', async () => {
    const s = await startServer({ shutdown: { drainTimeoutMs: 200, reconnectSpreadMs: 0 } });
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    (a.ws as any)._socket.pause();
    const started = Date.now();
    await s.chorus.close();
    assert.ok(Date.now() - started < 2000);
    assert.equal(s.chorus.connections.size, 0);
    (a.ws as any)._socket.resume();
    await a.closed;
    s.http.closeAllConnections();
    await new Promise<void>((r) => s.http.close(() => r()));
  });
});
