import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { API_KEY, SECRET, api, signToken, startServer, TestSocket, upgradeStatus } from './helpers.js';

describe('metrics and logs', () => {
  test('metrics reflect connections, subscriptions, messages, bytes, publish latency, limits', async () => {
    const s = await startServer({ limits: { maxFaults: 100 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      await a.ok('subscribe', { channel: 'chat:m' });
      await a.ok('publish', { channel: 'chat:m', data: 'x' });
      await api(s.url, 'POST', '/api/publish', { channel: 'chat:m', data: 'y' });
      await a.find((f) => f.event === 'message' && (f.data as any).data === 'y');
      const text = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(text, /^chorus_connections 1$/m);
      assert.match(text, /^chorus_connections_total 1$/m);
      assert.match(text, /^chorus_subscriptions 2$/m); // chat:m + the personal channel
      assert.match(text, /^chorus_messages_in_total\{event="publish"\} 1$/m);
      // connected, subscribe ack, join, publish ack, two messages
      assert.match(text, /^chorus_messages_out_total 6$/m);
      assert.match(text, /^chorus_publications_total\{source="client"\} 1$/m);
      assert.match(text, /^chorus_publications_total\{source="api"\} 1$/m);
      assert.match(text, /^chorus_publish_duration_seconds_count\{source="client"\} 1$/m);
      assert.match(text, /^chorus_bytes_in_total [1-9]/m);
      assert.match(text, /^chorus_bytes_out_total [1-9]/m);
      a.close();
      await a.closed;
    } finally {
      await s.close();
    }
  });

  test('logs: connect, subscribe, disconnect with code and duration, auth failures; never a token, key or secret', async () => {
    const s = await startServer();
    try {
      const token = await signToken('ada');
      const badToken = await signToken('ada', { secret: 'wrong-wrong-wrong-wrong-wrong-wrong' });
      const expired = await signToken('ada', { expSeconds: -10 });
      await upgradeStatus(`${s.wsUrl}?token=${badToken}`);
      await upgradeStatus(s.wsUrl, { authorization: `Bearer ${expired}` });
      await api(s.url, 'POST', '/api/publish', { channel: 'chat:l', data: 1 }, 'wrong-key-wrong-key');
      await api(s.url, 'POST', '/api/publish', { channel: 'chat:l', data: 1 });
      const a = await TestSocket.connect(s.wsUrl, token);
      await a.ok('subscribe', { channel: 'chat:l' });
      await a.request('refresh', { token: badToken });
      await a.ok('refresh', { token });
      a.close();
      await a.closed;
      await s.close();
      const lines = s.rawLogs.join('\n');
      for (const secret of [token, badToken, expired, API_KEY, 'wrong-key-wrong-key', SECRET]) {
        assert.ok(!lines.includes(secret), 'a secret leaked into the logs');
        // Also no large fragment of it (e.g. the signature part).
        assert.ok(!lines.includes(secret.slice(-20)), 'a secret fragment leaked into the logs');
      }
      const msgs = s.logs.map((l) => l.msg);
      assert.ok(msgs.includes('connected'));
      assert.ok(msgs.includes('subscribed'));
      assert.equal(s.logs.filter((l) => l.msg === 'handshake rejected').length, 2);
      assert.ok(s.logs.some((l) => l.msg === 'API request rejected: bad or missing key'));
      const disconnected = s.logs.find((l) => l.msg === 'disconnected');
      assert.equal(disconnected?.code, 1005);
      assert.equal(typeof disconnected?.durationMs, 'number');
    } finally {
      await s.close();
    }
  });
});

describe('process metrics', () => {
  test('Node process metrics are exported by default and can be turned off', async () => {
    const on = await startServer();
    const off = await startServer({ processMetrics: false });
    try {
      const withProcess = await (await fetch(`${on.url}/metrics`)).text();
      assert.match(withProcess, /^chorus_process_resident_memory_bytes \d+/m);
      assert.match(withProcess, /^chorus_nodejs_eventloop_lag_seconds /m);
      const without = await (await fetch(`${off.url}/metrics`)).text();
      assert.doesNotMatch(without, /chorus_process_|chorus_nodejs_/);
    } finally {
      await on.close();
      await off.close();
    }
  });
});

describe('limit hits are logged', () => {
  test('each limit is logged with the connection, at most once per 10 s per connection', async () => {
    const s = await startServer({ limits: { rateBurst: 3, ratePerSecond: 1, maxFaults: 1000, maxSubscriptionsPerConnection: 2 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      a.send(Array.from({ length: 10 }, (_, i) => JSON.stringify({ event: 'ping', id: `p${i}` })).join('\n'));
      await a.find((f) => f.id === 'p9');
      const rateLogs = s.logs.filter((l) => l.msg === 'limit hit' && l.limit === 'rate');
      assert.equal(rateLogs.length, 1, 'seven rate-limited frames, one log line');
      assert.equal(rateLogs[0]!.user, 'ada');
      assert.match(String(rateLogs[0]!.client), /^c_/);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /chorus_limit_hits_total\{limit="rate"\} 7/);
      a.close();
    } finally {
      await s.close();
    }
  });
});
