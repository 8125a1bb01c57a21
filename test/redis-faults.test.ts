/**
 * Saying only what is true when Redis misbehaves (issue 8), against a real redis-server: node A
 * reaches Redis through a fault-injecting TCP proxy (test/fault-proxy.ts), node B directly.
 * The proxy freezes A's link (both ways, or only replies) with sockets open, resumes it, cuts
 * every connection and refuses reconnects. Every publish answer must be true: applied → the
 * real position, delivered exactly once; not applied (UNAVAILABLE) → never delivered; unknown
 * (OUTCOME_UNKNOWN) → a retry with the same key gives exactly one copy. No subscriber is told to
 * resync (4005) while history still covers its gap, and a subscribe during a stall answers
 * within one `commandTimeoutMs`. The same mappings run in milliseconds in bus-outcome.test.ts.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { RedisEngine } from '../src/engines/redis/index.js';
import { ChorusError, ErrorCode } from '../src/protocol/index.js';
import { FaultProxy } from './fault-proxy.js';
import { signToken, startServer, TestSocket, until, upgradeStatus, type TestServer } from './helpers.js';
import { RedisProcess } from './redis-helpers.js';

/** Small budgets so faults show in well under a second; the bounds asserted are T and T + O. */
const T = 1000;
const O = 2000;
const GAP_CHECK_MS = 200;
const NAMESPACES = [
  { pattern: 'chat:*', historySize: 10000, recoveryMaxMissed: 10000 },
  { pattern: 'small:*', historySize: 3, recoveryMaxMissed: 3 },
];

let redis: RedisProcess;
let proxy: FaultProxy;
let a: TestServer;
let b: TestServer;
let engines: RedisEngine[] = [];
const sockets = new Set<TestSocket>();

before(async () => {
  redis = await RedisProcess.start();
});

after(async () => {
  await redis.stop();
});

async function startNodes(): Promise<void> {
  proxy = await FaultProxy.start(redis.port);
  const engineA = new RedisEngine({ url: proxy.url, name: 'a', commandTimeoutMs: T, outcomeTimeoutMs: O, gapCheckIntervalMs: GAP_CHECK_MS });
  const engineB = new RedisEngine({ url: redis.url, name: 'b', commandTimeoutMs: T, outcomeTimeoutMs: O, gapCheckIntervalMs: GAP_CHECK_MS });
  engines = [engineA, engineB];
  [a, b] = await Promise.all([startServer({ namespaces: NAMESPACES, engine: engineA }), startServer({ namespaces: NAMESPACES, engine: engineB })]);
  await Promise.all([a.chorus.start(), b.chorus.start()]);
  // A first publish through A gives its engine a sample of Redis's clock (publish deadlines).
  await a.chorus.publish('chat:warmup', null);
}

afterEach(async () => {
  for (const s of sockets) s.ws.terminate();
  sockets.clear();
  proxy.refuse(false);
  proxy.resume();
  await Promise.allSettled([a.close(), b.close()]);
  // The server does not close an engine it was given.
  await Promise.allSettled(engines.map((engine) => engine.close()));
  await proxy.stop();
});

async function connect(server: TestServer, user: string): Promise<TestSocket> {
  const socket = await TestSocket.connect(server.wsUrl, await signToken(user));
  sockets.add(socket);
  return socket;
}

const offsets = (s: TestSocket, channel: string) => s.messages(channel).map((m) => m.offset as number);
const codeOf = (err: unknown) => (err instanceof ChorusError ? err.code : 'not a ChorusError');

