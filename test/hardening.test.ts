import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { MemoryEngine } from '../src/engines/memory/index.js';
import { ChorusError } from '../src/protocol/index.js';
import { signToken, startServer, TestSocket, upgradeStatus, until } from './helpers.js';
import { DEFAULT_LIMITS } from '../src/server/options.js';

describe('replies the client asked for are bounded by bytes, not treated as a slow consumer', () => {
  test('a history page stops at half the send queue; paging on gets the rest; the connection stays', async () => {
    const maxQueuedBytes = 256 * 1024;
    const s = await startServer({ limits: { maxQueuedBytes }, namespaces: [{ pattern: 'big:*', historySize: 100 }] });
    try {
      const payload = 'p'.repeat(30 * 1024);
      for (let i = 0; i < 20; i++) await s.chorus.publish('big:h', { i, payload });
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const seen: number[] = [];
      let since: { offset: number; epoch: string } | undefined;
      for (let page = 0; page < 20; page++) {
        const r = await a.ok('history', { channel: 'big:h', ...(since ? { since } : {}) });
        if (r.publications.length === 0) break;
        assert.ok(JSON.stringify(r.publications).length <= maxQueuedBytes / 2 + 31 * 1024, 'one page stays near half the queue');
        for (const p of r.publications) seen.push(p.offset);
        since = { offset: r.publications[r.publications.length - 1].offset, epoch: r.epoch };
        if (since.offset === r.offset) break;
      }
      assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1));
      assert.equal(a.closeCode, undefined);
      a.close();
    } finally {
      await s.close();
    }
  });

  test('recovery up to half the send queue is delivered; more is recovered:false; neither disconnects', async () => {
    const maxQueuedBytes = 512 * 1024;
    const s = await startServer({ limits: { maxQueuedBytes }, namespaces: [{ pattern: 'big:*', historySize: 100 }] });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const start = await a.ok('subscribe', { channel: 'big:r' });
      await a.ok('unsubscribe', { channel: 'big:r' });
      const payload = 'r'.repeat(20 * 1024);
      for (let i = 0; i < 10; i++) await s.chorus.publish('big:r', { i, payload }); // ~200 KiB: fits
      const ok = await a.ok('subscribe', { channel: 'big:r', since: { offset: start.offset, epoch: start.epoch } });
      assert.equal(ok.recovered, true);
      assert.equal(a.messages('big:r').length, 10);
      await a.ok('unsubscribe', { channel: 'big:r' });
      for (let i = 0; i < 15; i++) await s.chorus.publish('big:r', { i, payload }); // ~300 KiB missed: more than half the queue
      const before = a.messages('big:r').length;
      const tooMuch = await a.ok('subscribe', { channel: 'big:r', since: { offset: ok.offset, epoch: ok.epoch } });
      assert.equal(tooMuch.recovered, false);
      assert.equal(a.messages('big:r').length, before, 'nothing partial');
      await a.ok('ping');
      assert.equal(a.closeCode, undefined);
      a.close();
    } finally {
      await s.close();
    }
  });

  test('several recoveries at once share the budget: none disconnects, each is whole or recovered:false', async () => {
    const maxQueuedBytes = 256 * 1024;
    const s = await startServer({ limits: { maxQueuedBytes }, namespaces: [{ pattern: 'big:*', historySize: 100 }] });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const channels = ['big:1', 'big:2', 'big:3'];
      const starts: Array<{ offset: number; epoch: string }> = [];
      for (const channel of channels) starts.push(await a.ok('subscribe', { channel }));
      for (const channel of channels) await a.ok('unsubscribe', { channel });
      const payload = 'z'.repeat(20 * 1024);
      for (const channel of channels) for (let i = 0; i < 5; i++) await s.chorus.publish(channel, { i, payload }); // ~100 KiB each
      // Resubscribe all three in one message (like a client after a reconnect), plus a live publication meanwhile.
      const frames = channels.map((channel, i) =>
        JSON.stringify({ event: 'subscribe', id: `r${i}`, data: { channel, since: { offset: starts[i]!.offset, epoch: starts[i]!.epoch } } }),
      );
      a.send(frames.join('\n'));
      void s.chorus.publish('big:1', { live: true, payload });
      const acks: Array<{ event: string; data?: unknown }> = [];
      for (let i = 0; i < 3; i++) acks.push(await a.find((f) => f.id === `r${i}`));
      for (const [i, ack] of acks.entries()) {
        assert.equal(ack.event, 'ack');
        const got = a.messages(channels[i]).filter((m: any) => !m.data.live).length;
        assert.equal(got, (ack.data as any).recovered ? 5 : 0, `${channels[i]}: whole or nothing`);
      }
      assert.equal((acks[0]!.data as any).recovered, true, 'the first fits its budget');
      await a.ok('ping');
      assert.equal(a.closeCode, undefined, 'not treated as a slow consumer');
      a.close();
    } finally {
      await s.close();
    }
  });

  test('queued frames are split into WebSocket messages of at most maxMessageBytes', async () => {
    const s = await startServer({ limits: { maxMessageBytes: 16 * 1024 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      await a.ok('subscribe', { channel: 'chat:split' });
      const sizes: number[] = [];
      a.ws.on('message', (data: Buffer) => sizes.push(data.length));
      const payload = 'x'.repeat(3000);
      await Promise.all(Array.from({ length: 30 }, (_, i) => s.chorus.publish('chat:split', { i, payload })));
      await a.find((f) => f.event === 'message' && (f.data as any).data.i === 29);
      assert.equal(a.messages('chat:split').length, 30);
      assert.ok(sizes.length > 1, 'several messages');
      assert.ok(sizes.every((n) => n <= 16 * 1024), `message sizes ${sizes.join(',')}`);
      a.close();
    } finally {
      await s.close();
    }
  });
});

