import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { loadConfig } from '../src/cli/config.js';
import { startStandalone } from '../src/cli/standalone.js';
import { RedisEngine } from '../src/engines/redis/index.js';
import type { WebhookOptions } from '../src/proxy/options.js';
import { WebhookExtension } from '../src/proxy/webhooks/extension.js';
import { MemoryOutbox } from '../src/proxy/webhooks/memory.js';
import { RedisOutbox } from '../src/proxy/webhooks/redis.js';
import { backoffMs } from '../src/proxy/webhooks/sender.js';
import { sign, verifySignature } from '../src/proxy/webhooks/signature.js';
import type { WebhookEvent } from '../src/proxy/webhooks/types.js';
import { signToken, startServer, TestSocket, until, type TestServer } from './helpers.js';
import { RedisProcess } from './redis-helpers.js';

const SECRET = 'webhook-secret-0123456789';
const EVENTS = ['channel.occupied', 'channel.vacated', 'presence.join', 'presence.leave'] as const;
const quiet = pino({ level: 'silent' });

interface Received {
  id: string;
  signature: string;
  valid: boolean;
  events: WebhookEvent[];
}

/** A webhook receiver checking signatures; `status` chooses the answer per request (default 200). */
class Receiver {
  readonly requests: Received[] = [];
  status: (n: number) => number = () => 200;
  private waiters: Array<() => void> = [];
  private constructor(
    readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(): Promise<Receiver> {
    let receiver!: Receiver;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const signature = String(req.headers['x-chorus-signature']);
        const n = receiver.requests.length + 1;
        receiver.requests.push({
          id: String(req.headers['x-chorus-webhook-id']),
          signature,
          valid: verifySignature(SECRET, raw, signature),
          events: (JSON.parse(raw.toString()) as { events: WebhookEvent[] }).events,
        });
        res.writeHead(receiver.status(n)).end();
        for (const w of receiver.waiters.splice(0)) w();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    receiver = new Receiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);
    return receiver;
  }

  /** Every event received in a 2xx-answered request... and in failed ones (`all`). */
  events(): WebhookEvent[] {
    return this.requests.flatMap((r) => r.events);
  }

  async waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.requests)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function hook(url: string, extra: Partial<WebhookOptions> = {}): WebhookOptions {
  return { url, secret: SECRET, events: [...EVENTS], ...extra };
}

function count(events: WebhookEvent[], type: string, channel: string): number {
  return events.filter((e) => e.type === type && e.channel === channel).length;
}

describe('signatures (unit)', () => {
  it('sha256=<hex HMAC-SHA256 of the raw body>, checked in constant time', () => {
    assert.equal(sign('key', 'The quick brown fox jumps over the lazy dog'), 'sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8');
    assert.match(sign('key', 'x'), /^sha256=[0-9a-f]{64}$/);
    assert.ok(verifySignature('key', 'body', sign('key', 'body')));
    assert.ok(!verifySignature('key', 'body!', sign('key', 'body')));
    assert.ok(!verifySignature('other', 'body', sign('key', 'body')));
    assert.ok(!verifySignature('key', 'body', undefined));
    assert.ok(!verifySignature('key', 'body', 'sha256=00'));
  });

  it('backoff: full jitter, doubling from 200 ms, capped at 30 s', () => {
    assert.equal(backoffMs(1, () => 0.999), 200);
    assert.equal(backoffMs(3, () => 0.5), 400);
    assert.equal(backoffMs(20, () => 0.999), 29_970);
    assert.equal(backoffMs(5, () => 0), 200);
  });
});