describe('publish answers during Redis trouble (real redis-server, fault proxy)', () => {
  test('reply lost, link then cut: the publish is looked up and answered with its real position', async () => {
    await startNodes();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:lost-reply' });
    proxy.freezeReplies();
    const answer = a.chorus.publish('chat:lost-reply', { n: 1 }).then(
      (r) => r,
      (err: unknown) => err,
    );
    await until('applied and delivered through B', () => reader.messages('chat:lost-reply').length === 1, 5000);
    proxy.cut();
    proxy.resume();
    const result = await answer;
    assert.ok(!(result instanceof Error), `answered ${String(result)}`);
    assert.equal((result as { offset: number }).offset, reader.messages('chat:lost-reply')[0].offset);
    const history = await b.chorus.history('chat:lost-reply', { limit: 10 });
    assert.equal(history.publications.length, 1, 'applied once');
  });

  test('request held and the link cut before it reached Redis: UNAVAILABLE (not applied), never delivered', async () => {
    await startNodes();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:never' });
    proxy.freeze();
    const answer = a.chorus.publish('chat:never', { n: 1 }, { idempotencyKey: 'never-1' }).then(
      (r) => r,
      (err: unknown) => err,
    );
    await until('the publish is held by the proxy', () => proxy.holds('chat:never'), 5000);
    proxy.cut();
    proxy.resume();
    const result = await answer;
    assert.equal(codeOf(result), ErrorCode.UNAVAILABLE);
    await b.chorus.publish('chat:never', 'marker');
    await until('marker', () => reader.messages('chat:never').length >= 1, 5000);
    assert.deepEqual(reader.messages('chat:never').map((m) => m.data), ['marker'], 'the refused publish never appears');
    assert.deepEqual(offsets(reader, 'chat:never'), [1], 'and took no offset');
  });

  test('frozen link: OUTCOME_UNKNOWN within commandTimeoutMs + outcomeTimeoutMs; a retry with the same key gives exactly one copy', async () => {
    await startNodes();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:frozen' });
    proxy.freeze();
    const started = Date.now();
    const first = await a.chorus.publish('chat:frozen', { n: 1 }, { idempotencyKey: 'frozen-1' }).then(
      (r) => r,
      (err: unknown) => err,
    );
    const waited = Date.now() - started;
    assert.equal(codeOf(first), ErrorCode.OUTCOME_UNKNOWN);
    // A correctness bound (one budget each, not a multiple), not a speed figure.
    assert.ok(waited < T + O + 1000, `answered after ${waited} ms`);
    proxy.resume();
    const retry = await a.chorus.publish('chat:frozen', { n: 1 }, { idempotencyKey: 'frozen-1' });
    await b.chorus.publish('chat:frozen', 'marker');
    await until('marker', () => reader.messages('chat:frozen').some((m) => m.data === 'marker'), 5000);
    const copies = reader.messages('chat:frozen').filter((m) => m.data?.n === 1);
    assert.equal(copies.length, 1, 'exactly one copy');
    assert.equal(copies[0].offset, retry.offset);
  });

  test('link cut and reconnects refused: OUTCOME_UNKNOWN; once Redis is reachable a retry with the same key gives one copy', async () => {
    await startNodes();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:refused' });
    proxy.freezeReplies();
    const answer = a.chorus.publish('chat:refused', { n: 1 }, { idempotencyKey: 'refused-1' }).then(
      (r) => r,
      (err: unknown) => err,
    );
    await until('applied', () => reader.messages('chat:refused').length === 1, 5000);
    proxy.refuse(true);
    proxy.cut();
    assert.equal(codeOf(await answer), ErrorCode.OUTCOME_UNKNOWN);
    proxy.refuse(false);
    proxy.resume();
    let retry: { offset?: number } | undefined;
    for (let attempt = 0; attempt < 20 && !retry; attempt++) {
      try {
        retry = await a.chorus.publish('chat:refused', { n: 1 }, { idempotencyKey: 'refused-1' });
      } catch (err) {
        assert.ok([ErrorCode.UNAVAILABLE, ErrorCode.OUTCOME_UNKNOWN].includes(codeOf(err) as never));
        await until('A reconnected', () => a.chorus.engine instanceof RedisEngine && a.chorus.engine.client.status === 'ready', 10000);
      }
    }
    assert.equal(retry?.offset, reader.messages('chat:refused')[0].offset, 'the retry answers the first position');
    await b.chorus.publish('chat:refused', 'marker');
    await until('marker', () => reader.messages('chat:refused').some((m) => m.data === 'marker'), 5000);
    assert.equal(reader.messages('chat:refused').filter((m) => m.data?.n === 1).length, 1);
  });
});

describe('bounded waits and no needless resync (real redis-server, fault proxy)', () => {
  test('a subscribe during a stall answers UNAVAILABLE within one commandTimeoutMs', async () => {
    await startNodes();
    const socket = await connect(a, 'stalled');
    proxy.freeze();
    const started = Date.now();
    const reply = await socket.request('subscribe', { channel: 'chat:stall' });
    const waited = Date.now() - started;
    assert.equal(reply.event, 'error');
    assert.equal((reply.data as any).code, ErrorCode.UNAVAILABLE);
    assert.ok(waited < T + T / 2, `answered after ${waited} ms (the bug answered after 2 × ${T})`);
    proxy.resume();
    await until('A answers again', async () => (await socket.request('subscribe', { channel: 'chat:stall' })).event === 'ack', 10000, 100);
  });

  test('a handshake during a stall is refused within one commandTimeoutMs (its reservation goes out in a turn batch)', async () => {
    await startNodes();
    proxy.freeze();
    const started = Date.now();
    const refused = await upgradeStatus(`${a.wsUrl}?token=${await signToken('stalled')}`);
    const waited = Date.now() - started;
    assert.equal(refused.status, 503);
    assert.equal(JSON.parse(refused.body).error.code, ErrorCode.UNAVAILABLE);
    assert.ok(waited < T + T / 2, `answered after ${waited} ms`);
    proxy.resume();
    await until('A admits again', async () => (await upgradeStatus(`${a.wsUrl}?token=${await signToken('stalled')}`)).status === 101, 10000, 100);
  });

  test('a frozen link resumes with a pub/sub backlog longer than history: the gap check declares nothing, all delivered', async () => {
    await startNodes();
    const reader = await connect(a, 'reader');
    await reader.ok('subscribe', { channel: 'small:backlog' });
    proxy.freeze();
    for (let i = 1; i <= 20; i++) await b.chorus.publish('small:backlog', { i }); // history keeps only 3
    proxy.resume();
    const audits = proxy.watch('{small:backlog}:m');
    await until('all delivered', () => reader.messages('small:backlog').length === 20, 10000);
    await until('two gap-check rounds after the resume', () => audits() >= 2, 10000);
    assert.deepEqual(offsets(reader, 'small:backlog'), Array.from({ length: 20 }, (_, i) => i + 1));
    assert.equal(reader.closeCode, undefined, 'not told to resync');
  });
});