describe('a flood behind a slow handler is paused, not buffered', () => {
  for (const configured of [undefined, { maxPendingFrames: 8, resumePendingFrames: 2 }]) {
    const max = configured?.maxPendingFrames ?? DEFAULT_LIMITS.maxPendingFrames;
    const n = configured ? 60 : 1000;
    test(`exactly ${max} waiting frames (${configured ? 'limits.maxPendingFrames' : 'the default'}) do not pause; one more does; everything is answered once the handler frees up`, async () => {
      const s = await startServer({ limits: { ratePerSecond: 1_000_000, rateBurst: 1_000_000, ...configured } });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const handlerEntered = new Promise<void>((r) => (entered = r));
      s.chorus.on('slow', async () => {
        entered();
        await gate;
        return 'done';
      });
      try {
        const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
        const conn = [...s.chorus.connections][0]!;
        const batch = (from: number, count: number) =>
          Array.from({ length: count }, (_, i) => JSON.stringify({ event: 'slow', id: `s${from + i}` })).join('\n');
        // One message: all of its frames are queued before the first handler runs.
        a.send(batch(0, max));
        await handlerEntered;
        assert.equal((conn.ws as any).isPaused, false, `${max} waiting frames: still reading`);
        a.send(batch(max, 1));
        await until('socket paused', () => (conn.ws as any).isPaused === true);
        a.send(batch(max + 1, n - max - 1));
        release();
        await a.find((f) => f.id === `s${n - 1}`, 10000);
        assert.equal(a.frames.filter((f) => f.event === 'ack' && f.id?.startsWith('s')).length, n);
        await until('socket resumed', () => (conn.ws as any).isPaused === false);
        a.close();
      } finally {
        await s.close();
      }
    });
  }
});