describe('webhooks, one process (memory outbox)', { timeout: 60_000 }, () => {
  let receiver: Receiver;
  let s: TestServer;
  before(async () => {
    receiver = await Receiver.start();
  });
  after(async () => {
    await receiver.close();
  });

  it('occupied, join, leave, vacated: signed, each request with a unique id', async () => {
    s = await startServer();
    s.chorus.use(new WebhookExtension({ webhooks: [hook(receiver.url)], outbox: new MemoryOutbox(), logger: quiet }));
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada', { claims: { info: { name: 'Ada' } } }));
      await a.ok('subscribe', { channel: 'chat:room' });
      await receiver.waitFor('join', () => count(receiver.events(), 'presence.join', 'chat:room') === 1);
      await a.ok('unsubscribe', { channel: 'chat:room' });
      await receiver.waitFor('vacated', () => count(receiver.events(), 'channel.vacated', 'chat:room') === 1);
      await receiver.waitFor('leave', () => count(receiver.events(), 'presence.leave', 'chat:room') === 1);
      const events = receiver.events().filter((e) => e.channel === 'chat:room');
      // Each kind is in order (occupied before vacated, join before leave); the two kinds are not ordered with each other.
      assert.deepEqual(events.map((e) => e.type).filter((t) => t.startsWith('channel.')), ['channel.occupied', 'channel.vacated']);
      assert.deepEqual(events.map((e) => e.type).filter((t) => t.startsWith('presence.')), ['presence.join', 'presence.leave']);
      assert.equal(events.length, 4);
      const join = events.find((e) => e.type === 'presence.join')!;
      assert.equal(join.user, 'ada');
      assert.deepEqual(join.info, { name: 'Ada' });
      assert.ok(receiver.requests.every((r) => r.valid), 'every signature verifies');
      assert.equal(new Set(receiver.requests.map((r) => r.id)).size, receiver.requests.length, 'webhook ids are unique');
      assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'event ids are unique');
      // The personal channel counts as a channel too.
      assert.equal(count(receiver.events(), 'channel.occupied', 'user:ada'), 1);
      a.close();
    } finally {
      await s.close();
    }
  });

  it('events that happen at once are batched (up to maxBatch per request)', async () => {
    const r = await Receiver.start();
    s = await startServer();
    s.chorus.use(new WebhookExtension({ webhooks: [hook(r.url, { events: ['channel.occupied'], maxBatch: 3 })], outbox: new MemoryOutbox(), logger: quiet }));
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('bo'));
      await Promise.all(['chat:1', 'chat:2', 'chat:3', 'chat:4', 'chat:5', 'chat:6', 'chat:7'].map((channel) => a.ok('subscribe', { channel })));
      await r.waitFor('8 occupied', () => r.events().length === 8);
      assert.ok(r.requests.length < 8, `batched: ${r.requests.length} requests for 8 events`);
      assert.ok(r.requests.every((q) => q.events.length <= 3), 'maxBatch respected');
      assert.ok(r.events().every((e) => e.type === 'channel.occupied'), 'only the events the webhook asked for');
      a.close();
    } finally {
      await s.close();
      await r.close();
    }
  });

  it('a failed delivery is retried with the same webhook id; after maxAttempts the batch is dropped', async () => {
    const r = await Receiver.start();
    r.status = (n) => (n <= 2 ? 500 : 200);
    const registry = new Registry();
    s = await startServer();
    const ext = new WebhookExtension({ webhooks: [hook(r.url, { events: ['presence.join'], maxAttempts: 3 })], outbox: new MemoryOutbox(), logger: quiet, registry });
    s.chorus.use(ext);
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('cy'));
      await a.ok('subscribe', { channel: 'chat:retry' });
      await r.waitFor('3 tries', () => r.requests.length === 3);
      assert.equal(new Set(r.requests.map((q) => q.id)).size, 1, 'the same X-Chorus-Webhook-Id on every try');
      assert.deepEqual(r.requests.map((q) => q.events[0]!.id), Array(3).fill(r.requests[0]!.events[0]!.id));
      // Now always failing: 3 tries (maxAttempts) then dropped.
      r.status = () => 503;
      await a.ok('subscribe', { channel: 'chat:dropped' });
      await r.waitFor('3 more tries', () => r.requests.length === 6);
      await until('the batch dropped', async () => /outcome="dropped"\} 1/.test(await registry.metrics()));
      const metrics = await registry.metrics();
      assert.match(metrics, /chorus_webhook_deliveries_total\{outcome="delivered"\} 1/);
      assert.match(metrics, /chorus_webhook_deliveries_total\{outcome="failed"\} 5/);
      a.close();
    } finally {
      await s.close();
      await r.close();
    }
  });
});

