/**
 * Bidirectional HTTP streaming (`GET /stream` down, `POST /stream/<session>?seq=n` up): the same
 * frames, acks and limits as a WebSocket (size, rate, heartbeat, slow consumer, token expiry),
 * POSTs applied in seq order, flood control at its edges (a POST to a paused session waits; at
 * most 256 forwarded messages held while paused, the 257th closes 1008), and a cluster without sticky sessions: two nodes behind a
 * per-request round-robin HTTP proxy, POSTs reaching the other node forwarded to the stream's.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { TestBus } from '../src/engines/bus/index.js';
import { RedisEngine } from '../src/engines/redis/index.js';
import type { Engine } from '../src/engines/types.js';
import { RedisProcess } from './redis-helpers.js';
import { newSessionId, sessionNode, type HttpStreamTransport } from '../src/server/transports/http-stream.js';
import { SECRET, signToken, startServer, until, withServer, withTimeout, type TestServer } from './helpers.js';
import { DEFAULT_LIMITS, type Limits } from '../src/server/options.js';

/** A raw HTTP streaming client: reads frames line by line, POSTs messages with seq numbers. */
class StreamClient {
  readonly frames: any[] = [];
  session = '';
  status = 0;
  ended = false;
  body = '';
  private seq = 0;
  private buffer = '';
  private waiters: Array<() => void> = [];
  private req: http.ClientRequest | undefined;
  res: http.IncomingMessage | undefined;