/** A memory engine whose operations can be made to fail, like a Redis outage would. */
class FlakyEngine extends MemoryEngine {
  failSubscribe = 0;
  subscribeDelay: Promise<void> | undefined;
  failPresenceRemove = false;
  failPosition = false;
  override async subscribe(channel: string): Promise<void> {
    if (this.subscribeDelay) await this.subscribeDelay;
    if (this.failSubscribe > 0) {
      this.failSubscribe--;
      throw new ChorusError('UNAVAILABLE', 'engine down');
    }
    return super.subscribe(channel);
  }
  override async position(channel: string) {
    if (this.failPosition) throw new ChorusError('UNAVAILABLE', 'engine down');
    return super.position(channel);
  }
  constructor() {
    super();
    const remove = this.presence.remove.bind(this.presence);
    this.presence.remove = async (channel: string, clientId: string) => {
      if (this.failPresenceRemove) throw new ChorusError('UNAVAILABLE', 'engine down');
      return remove(channel, clientId);
    };
  }
}

describe('engine failures', () => {
  test('subscribers waiting on a failed broker subscription all fail; the next one subscribes for real', async () => {
    const engine = new FlakyEngine();
    const s = await startServer({ engine, personalChannel: false });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const b = await TestSocket.connect(s.wsUrl, await signToken('bob'));
      let open!: () => void;
      engine.subscribeDelay = new Promise<void>((r) => (open = r));
      engine.failSubscribe = 1;
      const ra = a.request('subscribe', { channel: 'chat:flaky' });
      // Let a's subscribe reach the engine before b's arrives.
      await until('a waits on the engine', () => s.chorus.hub.channels.get('chat:flaky')?.size === 1);
      const rb = b.request('subscribe', { channel: 'chat:flaky' });
      await until('b waits too', () => s.chorus.hub.channels.get('chat:flaky')?.size === 2);
      open();
      engine.subscribeDelay = undefined;
      assert.equal(((await ra).data as any).code, 'UNAVAILABLE');
      assert.equal(((await rb).data as any).code, 'UNAVAILABLE', 'b is not acked on a subscription that never happened');
      assert.equal(s.chorus.hub.channels.has('chat:flaky'), false);
      await b.ok('subscribe', { channel: 'chat:flaky' });
      await s.chorus.publish('chat:flaky', 'works');
      await b.find((f) => f.event === 'message' && (f.data as any).data === 'works');
      a.close();
      b.close();
    } finally {
      await s.close();
    }
  });

  test('unsubscribe is acked even when the engine fails to remove presence; server-side unsubscribe does not crash', async () => {
    const engine = new FlakyEngine();
    const s = await startServer({ engine });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      await a.ok('subscribe', { channel: 'chat:p' });
      await a.ok('subscribe', { channel: 'chat:q' });
      engine.failPresenceRemove = true;
      assert.deepEqual(await a.ok('unsubscribe', { channel: 'chat:p' }), { channel: 'chat:p' });
      await s.chorus.unsubscribeUser('ada', 'chat:q');
      await a.next((f) => f.event === 'unsubscribed');
      assert.ok(s.logs.some((l) => l.msg === 'presence removal failed; the entry expires by TTL'));
      await a.ok('ping');
      a.close();
    } finally {
      await s.close();
    }
  });

  test('a personal channel the engine cannot subscribe closes the connection with 4004 (reconnect)', async () => {
    const engine = new FlakyEngine();
    const s = await startServer({ engine });
    try {
      engine.failPosition = true;
      const ws = new WebSocket(`${s.wsUrl}?token=${await signToken('ada')}`);
      const a = new TestSocket(ws);
      const disconnect = await a.next((f) => f.event === 'disconnect');
      assert.equal((disconnect.data as any).code, 4004);
      assert.equal((disconnect.data as any).reconnect, true);
      assert.equal((await a.closed).code, 4004);
      assert.equal(a.frames.some((f) => f.event === 'connected'), false);
    } finally {
      await s.close();
    }
  });
});

