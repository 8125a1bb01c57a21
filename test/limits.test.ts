import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { signToken, startServer, TestSocket, upgradeStatus, withTimeout } from './helpers.js';

describe('limits at their edges', () => {
  test('message size: exactly maxMessageBytes is accepted, one byte more closes 1009', async () => {
    const s = await startServer({ limits: { maxMessageBytes: 1024 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const frame = (n: number) => {
        const base = JSON.stringify({ event: 'ping', id: 'big', data: '' });
        return JSON.stringify({ event: 'ping', id: 'big', data: 'x'.repeat(n - base.length) });
      };
      assert.equal(Buffer.byteLength(frame(1024)), 1024);
      const reply = a.next((f) => f.id === 'big');
      a.send(frame(1024));
      assert.equal((await reply).event, 'ack');
      a.send(frame(1025));
      const { code } = await a.closed;
      assert.equal(code, 1009);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /chorus_limit_hits_total\{limit="message_size"\} 1/);
    } finally {
      await s.close();
    }
  });

  test('default message limit is 64 KiB', async () => {
    const s = await startServer();
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      a.send('x'.repeat(64 * 1024 + 1));
      assert.equal((await a.closed).code, 1009);
    } finally {
      await s.close();
    }
  });

  test('invalid UTF-8 closes 1007', async () => {
    const s = await startServer();
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      // ws refuses to send invalid UTF-8 as text; write the frame bytes by hand: FIN+text, masked, len 2.
      const payload = Buffer.from([0xc3, 0x28]);
      const mask = Buffer.from([1, 2, 3, 4]);
      const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
      (a.ws as any)._socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
      assert.equal((await a.closed).code, 1007);
    } finally {
      await s.close();
    }
  });

  test('rate limit: a burst of rateBurst passes, the next frame is RATE_LIMITED with retryAfterMs', async () => {
    const s = await startServer({ limits: { rateBurst: 5, ratePerSecond: 1, maxFaults: 100 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      a.send(Array.from({ length: 6 }, (_, i) => JSON.stringify({ event: 'ping', id: `r${i}` })).join('\n'));
      const last = await a.next((f) => f.id === 'r5');
      const replies = a.frames.filter((f) => f.id?.startsWith('r'));
      assert.deepEqual(replies.map((f) => f.event), ['ack', 'ack', 'ack', 'ack', 'ack', 'error']);
      assert.equal((last.data as any).code, 'RATE_LIMITED');
      assert.ok((last.data as any).retryAfterMs > 0 && (last.data as any).retryAfterMs <= 1000);
      a.close();
    } finally {
      await s.close();
    }
  });

  test('faults: maxFaults - 1 faulty frames are answered, the maxFaults-th closes 1008', async () => {
    const s = await startServer({ limits: { maxFaults: 4 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      for (let i = 0; i < 3; i++) {
        const e = a.next((f) => f.event === 'error');
        a.send('garbage');
        await e;
      }
      assert.equal(a.closeCode, undefined);
      await a.ok('ping');
      a.send('garbage');
      const disconnect = await a.next((f) => f.event === 'disconnect');
      assert.equal((disconnect.data as any).code, 1008);
      assert.equal((await a.closed).code, 1008);
    } finally {
      await s.close();
    }
  });

  test('subscriptions per connection: the limit-th works, one more is TOO_MANY_SUBSCRIPTIONS', async () => {
    const s = await startServer({ limits: { maxSubscriptionsPerConnection: 3 }, personalChannel: false });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      for (let i = 0; i < 3; i++) await a.ok('subscribe', { channel: `chat:${i}` });
      assert.equal(((await a.request('subscribe', { channel: 'chat:3' })).data as any).code, 'TOO_MANY_SUBSCRIPTIONS');
      await a.ok('unsubscribe', { channel: 'chat:0' });
      await a.ok('subscribe', { channel: 'chat:3' });
      a.close();
    } finally {
      await s.close();
    }
  });

  test('connections per user: the cap-th connects, one more gets 429, a freed slot is reusable', async () => {
    const s = await startServer({ limits: { maxConnectionsPerUser: 2 } });
    try {
      const token = await signToken('ada');
      const a = await TestSocket.connect(s.wsUrl, token);
      const b = await TestSocket.connect(s.wsUrl, token);
      const third = await upgradeStatus(`${s.wsUrl}?token=${token}`);
      assert.equal(third.status, 429);
      assert.equal(JSON.parse(third.body).error.code, 'TOO_MANY_CONNECTIONS');
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${await signToken('bob')}`)).status, 101, 'other users are unaffected');
      a.close();
      await a.closed;
      // The server side has processed the close once a new connection is accepted.
      let status = 0;
      for (let i = 0; i < 50 && status !== 101; i++) status = (await upgradeStatus(`${s.wsUrl}?token=${token}`)).status;
      assert.equal(status, 101);
      b.close();
    } finally {
      await s.close();
    }
  });

  test('default per-user cap is 5', async () => {
    const s = await startServer();
    try {
      const token = await signToken('ada');
      const sockets = [];
      for (let i = 0; i < 5; i++) sockets.push(await TestSocket.connect(s.wsUrl, token));
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 429);
      for (const x of sockets) x.close();
    } finally {
      await s.close();
    }
  });

  test('slow consumer: a client that does not read is closed with 4003 before memory grows', async () => {
    const maxQueuedBytes = 256 * 1024;
    const s = await startServer({ limits: { maxQueuedBytes }, personalChannel: false });
    try {
      const token = await signToken('slow');
      const ws = new WebSocket(`${s.wsUrl}?token=${token}`);
      const slow = new TestSocket(ws);
      await slow.next((f) => f.event === 'connected');
      await slow.ok('subscribe', { channel: 'chat:flood' });
      const fast = await TestSocket.connect(s.wsUrl, await signToken('fast'));
      await fast.ok('subscribe', { channel: 'chat:flood' });
      (ws as any)._socket.pause(); // stop reading: the kernel buffers fill, then the server's queue
      const payload = 'y'.repeat(8 * 1024);
      let closedServerSide = false;
      const serverConn = [...s.chorus.connections].find((c) => c.user === 'slow')!;
      let maxPending = 0;
      for (let i = 0; i < 5000 && !closedServerSide; i++) {
        await s.chorus.publish('chat:flood', { i, payload });
        maxPending = Math.max(maxPending, serverConn.pendingBytes);
        closedServerSide = serverConn.closing;
        if (i % 4 === 0) await new Promise((r) => setTimeout(r, 1));
      }
      assert.ok(closedServerSide, 'the slow consumer was disconnected');
      assert.equal(serverConn.closeCode, 4003);
      assert.ok(maxPending <= maxQueuedBytes, `pending bytes ${maxPending} stayed within the limit`);
      // The fast client is unaffected and keeps receiving.
      const before = fast.messages('chat:flood').length;
      await s.chorus.publish('chat:flood', { i: 'after' });
      await fast.find((f) => f.event === 'message' && (f.data as any).data.i === 'after');
      assert.ok(fast.messages('chat:flood').length > before);
      (ws as any)._socket.resume();
      await withTimeout(slow.closed, 5000, 'slow close');
      await withTimeout(
        (async () => {
          while (s.chorus.connections.has(serverConn)) await new Promise((r) => setTimeout(r, 10));
        })(),
        5000,
        'server cleanup',
      );
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /chorus_slow_consumer_disconnects_total 1/);
      assert.match(metrics, /chorus_disconnects_total\{code="4003"\} 1/);
      const log = s.logs.find((l) => l.msg === 'disconnected' && l.user === 'slow');
      assert.equal(log?.code, 4003);
      fast.close();
    } finally {
      await s.close();
    }
  });

  test('ephemeral frames are dropped first for a slow consumer', async () => {
    const maxQueuedBytes = 128 * 1024;
    const s = await startServer({
      limits: { maxQueuedBytes },
      personalChannel: false,
      namespaces: [{ pattern: 'cur:*', ephemeralPerSecond: 1_000_000 }],
    });
    try {
      const ws = new WebSocket(`${s.wsUrl}?token=${await signToken('slow')}`);
      const slow = new TestSocket(ws);
      await slow.next((f) => f.event === 'connected');
      await slow.ok('subscribe', { channel: 'cur:doc' });
      (ws as any)._socket.pause();
      const serverConn = [...s.chorus.connections].find((c) => c.user === 'slow')!;
      const payload = 'c'.repeat(8 * 1024);
      for (let i = 0; i < 400 && serverConn.pendingBytes <= maxQueuedBytes / 2; i++) {
        await s.chorus.publish('cur:doc', { i, payload }, { ephemeral: true });
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      for (let i = 0; i < 20; i++) await s.chorus.publish('cur:doc', { i, payload }, { ephemeral: true });
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /chorus_ephemeral_dropped_total [1-9]/);
      assert.equal(serverConn.closing, false, 'dropping ephemeral frames does not disconnect');
      (ws as any)._socket.resume();
      slow.close();
    } finally {
      await s.close();
    }
  });

  test('invalid options are rejected at construction, naming the key', async () => {
    const { ChorusServer } = await import('../src/server/index.js');
    assert.throws(() => new ChorusServer({ auth: { secret: 'x' }, limits: { maxMessageBytes: 0 } }), /limits\.maxMessageBytes/);
    assert.throws(() => new ChorusServer({ auth: { secret: 'x' }, limits: { nope: 1 } as any }), /limits\.nope/);
    assert.throws(() => new ChorusServer({}), /auth/);
    assert.throws(() => new ChorusServer({ auth: { secret: 'x' }, heartbeat: { intervalMs: 100, timeoutMs: 50 } }), /heartbeat\.timeoutMs/);
    assert.throws(
      () => new ChorusServer({ auth: { secret: 'x' }, namespaces: [{ pattern: 'a:*', publish: 'maybe' as any }] }),
      /namespaces\[0\]\.publish/,
    );
  });
});