describe('continuous publishing through both nodes while A’s link misbehaves', () => {
  test('applied: delivered once; not applied: never; unknown: one copy after a same-key retry; no resync', async () => {
    await startNodes();
    const channel = 'chat:load';
    const readers = [await connect(a, 'reader-a'), await connect(b, 'reader-b')];
    for (const r of readers) await r.ok('subscribe', { channel });
    const outcomes = new Map<string, { node: TestServer; answer: 'applied' | 'not-applied' | 'unknown'; offset?: number }>();
    let stop = false;
    let sent = 0;
    const publishLoop = async (node: TestServer, name: string) => {
      for (let i = 0; i < 3000 && !stop; i++) {
        const key = `${name}-${i}`;
        sent++;
        try {
          const r = await node.chorus.publish(channel, { key }, { idempotencyKey: key });
          outcomes.set(key, { node, answer: 'applied', offset: r.offset! });
        } catch (err) {
          const code = codeOf(err);
          assert.ok(code === ErrorCode.UNAVAILABLE || code === ErrorCode.OUTCOME_UNKNOWN, `unexpected ${code}`);
          outcomes.set(key, { node, answer: code === ErrorCode.UNAVAILABLE ? 'not-applied' : 'unknown' });
        }
        // Pace the loops so the run stays bounded (a refused publish fails at once).
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    /** Keep a fault on for a while (a fault's duration, not a wait for an event). */
    const hold = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const faults = async () => {
      await hold(300);
      proxy.freeze(); // both ways, sockets open
      await hold(T + 500);
      proxy.resume();
      await hold(500);
      proxy.freezeReplies(); // scripts run, replies late
      await hold(T / 2);
      proxy.cut();
      proxy.resume();
      await hold(700);
      proxy.freeze();
      await hold(T / 2);
      proxy.refuse(true); // cut, and no reconnect for a while
      proxy.cut();
      await hold(T + O);
      proxy.refuse(false);
      proxy.resume();
      await hold(1000);
    };
    const loops = [publishLoop(a, 'a1'), publishLoop(a, 'a2'), publishLoop(b, 'b')];
    await faults();
    stop = true;
    await Promise.all(loops);

    // Every unknown: retry with the same key (through A, now healthy) until a definite answer.
    const unknown = [...outcomes].filter(([, o]) => o.answer === 'unknown');
    for (const [key, outcome] of unknown) {
      for (let attempt = 0; attempt < 20 && outcome.answer === 'unknown'; attempt++) {
        try {
          const r = await a.chorus.publish(channel, { key }, { idempotencyKey: key });
          outcome.answer = 'applied';
          outcome.offset = r.offset!;
        } catch {
          await until('A ready', () => (a.chorus.engine as RedisEngine).client.status === 'ready', 10000);
        }
      }
      assert.equal(outcome.answer, 'applied', `${key} resolved by a retry`);
    }
    const marker = await b.chorus.publish(channel, { key: 'marker' });
    for (const r of readers) await until('marker', () => r.messages(channel).some((m) => m.data.key === 'marker'), 20000);

    const counts = (r: TestSocket) => {
      const seen = new Map<string, number>();
      for (const m of r.messages(channel)) seen.set(m.data.key, (seen.get(m.data.key) ?? 0) + 1);
      return seen;
    };
    const answers = [...outcomes.values()].map((o) => o.answer);
    for (const [index, r] of readers.entries()) {
      const seen = counts(r);
      for (const [key, outcome] of outcomes) {
        if (outcome.answer === 'applied') assert.equal(seen.get(key), 1, `reader ${index}: ${key} (applied) exactly once`);
        else assert.equal(seen.get(key), undefined, `reader ${index}: ${key} (not applied) never`);
      }
      // Every offset once, in order: nothing not applied took one, nothing applied was missed.
      assert.deepEqual(offsets(r, channel), Array.from({ length: marker.offset! }, (_, i) => i + 1));
      assert.equal(r.closeCode, undefined, `reader ${index} was not told to resync`);
    }
    const byOffset = new Map([...outcomes].filter(([, o]) => o.offset !== undefined).map(([key, o]) => [o.offset!, key]));
    for (const m of readers[1]!.messages(channel)) if (byOffset.has(m.offset)) assert.equal(byOffset.get(m.offset), m.data.key, 'answered offsets are the real ones');
    assert.ok(sent > 100, `a real load (${sent} publishes)`);
    assert.ok(answers.includes('applied'));
    console.log(`# load: ${sent} publishes, ${unknown.length} unknown then resolved, ${answers.filter((x) => x === 'not-applied').length} not applied`);
  });
});