  static async open(base: string, token: string, options: { paused?: boolean } = {}): Promise<StreamClient> {
    const client = new StreamClient(base);
    await new Promise<void>((resolve, reject) => {
      client.req = http.get(`${base}/stream?token=${token}`, (res) => {
        client.res = res;
        client.status = res.statusCode ?? 0;
        client.session = String(res.headers['chorus-session'] ?? '');
        if (options.paused) res.pause();
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (client.status === 200 ? client.feed(chunk) : (client.body += chunk)));
        const end = () => {
          client.ended = true;
          client.wake();
        };
        res.on('end', end);
        res.on('close', end);
        resolve();
      });
      client.req.on('error', reject);
    });
    return client;
  }

  constructor(readonly base: string) {}

  private feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 1);
      if (line) this.frames.push(JSON.parse(line));
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  async find(match: (f: any) => boolean, what = 'frame', ms = 10_000): Promise<any> {
    return withTimeout(
      (async () => {
        for (;;) {
          const found = this.frames.find(match);
          if (found) return found;
          if (this.ended) throw new Error(`stream ended while waiting for ${what}`);
          await new Promise<void>((resolve) => this.waiters.push(resolve));
        }
      })(),
      ms,
      what,
    );
  }

  async until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
    await this.find(() => check(), what, ms).catch(async (err) => {
      if (!check()) throw err;
    });
  }

  /** POST one message (frames joined with newlines) with the next seq, or a given one. */
  async post(frames: unknown[] | string, seq = this.seq++, base = this.base): Promise<{ status: number; body: string }> {
    const body = typeof frames === 'string' ? frames : frames.map((f) => JSON.stringify(f)).join('\n');
    const res = await fetch(`${base}/stream/${this.session}?seq=${seq}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body });
    return { status: res.status, body: await res.text() };
  }

  close(): void {
    this.req?.destroy();
  }
}

/** Frames enough for any test here: flood control, not the rate limit, is what they reach. */
const NO_RATE_LIMIT = { limits: { ratePerSecond: 10_000, rateBurst: 10_000 } };

/**
 * A session on `s` whose reading is paused (flood control): an extension holds a subscribe until
 * `release`, and `limits.maxPendingFrames` pings queued behind it make one frame too many waiting.
 */
async function pausedSession(s: TestServer): Promise<{ client: StreamClient; transport: HttpStreamTransport; release: () => void }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  s.chorus.use({ name: 'hold-subscribe', onSubscribe: () => released });
  const client = await StreamClient.open(s.url, await signToken('ada'));
  await client.find((f) => f.event === 'connected');
  const pings = Array.from({ length: s.chorus.options.limits.maxPendingFrames }, (_, i) => ({ event: 'ping', id: `q${i}` }));
  assert.equal((await client.post([{ event: 'subscribe', id: 's', data: { channel: 'chat:held' } }, ...pings])).status, 204);
  const transport = [...s.chorus.connections][0]!.transport as HttpStreamTransport;
  assert.equal(transport.isPaused, true, 'reading paused');
  return { client, transport, release };
}

/** Ids of the ping acks in wire order. */
function pingAcks(client: StreamClient): string[] {
  return client.frames.filter((f) => f.event === 'ack' && typeof f.id === 'string' && f.id !== 's').map((f) => f.id);
}

describe('session ids', () => {
  test('name their node; anything else is not a session', () => {
    const sid = newSessionId('node a/1');
    assert.equal(sessionNode(sid), 'node a/1');
    for (const bad of ['', 'abc', 'n1.xyz', `.${'0'.repeat(32)}`, `%E0%A4%A.${'0'.repeat(32)}`]) assert.equal(sessionNode(bad), undefined, bad);
  });
});

describe('HTTP streaming', () => {
  test('the same frames and acks as a WebSocket; POSTs applied in seq order, repeats dropped', async () => {
    await withServer({}, async (s) => {
      const client = await StreamClient.open(s.url, await signToken('ada'));
      assert.equal(client.status, 200);
      assert.match(client.session, /\.[0-9a-f]{32}$/);
      const connected = await client.find((f) => f.event === 'connected');
      assert.equal(connected.data.user, 'ada');
      assert.equal((await client.post([{ event: 'subscribe', id: 's', data: { channel: 'chat:hs' } }])).status, 204);
      await client.find((f) => f.id === 's' && f.event === 'ack');
      await client.post([{ event: 'publish', id: 'p', data: { channel: 'chat:hs', data: { bin: { $bin: 'AQI=' } } } }]);
      const ack = await client.find((f) => f.id === 'p');
      const message = await client.find((f) => f.event === 'message');
      assert.equal(message.data.offset, ack.data.offset);
      assert.deepEqual(message.data.data, { bin: { $bin: 'AQI=' } });
      // seq 3 before seq 2: both applied, in seq order; a repeat of seq 2 is dropped.
      assert.equal((await client.post([{ event: 'ping', id: 'x3' }], 3)).status, 204);
      assert.equal((await client.post([{ event: 'ping', id: 'x2' }], 2)).status, 204);
      assert.equal((await client.post([{ event: 'ping', id: 'x2' }], 2)).status, 204);
      await client.find((f) => f.id === 'x3');
      const acks = client.frames.filter((f) => f.id === 'x2' || f.id === 'x3').map((f) => f.id);
      assert.deepEqual(acks, ['x2', 'x3']);
      // Bad requests.
      assert.equal((await client.post('{}', -1)).status, 400);
      assert.equal((await client.post('{}', 100_000)).status, 400, 'too far ahead');
      const missing = await fetch(`${s.url}/stream/${newSessionId(s.chorus.options.nodeId)}?seq=0`, { method: 'POST', body: '{}' });
      assert.equal(missing.status, 404);
      assert.equal(((await missing.json()) as any).error.code, 'NOT_FOUND');
      const refused = await StreamClient.open(s.url, 'not-a-token');
      assert.equal(refused.status, 401);
      client.close();
      await until('session gone', () => s.chorus.connections.size === 0);
    });
  });

  test('limits: a message over maxMessageBytes closes 1009; a flood is rate limited', async () => {
    await withServer({ limits: { maxMessageBytes: 1024, ratePerSecond: 1, rateBurst: 10 } }, async (s) => {
      const client = await StreamClient.open(s.url, await signToken('ada'));
      await client.find((f) => f.event === 'connected');
      // 15 frames in one POST: past the burst of 10, but fewer than maxFaults (10) limited ones.
      await client.post(Array.from({ length: 15 }, (_, i) => ({ event: 'ping', id: `f${i}` })));
      const limited = await client.find((f) => f.event === 'error' && f.data.code === 'RATE_LIMITED');
      assert.ok(limited.data.retryAfterMs > 0);
      const big = await client.post([{ event: 'ping', id: 'big', data: 'x'.repeat(2000) }]);
      assert.equal(big.status, 413);
      const disconnect = await client.find((f) => f.event === 'disconnect');
      assert.equal(disconnect.data.code, 1009);
      await until('closed', () => s.chorus.connections.size === 0);
    });
  });

  test('heartbeat: a client that never answers pings is closed (4002); token expiry closes 4001', async () => {
    await withServer({ heartbeat: { intervalMs: 50, timeoutMs: 200 } }, async (s) => {
      const client = await StreamClient.open(s.url, await signToken('ada'));
      await client.find((f) => f.event === 'ping');
      await client.until('stream end', () => client.ended);
      assert.equal([...s.chorus.connections].length, 0);
      const log = s.logs.find((l) => l.msg === 'disconnected');
      assert.equal(log?.code, 4002);
    });
    await withServer({ auth: { secret: SECRET, clockToleranceSec: 0 }, heartbeat: { intervalMs: 100, timeoutMs: 5000 } }, async (s) => {
      // exp is in whole seconds: 2 s leaves at least one full second for pongs to be answered.
      const client = await StreamClient.open(s.url, await signToken('ada', { expSeconds: 2 }));
      // Answering pings keeps it alive until the token expires.
      let answered = 0;
      const pong = setInterval(() => void client.post([{ event: 'pong' }]).then(() => answered++), 100);
      try {
        const disconnect = await client.find((f) => f.event === 'disconnect', 'disconnect', 5000);
        assert.equal(disconnect.data.code, 4001);
      } finally {
        clearInterval(pong);
      }
      assert.ok(answered > 0);
    });
  });

  for (const configured of [undefined, { maxPendingFrames: 8, resumePendingFrames: 2 }]) {
    test(`flood control${configured ? ' (limits.maxPendingFrames 8)' : ''}: a POST to a session whose reading is paused is answered only once reading resumes`, async () => {
      await withServer({ limits: { ...NO_RATE_LIMIT.limits, ...configured } }, async (s) => {
        const { client, transport, release } = await pausedSession(s);
        // The next request's body has been read by the server: it is waiting, not answered.
        const arrived = new Promise<http.ServerResponse>((resolve) => s.http.once('request', (req, res) => req.once('end', () => resolve(res))));
        let answered = false;
        const posted = client.post([{ event: 'ping', id: 'after' }]).then((r) => ((answered = true), r));
        const res = await withTimeout(arrived, 5000, 'the POST to arrive');
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(res.writableEnded, false, 'not answered while paused');
        assert.equal(answered, false);
        assert.equal(transport.isPaused, true);
        release();
        assert.equal((await withTimeout(posted, 10_000, 'the POST answer')).status, 204);
        await client.find((f) => f.id === 'after');
        assert.equal(transport.isPaused, false);
        const expected = [...Array.from({ length: s.chorus.options.limits.maxPendingFrames }, (_, i) => `q${i}`), 'after'];
        assert.deepEqual(pingAcks(client), expected, 'applied after everything queued before it');
        client.close();
      });
    });
  }

  test('limits.maxEarlyMessages: a POST that many past the next expected seq is 400; one less is held until its turn', async () => {
    await withServer({ limits: { ...NO_RATE_LIMIT.limits, maxEarlyMessages: 4 } }, async (s) => {
      const client = await StreamClient.open(s.url, await signToken('ada'));
      await client.find((f) => f.event === 'connected');
      const early = await client.post([{ event: 'ping', id: 'e4' }], 4);
      assert.equal(early.status, 400);
      assert.match(early.body, /BAD_REQUEST/);
      assert.equal((await client.post([{ event: 'ping', id: 'e3' }], 3)).status, 204, 'held');
      for (let seq = 0; seq < 3; seq++) assert.equal((await client.post([{ event: 'ping', id: `e${seq}` }], seq)).status, 204);
      await client.find((f) => f.id === 'e3');
      assert.deepEqual(pingAcks(client), ['e0', 'e1', 'e2', 'e3'], 'applied in seq order');
      client.close();
    });
  });

  test('a stream that is not read is a slow consumer (4003)', async () => {
    await withServer({ limits: { maxQueuedBytes: 64 * 1024 } }, async (s) => {
      const client = await StreamClient.open(s.url, await signToken('ada'), { paused: true });
      await until('connected', () => s.chorus.connections.size === 1);
      await s.chorus.subscribeConnection([...s.chorus.connections][0]!, 'chat:slow');
      const big = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 2000 && s.chorus.connections.size > 0; i++) await s.chorus.publish('chat:slow', { i, big });
      await until('closed', () => s.chorus.connections.size === 0);
      assert.equal(s.logs.find((l) => l.msg === 'disconnected')?.code, 4003);
      client.close();
    });
  });
});

describe('HTTP streaming across a cluster without sticky sessions', () => {
  let nodes: TestServer[] = [];
  let proxy: http.Server | undefined;
  let bus: TestBus | undefined;

  afterEach(async () => {
    proxy?.closeAllConnections();
    await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
    await Promise.allSettled(nodes.map((n) => n.close()));
    await bus?.close();
    nodes = [];
    proxy = undefined;
  });

  /** Two nodes on these engines behind a per-request round-robin HTTP proxy; returns the proxy's URL. */
  async function roundRobin(engines: [Engine, Engine]): Promise<{ base: string; routed: { a: number; b: number } }> {
    nodes = await Promise.all(['a', 'b'].map((id, i) => startServer({ nodeId: id, engine: engines[i]! })));
    // A per-request round-robin HTTP proxy (like nginx upstream without ip_hash/sticky).
    let next = 0;
    const routed = { a: 0, b: 0 };
    proxy = http.createServer((req, res) => {
      const target = nodes[next++ % 2]!;
      routed[target.chorus.options.nodeId as 'a' | 'b']++;
      const upstream = http.request({ host: '127.0.0.1', port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    return { base: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, routed };
  }

  /** A session through the proxy: subscribe and ten publishes, each POST on the next node. */
  async function chatThrough(base: string, routed: { a: number; b: number }): Promise<void> {
    const client = await StreamClient.open(base, await signToken('ada'));
    const home = sessionNode(client.session)!;
    await client.find((f) => f.event === 'connected' && f.data.node === home);
    await client.post([{ event: 'subscribe', id: 's', data: { channel: 'chat:rr' } }]);
    await client.find((f) => f.id === 's');
    for (let i = 0; i < 10; i++) {
      const res = await client.post([{ event: 'publish', id: `p${i}`, data: { channel: 'chat:rr', data: { i } } }]);
      assert.equal(res.status, 204);
    }
    await client.find((f) => f.id === 'p9');
    const acks = client.frames.filter((f) => f.event === 'ack' && /^p\d$/.test(f.id));
    assert.deepEqual(acks.map((f) => f.id), [...Array(10).keys()].map((i) => `p${i}`), 'applied in order');
    const offsets = acks.map((f) => f.data.offset);
    offsets.forEach((o, i) => i > 0 && assert.equal(o, offsets[i - 1] + 1));
    await client.until('messages', () => client.frames.filter((f) => f.event === 'message').length === 10);
    assert.ok(routed.a >= 5 && routed.b >= 5, `both nodes got requests: ${JSON.stringify(routed)}`);
    const other = nodes.find((n) => n.chorus.options.nodeId !== home)!;
    assert.equal(other.chorus.connections.size, 0, 'the stream lives on one node only');
    client.close();
  }

  /** Two nodes on a test bus, node a holding a paused session; POSTs to node b are forwarded to it. */
  async function pausedOnA(limits: Partial<Limits> = {}): Promise<{ client: StreamClient; transport: HttpStreamTransport; release: () => void; b: TestServer }> {
    bus = new TestBus();
    await bus.start();
    nodes = await Promise.all(['a', 'b'].map((id) => startServer({ nodeId: id, engine: bus!.node(id), limits: { ...NO_RATE_LIMIT.limits, ...limits } })));
    const paused = await pausedSession(nodes[0]!);
    assert.equal(sessionNode(paused.client.session), 'a');
    return { ...paused, b: nodes[1]! };
  }

  /** POST one ping per message through node b, seq 1..count (seq 0 paused the session). */
  async function forwardPings(client: StreamClient, b: TestServer, count: number): Promise<void> {
    for (let i = 1; i <= count; i++) {
      const res = await client.post([{ event: 'ping', id: `f${i}` }], i, b.url);
      assert.equal(res.status, 204, `forwarded POST ${i}`);
    }
  }

  for (const configured of [{}, { maxHeldMessages: 3 }]) {
    const held = configured.maxHeldMessages ?? DEFAULT_LIMITS.maxHeldMessages;
    const label = configured.maxHeldMessages ? ' (limits.maxHeldMessages)' : '';
    test(`messages forwarded while a session is paused: ${held}${label} are held, then applied in order once it reads again`, async () => {
      const { client, transport, release, b } = await pausedOnA(configured);
      await forwardPings(client, b, held);
      // Forwarded messages reach node a in a microtask, before the POST's answer: all are held.
      assert.equal(transport.isPaused, true);
      assert.equal(client.frames.some((f) => f.event === 'disconnect'), false);
      release();
      await client.find((f) => f.id === `f${held}`);
      const expected = [
        ...Array.from({ length: DEFAULT_LIMITS.maxPendingFrames }, (_, i) => `q${i}`),
        ...Array.from({ length: held }, (_, i) => `f${i + 1}`),
      ];
      assert.deepEqual(pingAcks(client), expected);
      assert.equal(client.frames.some((f) => f.event === 'disconnect'), false);
      assert.equal(nodes[0]!.chorus.connections.size, 1, 'still open');
      client.close();
    });

    test(`messages forwarded while a session is paused: one more than ${held}${label} closes it with 1008`, async () => {
      const { client, release, b } = await pausedOnA(configured);
      await forwardPings(client, b, held + 1);
      const disconnect = await client.find((f) => f.event === 'disconnect');
      assert.equal(disconnect.data.code, 1008);
      await client.until('stream end', () => client.ended);
      release();
      await until('closed', () => nodes[0]!.chorus.connections.size === 0);
      assert.equal(pingAcks(client).some((id) => id.startsWith('f')), false, 'no held message was applied');
    });
  }

  test('POSTs reaching the other node are forwarded to the node holding the stream (test bus)', async () => {
    bus = new TestBus();
    await bus.start();
    const { base, routed } = await roundRobin([bus.node('a'), bus.node('b')]);
    await chatThrough(base, routed);
  });

  test('the same over a real Redis (two engines, one redis-server)', async () => {
    const redis = await RedisProcess.start();
    const engines: [RedisEngine, RedisEngine] = [new RedisEngine({ url: redis.url }), new RedisEngine({ url: redis.url })];
    try {
      const { base, routed } = await roundRobin(engines);
      await chatThrough(base, routed);
    } finally {
      await Promise.allSettled(nodes.map((n) => n.close()));
      nodes = [];
      await Promise.allSettled(engines.map((e) => e.close()));
      await redis.stop();
    }
  });
});