describe('webhooks, two nodes on Redis: once per event for the cluster', { timeout: 90_000 }, () => {
  let redis: RedisProcess;
  before(async () => {
    redis = await RedisProcess.start();
  });
  after(() => redis.stop());

  async function node(receiver: Receiver, name: string): Promise<{ s: TestServer; engine: RedisEngine; client: Redis }> {
    const engine = new RedisEngine({ url: redis.url, gapCheckIntervalMs: 0 });
    const client = new Redis(redis.url);
    const s = await startServer({ engine, nodeId: name });
    const outbox = new RedisOutbox({ redis: client, connect: () => new Redis(redis.url), node: name, logger: quiet });
    s.chorus.use(new WebhookExtension({ webhooks: [hook(receiver.url)], outbox, logger: quiet }));
    return { s, engine, client };
  }

  it('occupied once when the first subscriber anywhere arrives, vacated once when the last leaves; joins once each', async () => {
    const receiver = await Receiver.start();
    const a = await node(receiver, 'node-a');
    const b = await node(receiver, 'node-b');
    try {
      const ada = await TestSocket.connect(a.s.wsUrl, await signToken('ada'));
      const bob = await TestSocket.connect(b.s.wsUrl, await signToken('bob'));
      await ada.ok('subscribe', { channel: 'chat:both' });
      await receiver.waitFor('occupied', () => count(receiver.events(), 'channel.occupied', 'chat:both') === 1);
      await bob.ok('subscribe', { channel: 'chat:both' });
      await receiver.waitFor('two joins', () => count(receiver.events(), 'presence.join', 'chat:both') === 2);
      await ada.ok('unsubscribe', { channel: 'chat:both' });
      await receiver.waitFor('leave', () => count(receiver.events(), 'presence.leave', 'chat:both') === 1);
      await bob.ok('unsubscribe', { channel: 'chat:both' });
      await receiver.waitFor('vacated', () => count(receiver.events(), 'channel.vacated', 'chat:both') === 1);
      await receiver.waitFor('second leave', () => count(receiver.events(), 'presence.leave', 'chat:both') === 2);
      const events = receiver.events().filter((e) => e.channel === 'chat:both');
      assert.deepEqual(
        events.map((e) => e.type).sort(),
        ['channel.occupied', 'channel.vacated', 'presence.join', 'presence.join', 'presence.leave', 'presence.leave'],
      );
      assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no event twice');
      assert.ok(receiver.requests.every((r) => r.valid));
      ada.close();
      bob.close();
    } finally {
      for (const n of [a, b]) {
        await n.s.close();
        await n.engine.close();
        n.client.disconnect();
      }
      await receiver.close();
    }
  });

  it('standalone nodes from a config file (redis + webhooks): occupied once for the cluster', async () => {
    const receiver = await Receiver.start();
    const configText = JSON.stringify({
      redis: { url: redis.url, prefix: 'standalone' },
      webhooks: [{ url: receiver.url, secret: SECRET, events: ['channel.occupied', 'channel.vacated'] }],
    });
    const start = (name: string) =>
      startStandalone(loadConfig(['--config', '/c.json', '--port', '0', '--host', '127.0.0.1'], { CHORUS_JWT_SECRET: 'x'.repeat(40) }, () => configText), {
        logger: quiet,
      }).then((h) => Object.assign(h, { name }));
    const nodes = [await start('a'), await start('b')];
    try {
      const sockets = await Promise.all(
        nodes.map(async (n, i) => TestSocket.connect(`${n.url.replace('http', 'ws')}/ws`, await signToken(`u${i}`, { secret: 'x'.repeat(40) }))),
      );
      for (const socket of sockets) await socket.ok('subscribe', { channel: 'chat:standalone' });
      for (const socket of sockets) await socket.ok('unsubscribe', { channel: 'chat:standalone' });
      // Two nodes deliver in parallel: the vacated request may overtake the occupied one.
      await receiver.waitFor('occupied and vacated', () => count(receiver.events(), 'channel.vacated', 'chat:standalone') >= 1 && count(receiver.events(), 'channel.occupied', 'chat:standalone') >= 1);
      assert.equal(count(receiver.events(), 'channel.occupied', 'chat:standalone'), 1);
      assert.equal(count(receiver.events(), 'channel.vacated', 'chat:standalone'), 1);
      for (const socket of sockets) socket.close();
    } finally {
      for (const n of nodes) await n.close();
      await receiver.close();
    }
  });

  it('a batch a node took and never acknowledged (it died) is taken over by another node', async () => {
    const client = new Redis(redis.url);
    const prefix = 'takeover-test';
    try {
      const opts = { redis: client, prefix, claimIdleMs: 100, logger: quiet };
      const dying = new RedisOutbox({ ...opts, connect: () => new Redis(redis.url), node: 'dying' });
      const other = new RedisOutbox({ ...opts, connect: () => new Redis(redis.url), node: 'other' });
      const qDying = dying.queue('t1');
      const qOther = other.queue('t1');
      await qDying.take(1); // creates the group; nothing yet
      await dying.publish({ id: 'e1', type: 'presence.join', time: 1, channel: 'chat:x', user: 'u' });
      const taken = await qDying.take(10);
      assert.deepEqual(taken.map((i) => i.event.id), ['e1']);
      // "dying" never acknowledges: once idle for claimIdleMs, "other" gets the same event.
      let again: string[] = [];
      await until('the takeover', async () => (again = (await qOther.take(10)).map((i) => i.event.id)).length > 0, 10_000, 20);
      assert.deepEqual(again, ['e1']);
      await dying.close();
      await other.close();
    } finally {
      client.disconnect();
    }
  });

  it('a dead node (no refresh) is swept: its channels are vacated once, by another node', async () => {
    const client = new Redis(redis.url);
    const prefix = 'sweep-test';
    const stream = `${prefix}:{webhooks}:events`;
    try {
      const t0 = 1_000_000;
      const dead = new RedisOutbox({ redis: client, connect: () => new Redis(redis.url), node: 'dead', prefix, ttlMs: 1000, logger: quiet });
      const live = new RedisOutbox({ redis: client, connect: () => new Redis(redis.url), node: 'live', prefix, ttlMs: 1000, logger: quiet });
      await dead.localChannel('chat:ghost', true, t0);
      await live.localChannel('chat:shared', true, t0);
      await dead.localChannel('chat:shared', true, t0);
      // Before the TTL nothing is swept; after it, once (and a second sweep finds nothing).
      await live.maintain(['chat:shared'], t0 + 500);
      await live.maintain(['chat:shared'], t0 + 1200);
      await live.maintain(['chat:shared'], t0 + 1300);
      const entries = (await client.xrange(stream, '-', '+')).map(([, fields]) => JSON.parse(fields[1]!) as WebhookEvent);
      assert.deepEqual(
        entries.map((e) => `${e.type} ${e.channel}`),
        ['channel.occupied chat:ghost', 'channel.occupied chat:shared', 'channel.vacated chat:ghost'],
      );
      // The live node still counts for chat:shared: its leaving vacates it.
      await live.localChannel('chat:shared', false, t0 + 1700);
      const last = (await client.xrange(stream, '-', '+')).map(([, fields]) => JSON.parse(fields[1]!) as WebhookEvent).at(-1)!;
      assert.equal(`${last.type} ${last.channel}`, 'channel.vacated chat:shared');
      await dead.close();
      await live.close();
    } finally {
      client.disconnect();
    }
  });
});