describe('handshake edge cases', () => {
  test('an invalid WebSocket upgrade gets a JSON 400 before authentication and holds no connection slot', async () => {
    const s = await startServer({ limits: { maxConnectionsPerUser: 1 } });
    try {
      const token = await signToken('ada');
      const socket = net.connect(s.port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write(`GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      let response = '';
      socket.on('data', (c: Buffer) => (response += c.toString()));
      await once(socket, 'close');
      assert.match(response, /^HTTP\/1\.1 400 /);
      assert.match(response, /"code":"BAD_REQUEST"/);
      assert.match(response, /Sec-WebSocket-Key/);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 101, 'the slot was never taken');
    } finally {
      await s.close();
    }
  });

  test('same-origin check normalises default ports', async () => {
    const s = await startServer();
    try {
      const token = await signToken('ada');
      // ws sets Host to 127.0.0.1:<port>; the origin with that exact port passes, another port does not.
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`, { origin: `http://127.0.0.1:${s.port}` })).status, 101);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`, { origin: `http://127.0.0.1:${s.port + 1}` })).status, 403);
      const { originAllowed } = await import('../src/server/handshake.js');
      const req = (host: string, origin: string) => ({ headers: { host, origin } }) as any;
      assert.equal(originAllowed(req('chat.example.com:80', 'http://chat.example.com'), undefined), true);
      assert.equal(originAllowed(req('chat.example.com:443', 'https://chat.example.com'), undefined), true);
      assert.equal(originAllowed(req('chat.example.com', 'https://chat.example.com:8443'), undefined), false);
      assert.equal(originAllowed(req('chat.example.com', 'https://evil.example.com'), undefined), false);
    } finally {
      await s.close();
    }
  });

  test('peer-chosen close codes are bucketed in the disconnect metric', async () => {
    const s = await startServer();
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      a.ws.close(4321, 'custom');
      await a.closed;
      await until('metric', async () => /chorus_disconnects_total\{code="4xxx"\} 1/.test(await (await fetch(`${s.url}/metrics`)).text()));
    } finally {
      await s.close();
    }
  });
});

describe('extension denials', () => {
  test('a plain Error from onSubscribe or beforePublish denies with PERMISSION_DENIED, its message hidden', async () => {
    const s = await startServer();
    s.chorus.use({
      onSubscribe: ({ channel }) => {
        if (channel === 'chat:no') throw new Error('internal detail');
      },
      beforePublish: ({ channel }) => {
        if (channel === 'chat:nopub') throw new Error('internal detail');
      },
    });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const sub = (await a.request('subscribe', { channel: 'chat:no' })).data as any;
      assert.equal(sub.code, 'PERMISSION_DENIED');
      assert.ok(!JSON.stringify(sub).includes('internal detail'));
      const pub = (await a.request('publish', { channel: 'chat:nopub', data: 1 })).data as any;
      assert.equal(pub.code, 'PERMISSION_DENIED');
      await a.ok('subscribe', { channel: 'chat:yes' });
      a.close();
    } finally {
      await s.close();
    }
  });
});

describe('subscription races', () => {
  test('a cancelled subscribe does not undo a newer subscription to the same channel', async () => {
    const engine = new MemoryEngine();
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let reached!: () => void;
    const atPosition = new Promise<void>((r) => (reached = r));
    const position = engine.position.bind(engine);
    let calls = 0;
    engine.position = async (channel: string) => {
      if (channel === 'chat:x' && ++calls === 1) {
        reached();
        await opened;
      }
      return position(channel);
    };
    const s = await startServer({ engine });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const conn = [...s.chorus.connections][0]!;
      const clientSubscribe = a.request('subscribe', { channel: 'chat:x' });
      await atPosition; // the client's subscribe is catching up
      await s.chorus.unsubscribeConnection(conn, 'chat:x', 'moved');
      await s.chorus.subscribeConnection(conn, 'chat:x');
      open();
      const reply = await clientSubscribe;
      assert.equal(reply.event, 'error');
      assert.equal((reply.data as any).code, 'NOT_SUBSCRIBED');
      assert.ok(conn.subscriptions.has('chat:x'), 'the newer, server-side subscription stands');
      await s.chorus.publish('chat:x', 'hello');
      await a.find((f) => f.event === 'message' && (f.data as any).data === 'hello');
      a.close();
    } finally {
      await s.close();
    }
  });
});
