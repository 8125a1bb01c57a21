/**
 * A cluster of REAL processes: a real redis-server and 2-3 Chorus nodes, each `node dist/cli/main.js`
 * in its own OS process (run `npm run build` first; the test command does). Clients reach nodes
 * directly or through a tiny TCP load balancer (test/cluster-helpers.ts). Faults are real too:
 * SIGKILL of a node, Redis restarted with and without persistence, Redis paused with SIGSTOP,
 * a node's Redis pub/sub connection killed with CLIENT KILL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient, type MessageData, type Subscription } from '../src/client/index.js';
import { api, signToken, TestSocket, upgradeStatus, withTimeout } from './helpers.js';
import { ChorusNode, cleanupAll, clientList, LoadBalancer, nextEvent, redisCommand, startNodes, until } from './cluster-helpers.js';
import { RedisProcess } from './redis-helpers.js';

const NAMESPACES = [
  { pattern: 'user:*', personal: true, publish: 'none' },
  { pattern: 'chat:*', historySize: 10000, recoveryMaxMissed: 10000, presence: true },
];

const redises = new Set<RedisProcess>();
async function startRedis(options: Parameters<typeof RedisProcess.start>[0] = {}): Promise<RedisProcess> {
  const redis = await RedisProcess.start(options);
  redises.add(redis);
  return redis;
}
async function stopRedis(redis: RedisProcess): Promise<void> {
  redis.signal('SIGCONT'); // never leave a stopped process behind
  await redis.stop();
  redises.delete(redis);
}

const sockets = new Set<TestSocket>();
async function connect(node: { wsUrl: string }, user: string): Promise<TestSocket> {
  const socket = await TestSocket.connect(node.wsUrl, await signToken(user));
  sockets.add(socket);
  return socket;
}

const clients = new Set<ChorusClient>();

/** A real client subscribed to `channel` on `node`, recording what its subscription delivers. */
async function watchingClient(node: { wsUrl: string }, user: string, channel: string) {
  const client = new ChorusClient({ url: node.wsUrl, token: await signToken(user), WebSocket: WebSocket as any, minReconnectDelayMs: 10, maxReconnectDelayMs: 100 });
  clients.add(client);
  client.connect();
  const subscription = client.subscribe<{ i: number }>(channel);
  const watcher = { client, received: [] as MessageData<{ i: number }>[], failed: 0 };
  subscription.on('message', (m) => watcher.received.push(m));
  subscription.on('recovery-failed', () => watcher.failed++);
  await nextEvent(subscription, 'subscribed');
  return watcher;
}
/** Set when a test ends early, so its publisher loops stop. */
let stopPublishing = false;
process.once('exit', () => {
  for (const redis of redises) redis.signal('SIGKILL');
});

after(async () => {
  stopPublishing = true;
  for (const s of sockets) s.ws.terminate();
  for (const c of clients) c.close();
  await cleanupAll();
  await Promise.allSettled([...redises].map((r) => stopRedis(r)));
});

const publish = (node: ChorusNode, channel: string, data: unknown) => api(node.url, 'POST', '/api/publish', { channel, data });
const frames = (s: TestSocket, event: string, channel?: string) =>
  s.frames.filter((f) => f.event === event && (channel === undefined || (f.data as any)?.channel === channel));

/** Subscribe a raw socket and return the ack data (fails on an error reply). */
async function subscribe(s: TestSocket, channel: string, since?: { offset: number; epoch: string }): Promise<any> {
  return s.ok('subscribe', since ? { channel, since } : { channel });
}

/** Offsets must be exactly 1..n, in order. */
function assertContiguous(offsets: Array<number | undefined>, n: number, what: string): void {
  const expected = Array.from({ length: n }, (_, i) => i + 1);
  if (offsets.length !== n || offsets.some((o, i) => o !== i + 1)) {
    const seen = new Set<number>();
    const dups = offsets.filter((o) => (seen.has(o!) ? true : (seen.add(o!), false)));
    const missing = expected.filter((o) => !seen.has(o));
    assert.fail(`${what}: got ${offsets.length} offsets, duplicates ${JSON.stringify(dups.slice(0, 10))}, missing ${JSON.stringify(missing.slice(0, 10))}, first out-of-order at #${offsets.findIndex((o, i) => o !== i + 1)}`);
  }
}

describe('cluster of three nodes on one Redis', () => {
  let redis: RedisProcess;
  let a: ChorusNode;
  let b: ChorusNode;
  let c: ChorusNode;

  before(async () => {
    redis = await startRedis();
    const config = { presenceTtlMs: 1500, namespaces: NAMESPACES, limits: { maxConnectionsPerUser: 2 } };
    [a, b, c] = await startNodes(['a', 'b', 'c'], { redisUrl: redis.url, config });
  });
  after(async () => {
    await Promise.allSettled([a, b, c].map((n) => n?.stop()));
    if (redis) await stopRedis(redis);
  });

  test('a publication on any node reaches subscribers on every node in order; history is shared; offsets are contiguous across nodes', async () => {
    const channel = 'chat:everywhere';
    const subs = [await connect(a, 'u1a'), await connect(b, 'u1b'), await connect(c, 'u1c')];
    const acks = await Promise.all(subs.map((s) => subscribe(s, channel)));
    for (const ack of acks) assert.equal(ack.offset, 0);
    const epoch = acks[0].epoch;
    assert.ok(acks.every((x) => x.epoch === epoch), 'every node sees the same epoch of a new channel');
    assert.deepEqual(subs.map((s) => (s.frames[0]!.data as any).node), ['a', 'b', 'c']);

    // Alternately via A's and B's HTTP API and a client publish on C: the acks count 1, 2, 3, ...
    const publisher = await connect(c, 'u1pub');
    const N = 30;
    for (let i = 1; i <= N; i++) {
      let ack: any;
      if (i % 3 === 0) ack = await publisher.ok('publish', { channel, data: { i } });
      else {
        const res = await publish(i % 3 === 1 ? a : b, channel, { i });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        ack = res.body;
      }
      assert.deepEqual(ack, { offset: i, epoch }, `publication ${i}`);
    }
    // Concurrently through all three nodes: every offset once, no gap.
    const M = 60;
    const results = await Promise.all(
      Array.from({ length: M }, (_, k) => publish([a, b, c][k % 3]!, channel, { i: N + 1 + k, concurrent: true })),
    );
    assert.ok(results.every((r) => r.status === 200 && r.body.epoch === epoch));
    assert.deepEqual(results.map((r) => r.body.offset).sort((x, y) => x - y), Array.from({ length: M }, (_, k) => N + 1 + k));

    await until('every subscriber has every publication', () => subs.every((s) => s.messages(channel).length >= N + M), 10000);
    const reference = subs[0]!.messages(channel);
    for (const s of subs) {
      const got = s.messages(channel);
      assertContiguous(got.map((m) => m.offset), N + M, `subscriber on ${(s.frames[0]!.data as any).node}`);
      assert.ok(got.every((m) => m.epoch === epoch));
      // Same publication at the same offset on every node.
      assert.deepEqual(got.map((m) => m.data), reference.map((m) => m.data));
    }
    assert.deepEqual(reference.slice(0, N).map((m) => m.data.i), Array.from({ length: N }, (_, k) => k + 1));
    // A client publish carries its publisher on every node.
    assert.equal(subs[0]!.messages(channel)[2].publisher.user, 'u1pub');

    // History read on B shows what A (and C) published, and pages the same on every node.
    const fromB = await api(b.url, 'GET', `/api/history/${channel}?limit=100`);
    assert.equal(fromB.status, 200);
    assert.equal(fromB.body.offset, N + M);
    assert.equal(fromB.body.epoch, epoch);
    assert.deepEqual(fromB.body.publications.map((p: any) => p.data), reference.map((m) => m.data));
    const page = await api(a.url, 'GET', `/api/history/${channel}?since=${N}&epoch=${epoch}&limit=5`);
    assert.deepEqual(page.body.publications.map((p: any) => p.offset), [N + 1, N + 2, N + 3, N + 4, N + 5]);
    const viaClient = await subs[2]!.ok('history', { channel, limit: 3, reverse: true });
    assert.deepEqual(viaClient.publications.map((p: any) => p.offset), [N + M, N + M - 1, N + M - 2]);
    for (const s of [...subs, publisher]) s.close();
  });

  test('presence is one truth: the same user on A and B is one member with 2 connections; join once, leave once', async () => {
    const channel = 'chat:presence';
    const obsA = await connect(a, 'observer-a');
    const obsB = await connect(b, 'observer-b');
    await subscribe(obsA, channel);
    await subscribe(obsB, channel);
    await obsA.find((f) => f.event === 'join' && (f.data as any).user === 'observer-b');

    const patA = await connect(a, 'pat');
    await subscribe(patA, channel);
    await obsB.find((f) => f.event === 'join' && (f.data as any).user === 'pat');
    const patB = await connect(b, 'pat');
    await subscribe(patB, channel);

    const expectPat = async (connections: number) => {
      for (const node of [a, b, c]) {
        const res = await api(node.url, 'GET', `/api/presence/${channel}`);
        assert.equal(res.status, 200);
        const pats = res.body.members.filter((m: any) => m.user === 'pat');
        if (connections === 0) assert.deepEqual(pats, [], `no pat on ${node.name}`);
        else assert.deepEqual(pats, [{ user: 'pat', connections }], `pat on ${node.name}`);
        assert.equal(res.body.members.length, connections === 0 ? 2 : 3);
      }
    };
    await expectPat(2);
    const viaProtocol = await obsB.ok('presence', { channel });
    assert.deepEqual(viaProtocol.members.find((m: any) => m.user === 'pat'), { user: 'pat', connections: 2 });

    // A marker publication through the node where the change happened, received by both
    // observers, tells us every presence event issued before it has been delivered.
    let marker = 0;
    const flush = async (node: ChorusNode) => {
      for (let k = 0; k < 2; k++) {
        const m = ++marker;
        assert.equal((await publish(node, channel, { marker: m })).status, 200);
        for (const o of [obsA, obsB]) await o.find((f) => f.event === 'message' && (f.data as any).data?.marker === m);
      }
    };
    await flush(b);
    const count = (s: TestSocket, event: string) => frames(s, event, channel).filter((f) => (f.data as any).user === 'pat').length;
    for (const o of [obsA, obsB]) {
      assert.equal(count(o, 'join'), 1, 'join once, on the first connection');
      assert.equal(count(o, 'leave'), 0);
    }

    // The first connection (on A) goes: still a member, no leave.
    patA.close();
    await until('pat down to 1 connection', async () => {
      const res = await api(b.url, 'GET', `/api/presence/${channel}`);
      return res.body.members.some((m: any) => m.user === 'pat' && m.connections === 1);
    });
    await expectPat(1);
    await flush(a);
    for (const o of [obsA, obsB]) assert.equal(count(o, 'leave'), 0, 'no leave while a connection remains');

    // The last one (on B) goes: one leave, on every node.
    patB.close();
    for (const o of [obsA, obsB]) await o.find((f) => f.event === 'leave' && (f.data as any).user === 'pat');
    await expectPat(0);
    await flush(b);
    for (const o of [obsA, obsB]) {
      assert.equal(count(o, 'join'), 1);
      assert.equal(count(o, 'leave'), 1);
    }
    obsA.close();
    obsB.close();
  });

  test('the per-user connection cap is cluster-wide', async () => {
    const token = await signToken('capped');
    const first = await connect(a, 'capped');
    const second = await connect(b, 'capped');
    for (const node of [a, b, c]) {
      const third = await upgradeStatus(`${node.wsUrl}?token=${token}`);
      assert.equal(third.status, 429, `third connection on ${node.name}`);
      assert.equal(JSON.parse(third.body).error.code, 'TOO_MANY_CONNECTIONS');
    }
    // A closed connection on A frees its slot for a connection on C.
    first.close();
    await first.closed;
    await until('a slot is free again', async () => (await upgradeStatus(`${c.wsUrl}?token=${token}`)).status === 101, 5000, 50);
    second.close();
  });

  test('POST /api/disconnect and /api/subscribe on A act on connections on B', async () => {
    const onB = await connect(b, 'kicked');
    const onC = await connect(c, 'kicked');
    const res = await api(a.url, 'POST', '/api/disconnect', { user: 'kicked' });
    assert.equal(res.status, 200);
    const [closedB, closedC] = await withTimeout(Promise.all([onB.closed, onC.closed]), 5000, 'disconnect on other nodes');
    assert.equal(closedB.code, 4500);
    assert.equal(closedC.code, 4500);
    assert.ok(onB.frames.some((f) => f.event === 'disconnect' && (f.data as any).code === 4500));

    // Server-side subscribe via A's API: B's connection is subscribed and receives publications.
    const channel = 'chat:server-side';
    const target = await connect(b, 'target');
    const sub = await api(a.url, 'POST', '/api/subscribe', { user: 'target', channel });
    assert.equal(sub.status, 200);
    const subscribed = await target.find((f) => f.event === 'subscribed' && (f.data as any).channel === channel);
    assert.equal((subscribed.data as any).offset, 0);
    assert.equal((await publish(a, channel, { hello: 'b' })).status, 200);
    const message = await target.find((f) => f.event === 'message' && (f.data as any).channel === channel);
    assert.deepEqual((message.data as any).data, { hello: 'b' });
    const members = await api(c.url, 'GET', `/api/presence/${channel}`);
    assert.deepEqual(members.body.members, [{ user: 'target', connections: 1 }]);
    const unsub = await api(a.url, 'POST', '/api/unsubscribe', { user: 'target', channel });
    assert.equal(unsub.status, 200);
    await target.find((f) => f.event === 'unsubscribed' && (f.data as any).channel === channel);
    target.close();
  });
});

interface StreamClient {
  user: string;
  client: ChorusClient;
  subs: Map<string, Subscription<{ i: number }>>;
  received: Map<string, MessageData<{ i: number }>[]>;
  recoveryFailed: number;
  nodes: string[];
  trace: string[];
}

describe('SIGKILL of one of two nodes under a steady stream', () => {
  test('its clients reconnect to the other node and recover with no loss and no duplicate; its presence entries expire with leave events', async () => {
    const TTL = 1500;
    const redis = await startRedis();
    // Cap 2: a reader from A holds its dead slot plus its new one on B until the TTL frees the first.
    const config = { presenceTtlMs: TTL, namespaces: NAMESPACES, limits: { maxConnectionsPerUser: 2 } };
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config });
    const lb = await LoadBalancer.start([() => a.port, () => b.port]);
    try {
      const CHANNELS = Array.from({ length: 5 }, (_, k) => `chat:stream-${k}`);
      const CLIENTS = 10;
      const N = 120;

      // The watcher on B sees who joins and leaves chat:stream-0; two "ghost" users sit on A only.
      const watcher = await connect(b, 'watcher');
      await subscribe(watcher, CHANNELS[0]!);
      const ghosts = [await connect(a, 'ghost-1'), await connect(a, 'ghost-1'), await connect(a, 'ghost-2')];
      for (const g of ghosts) await subscribe(g, CHANNELS[0]!);
      for (const g of ['ghost-1', 'ghost-2']) await watcher.find((f) => f.event === 'join' && (f.data as any).user === g);

      const streamClients: StreamClient[] = [];
      for (let k = 0; k < CLIENTS; k++) {
        const user = `reader-${k}`;
        const trace: string[] = [];
        class Traced extends WebSocket {
          constructor(url: string) {
            super(url);
            if (process.env.CLUSTER_TRACE) this.on('message', (d: Buffer) => trace.push(`raw ${d.toString().split('\n').filter((l) => l.includes('stream-0') && !l.includes('"join"')).map((l) => l.slice(0, 110)).join(' | ')}`));
          }
        }
        const client = new ChorusClient({
          url: lb.wsUrl,
          token: await signToken(user),
          WebSocket: Traced as any,
          minReconnectDelayMs: 10,
          maxReconnectDelayMs: 100,
          timeoutMs: 5000,
        });
        clients.add(client);
        const x: StreamClient = { user, client, subs: new Map(), received: new Map(), recoveryFailed: 0, nodes: [], trace };
        client.on('connected', (d) => {
          x.nodes.push(d.node);
          x.trace.push(`connected ${d.node} ${d.client}`);
        });
        client.on('disconnected', (d) => x.trace.push(`disconnected ${d.code}`));
        client.connect();
        for (const channel of CHANNELS) {
          const sub = client.subscribe<{ i: number }>(channel);
          x.subs.set(channel, sub);
          x.received.set(channel, []);
          sub.on('message', (m) => {
            x.received.get(channel)!.push(m);
            x.trace.push(`${channel} message ${m.offset}`);
          });
          sub.on('subscribed', (r) => x.trace.push(`${channel} subscribed ${JSON.stringify(r)}`));
          sub.on('error', (e) => x.trace.push(`${channel} error ${e.message}`));
          sub.on('recovery-failed', () => x.recoveryFailed++);
        }
        streamClients.push(x);
      }
      await until('every reader subscribed', () => streamClients.every((x) => [...x.subs.values()].every((s) => s.state === 'subscribed')), 10000);
      const onA = streamClients.filter((x) => x.nodes[0] === 'a');
      assert.equal(onA.length, CLIENTS / 2, `round robin: half the readers on A (${streamClients.map((x) => x.nodes[0]).join(',')})`);
      await until('readers in presence', async () => {
        const res = await api(b.url, 'GET', `/api/presence/${CHANNELS[0]}`);
        return res.body.members.length === CLIENTS + 3;
      });

      // The stream: every channel gets 1..N, published through B (the survivor), paced.
      const publishedAt = new Map<string, number>();
      let killedAt = 0;
      stopPublishing = false;
      const published = CHANNELS.map(async (channel) => {
        for (let i = 1; i <= N && !stopPublishing; i++) {
          const res = await publish(b, channel, { i });
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.equal(res.body.offset, i);
          publishedAt.set(channel, i);
          await new Promise((r) => setTimeout(r, 8));
        }
      });
      for (const p of published) p.catch(() => {}); // awaited below; no unhandled rejection if the test fails first
      await until('a third of the stream published', () => CHANNELS.every((ch) => (publishedAt.get(ch) ?? 0) >= N / 3));
      await a.kill('SIGKILL');
      killedAt = Date.now();
      // The dead node's connection slots still count (ghost-1 had 2 on A) until the TTL.
      const ghostToken = await signToken('ghost-1');
      assert.equal((await upgradeStatus(`${b.wsUrl}?token=${ghostToken}`)).status, 429);
      await Promise.all(published);

      await until(
        'every reader has every publication',
        () => streamClients.every((x) => CHANNELS.every((ch) => x.received.get(ch)!.length >= N)),
        15000,
      );
      for (const x of streamClients) {
        for (const channel of CHANNELS) {
          const got = x.received.get(channel)!;
          try {
            assertContiguous(got.map((m) => m.offset), N, `${x.user} on ${channel}`);
          } catch (err) {
            // What this client saw (set CLUSTER_TRACE=1 to include raw frames).
            console.log(x.trace.filter((t) => !t.startsWith('chat') || t.startsWith(channel)).join('\n'));
            throw err;
          }
          assert.deepEqual(got.map((m) => m.data.i), Array.from({ length: N }, (_, k) => k + 1));
          assert.equal(new Set(got.map((m) => m.epoch)).size, 1);
        }
        assert.equal(x.recoveryFailed, 0, `${x.user}: no recovery-failed`);
        assert.equal(x.nodes.at(-1), 'b', `${x.user} ends on the survivor`);
      }
      for (const x of onA) assert.ok(x.nodes.length >= 2, `${x.user} reconnected`);

      // No ghosts: after the TTL the killed node's entries are gone, with one leave per ghost user
      // and none for the readers who reconnected elsewhere.
      for (const g of ['ghost-1', 'ghost-2']) {
        await watcher.find((f) => f.event === 'leave' && (f.data as any).user === g, TTL + 5000);
      }
      assert.ok(Date.now() - killedAt >= TTL / 3, 'the leave came from the TTL, not earlier');
      await until('the dead slots expired', async () => (await upgradeStatus(`${b.wsUrl}?token=${ghostToken}`)).status === 101, 5000, 50);
      await until('presence settles to the live connections', async () => {
        const res = await api(b.url, 'GET', `/api/presence/${CHANNELS[0]}`);
        return res.body.members.length === CLIENTS + 1 && res.body.members.every((m: any) => m.connections === 1);
      }, TTL + 5000, 50);
      const members = (await api(b.url, 'GET', `/api/presence/${CHANNELS[0]}`)).body.members.map((m: any) => m.user).sort();
      assert.deepEqual(members, ['watcher', ...streamClients.map((x) => x.user)].sort());
      const leaves = frames(watcher, 'leave', CHANNELS[0]).map((f) => (f.data as any).user).sort();
      assert.deepEqual(leaves, ['ghost-1', 'ghost-2'], 'leave only for users that are really gone');
      const joins = frames(watcher, 'join', CHANNELS[0]).map((f) => (f.data as any).user);
      assert.equal(joins.filter((u) => u.startsWith('ghost')).length, 2, 'ghost-1 joined once for its 2 connections');
      for (const x of streamClients) assert.equal(joins.filter((u) => u === x.user).length, 1, `${x.user} joined once`);
    } finally {
      stopPublishing = true;
      for (const x of clients) x.close();
      await lb.stop();
      await Promise.allSettled([a.stop(), b.stop()]);
      await stopRedis(redis);
    }
  });
});

describe('Redis restarts', () => {
  test('without persistence: a new epoch, recovered:false for old positions, publishing works again without a node restart', async (t) => {
    const redis = await startRedis();
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config: { namespaces: NAMESPACES } });
    try {
      const channel = 'chat:volatile';
      const sub = await connect(b, 'r1');
      await subscribe(sub, channel);
      const watcher = await watchingClient(b, 'r2', channel);
      const creceived = watcher.received;
      for (let i = 1; i <= 5; i++) assert.equal((await publish(a, channel, { i })).body.offset, i);
      await until('5 messages', () => sub.messages(channel).length === 5 && creceived.length === 5);
      const oldEpoch = sub.messages(channel)[0].epoch as string;

      await redis.restart();
      // Publishing works again on its own (ioredis reconnects); the stream starts over in a new epoch.
      let first: any;
      await until('publish succeeds after the restart', async () => {
        const res = await publish(a, channel, { i: 'new-1' });
        if (res.status === 200) first = res.body;
        // Not applied, or (a publish in flight when Redis died) not known: never a false "applied".
        else assert.ok(['UNAVAILABLE', 'OUTCOME_UNKNOWN'].includes(res.body.error.code), res.body.error.code);
        return res.status === 200;
      }, 10000, 50);
      assert.equal(first.offset, 1);
      assert.notEqual(first.epoch, oldEpoch, 'a new epoch');

      // An old position is never recovered: recovered:false and no publication of the gap.
      const late = await connect(b, 'r3');
      const ack = await subscribe(late, channel, { offset: 5, epoch: oldEpoch });
      assert.equal(ack.recovered, false);
      assert.equal(ack.epoch, first.epoch);
      assert.deepEqual(late.messages(channel), []);
      const late2 = await connect(a, 'r4');
      const ack2 = await subscribe(late2, channel, { offset: 0, epoch: oldEpoch });
      assert.equal(ack2.recovered, false);
      const hist = await api(a.url, 'GET', `/api/history/${channel}?since=1&epoch=${oldEpoch}`);
      assert.equal(hist.status, 400);
      assert.equal(hist.body.error.code, 'UNRECOVERABLE_POSITION');

      // The subscriber that stayed on B: either told to resync (4005) or sees the new epoch; never
      // the old epoch's offsets continued with new data.
      for (const m of sub.messages(channel).slice(5)) assert.equal(m.epoch, first.epoch);
      assert.ok(sub.closeCode === undefined || sub.closeCode === 4005, `close code ${sub.closeCode}`);
      t.diagnostic(`subscriber that stayed on B: ${sub.closeCode === 4005 ? 'closed 4005 (resync)' : `still open, ${sub.messages(channel).length - 5} new-epoch messages`}`);
      // The real client: recovery-failed (the app reloads), then live publications of the new epoch.
      assert.equal((await publish(b, channel, { i: 'new-2' })).body.offset, 2);
      await until('the client is on the new epoch', () => creceived.some((m) => m.epoch === first.epoch && m.offset === 2), 10000);
      assert.ok(watcher.failed >= 1, 'the client was told recovery failed');
      for (const m of creceived.slice(5)) assert.equal(m.epoch, first.epoch);
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      await stopRedis(redis);
    }
  });

  test('with persistence: the epoch is kept and a client recovers what it missed', async () => {
    const redis = await startRedis({ persistence: true });
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config: { namespaces: NAMESPACES } });
    try {
      const channel = 'chat:durable';
      const sub = await connect(b, 'p1');
      await subscribe(sub, channel);
      const watcher = await watchingClient(b, 'p2', channel);
      const creceived = watcher.received;
      for (let i = 1; i <= 3; i++) assert.equal((await publish(a, channel, { i })).body.offset, i);
      await until('3 messages', () => sub.messages(channel).length === 3 && creceived.length === 3);
      const epoch = sub.messages(channel)[0].epoch as string;
      sub.close();

      await redis.restart();
      let i = 4;
      await until('publish succeeds after the restart', async () => {
        const res = await publish(a, channel, { i });
        if (res.status !== 200) assert.ok(['UNAVAILABLE', 'OUTCOME_UNKNOWN'].includes(res.body.error.code), res.body.error.code);
        else assert.deepEqual(res.body, { offset: i, epoch }, 'same epoch, next offset');
        return res.status === 200;
      }, 10000, 50);
      for (i = 5; i <= 6; i++) assert.deepEqual((await publish(b, channel, { i })).body, { offset: i, epoch });

      const back = await connect(b, 'p1');
      const ack = await subscribe(back, channel, { offset: 3, epoch });
      assert.equal(ack.recovered, true);
      assert.equal(ack.offset, 6);
      assert.deepEqual(back.messages(channel).map((m) => m.data.i), [4, 5, 6]);
      // The client that stayed connected through the restart has everything, once, in order.
      await until('the client has 1..6', () => creceived.length >= 6, 10000);
      assertContiguous(creceived.map((m) => m.offset), 6, 'client through a Redis restart');
      assert.equal(watcher.failed, 0);
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      await stopRedis(redis);
    }
  });
});

describe('Redis paused with SIGSTOP', () => {
  test('publishes answer OUTCOME_UNKNOWN promptly (Redis may still run them), clients stay connected, everything works again after SIGCONT', async (t) => {
    const redis = await startRedis();
    const config = {
      namespaces: NAMESPACES,
      heartbeat: { intervalMs: 200, timeoutMs: 800 },
      redis: { url: redis.url, commandTimeoutMs: 300, outcomeTimeoutMs: 300 },
    };
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config });
    try {
      const channel = 'chat:paused';
      const sub = await connect(b, 's1');
      await subscribe(sub, channel);
      const pub = await connect(a, 's2');
      assert.equal((await publish(a, channel, { phase: 'before' })).body.offset, 1);
      await sub.find((f) => f.event === 'message' && (f.data as any).data.phase === 'before');

      redis.signal('SIGSTOP');
      try {
        let started = Date.now();
        const res = await publish(a, channel, { phase: 'during-http' });
        const httpMs = Date.now() - started;
        // The script reached the paused Redis: the node cannot know yet whether it will run.
        assert.equal(res.status, 504);
        assert.equal(res.body.error.code, 'OUTCOME_UNKNOWN');
        assert.ok(httpMs < 1500, `HTTP publish failed after ${httpMs} ms`);
        started = Date.now();
        const reply = await pub.request('publish', { channel, data: { phase: 'during-client' } });
        const clientMs = Date.now() - started;
        assert.equal(reply.event, 'error', JSON.stringify(reply));
        assert.equal((reply.data as any).code, 'OUTCOME_UNKNOWN');
        assert.ok(clientMs < 1500, `client publish failed after ${clientMs} ms`);
        t.diagnostic(`paused: HTTP publish 504 after ${httpMs} ms, client publish error after ${clientMs} ms (commandTimeoutMs 300, outcomeTimeoutMs 300)`);
        // Stay paused for longer than the heartbeat timeout: heartbeats are local, nobody is dropped.
        const pings = () => sub.frames.filter((f) => f.event === 'ping').length;
        const before = pings();
        await until('heartbeats during the pause', () => pings() >= before + 6, 5000);
        assert.equal(sub.closeCode, undefined);
        assert.equal(pub.closeCode, undefined);
        assert.equal((await api(b.url, 'GET', '/healthz')).status, 200);
      } finally {
        redis.signal('SIGCONT');
      }

      await until('publish succeeds after SIGCONT', async () => (await publish(a, channel, { phase: 'after' })).status === 200, 10000, 50);
      await sub.find((f) => f.event === 'message' && (f.data as any).data.phase === 'after');
      const ack = await pub.ok('publish', { channel, data: { phase: 'after-client' } });
      await sub.find((f) => f.event === 'message' && (f.data as any).data.phase === 'after-client');
      assert.equal(sub.closeCode, undefined);
      assert.equal(pub.closeCode, undefined);
      // Answered OUTCOME_UNKNOWN, and in fact not applied: Redis ran them after SIGCONT, past their deadline.
      const phases = sub.messages(channel).map((m) => m.data.phase);
      assert.ok(!phases.includes('during-http') && !phases.includes('during-client'), `delivered: ${phases.join(', ')}`);
      const history = await api(b.url, 'GET', `/api/history/${channel}`);
      assert.deepEqual(
        history.body.publications.map((p: any) => p.data.phase).filter((p: string) => p.startsWith('during')),
        [],
        'a failed publish is not in history',
      );
      assert.equal(ack.offset, history.body.offset);
      assertContiguous(sub.messages(channel).map((m) => m.offset), ack.offset, 'subscriber through the pause');
    } finally {
      redis.signal('SIGCONT');
      await Promise.allSettled([a.stop(), b.stop()]);
      await stopRedis(redis);
    }
  });
});

describe("a node's Redis pub/sub connection dropped", () => {
  test('its subscribers still get every publication once and in order (backfilled), or are told to resync (4005) and recover', async (t) => {
    const redis = await startRedis();
    // small:* keeps too little history to backfill a drop: its subscribers must be told (4005, then recovered:false).
    const namespaces = [...NAMESPACES, { pattern: 'small:*', historySize: 3, recoveryMaxMissed: 3 }];
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config: { namespaces } });
    try {
      const CHANNELS = ['chat:drop-0', 'chat:drop-1', 'chat:drop-2'];
      const SMALL = 'small:drop';
      const N = 150;

      /**
       * A raw subscriber on B that reconnects with its position only when told to (4005). `log`
       * holds the offsets received and a 'lost' marker where a resubscribe answered recovered:false.
       */
      class Reader {
        socket!: TestSocket;
        readonly log: Array<number | 'lost'> = [];
        position: { offset: number; epoch: string } | undefined;
        resyncs = 0;
        unexpectedClose: number | undefined;
        private seen = 0;
        constructor(readonly channel: string) {}
        get offsets(): number[] {
          return this.log.filter((o): o is number => o !== 'lost');
        }
        async start(): Promise<void> {
          const socket = await connect(b, `reader-${this.channel}`);
          this.socket = socket;
          this.seen = 0;
          socket.ws.on('message', () => this.socket === socket && this.collect());
          const ack = await subscribe(socket, this.channel, this.position);
          this.collect();
          this.position ??= { offset: ack.offset, epoch: ack.epoch };
          void socket.closed.then(({ code }) => {
            if (code === 4005) {
              this.resyncs++;
              void this.start();
            } else if (!stopping) this.unexpectedClose = code;
          });
        }
        private collect(): void {
          const frames = this.socket.frames;
          for (; this.seen < frames.length; this.seen++) {
            const f = frames[this.seen]!;
            const m = f.data as any;
            if (f.event === 'ack' && m?.recovered === false) {
              // In stream order: live messages right behind the ack come after this marker.
              this.log.push('lost');
              this.position = { offset: m.offset, epoch: m.epoch };
            }
            if (f.event !== 'message') continue;
            this.log.push(m.offset);
            this.position = { offset: m.offset, epoch: m.epoch };
          }
        }
      }
      let stopping = false;
      const readers = CHANNELS.map((ch) => new Reader(ch));
      for (const r of readers) await r.start();
      const small = new Reader(SMALL);
      await small.start();

      const progress = new Map<string, number>();
      stopPublishing = false;
      const published = [...CHANNELS, SMALL].map(async (channel) => {
        for (let i = 1; i <= N && !stopPublishing; i++) {
          const res = await publish(a, channel, { i });
          assert.equal(res.status, 200);
          progress.set(channel, i);
          await new Promise((r) => setTimeout(r, 5));
        }
      });
      for (const p of published) p.catch(() => {}); // awaited below; no unhandled rejection if the test fails first

      const pubsubId = async () => (await clientList(redis.port)).find((c) => c.name === 'chorus-b-pubsub')?.id;
      const names = (await clientList(redis.port)).map((c) => c.name).sort();
      assert.deepEqual(names, ['chorus-a-commands', 'chorus-a-pubsub', 'chorus-b-commands', 'chorus-b-pubsub']);
      const KILLS = 3;
      /** Publications made while B's pub/sub was down (so B had to backfill them). */
      const missedWhileDown: number[] = [];
      for (let k = 1; k <= KILLS; k++) {
        await until(`stream at ${k}/${KILLS + 1}`, () => CHANNELS.every((ch) => (progress.get(ch) ?? 0) >= (N * k) / (KILLS + 1)));
        const id = await pubsubId();
        assert.ok(id, 'chorus-b-pubsub is connected');
        const total = () => [...progress.values()].reduce((x, y) => x + y, 0);
        const atKill = total();
        assert.equal(await redisCommand(redis.port, 'CLIENT', 'KILL', 'ID', id), ':1');
        const reconnected = k;
        await b.waitForLog(() => b.logs.filter((l) => l.msg === 'redis pub/sub reconnected; backfilling').length >= reconnected, 5000);
        missedWhileDown.push(total() - atKill);
      }
      await Promise.all(published);
      await until('every reader has every publication', () => readers.every((r) => r.offsets.length >= N), 10000);
      await until('the small-history reader reached the end', () => small.position?.offset === N, 10000);
      stopping = true;
      // Where the small-history reader skipped offsets, it was told so: never a silent gap.
      let previous = 0;
      let toldLost = false;
      for (const entry of small.log) {
        if (entry === 'lost') {
          toldLost = true;
          continue;
        }
        if (entry <= previous) assert.fail(`${SMALL}: offset ${entry} after ${previous} (duplicate or out of order)`);
        if (entry !== previous + 1 && !toldLost) assert.fail(`${SMALL}: silent gap ${previous} -> ${entry}`);
        previous = entry;
        toldLost = false;
      }
      assert.ok(small.resyncs >= 1, `${SMALL}: told to resync (4005) at least once`);
      assert.equal(small.unexpectedClose, undefined);
      for (const r of readers) {
        assertContiguous(r.offsets, N, `reader of ${r.channel} (${r.resyncs} resyncs)`);
        assert.equal(r.unexpectedClose, undefined);
      }
      t.diagnostic(`published while B's pub/sub was down: ${missedWhileDown.join(', ')}; resyncs (4005) per reader: ${readers.map((r) => r.resyncs).join(', ')}; small-history reader: ${small.resyncs} resyncs, ${small.log.filter((o) => o === 'lost').length} recovered:false`);
      assert.ok(missedWhileDown.every((n) => n > 0), 'every drop really missed publications');
      const reconnects = b.logs.filter((l) => l.msg === 'redis pub/sub reconnected; backfilling').length;
      assert.equal(reconnects, KILLS, 'the node noticed every drop');
    } finally {
      stopPublishing = true;
      await Promise.allSettled([a.stop(), b.stop()]);
      await stopRedis(redis);
    }
  });
});

describe('a short presenceTtlMs', () => {
  test('live members never expire between refreshes (no leave/join flapping, the cap still holds)', async () => {
    const TTL = 600; // shorter than the default 1 s timer tick of a 30 s heartbeat
    const redis = await startRedis();
    const config = { presenceTtlMs: TTL, namespaces: NAMESPACES, limits: { maxConnectionsPerUser: 1 } };
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config });
    try {
      const channel = 'chat:short-ttl';
      const watcher = await connect(b, 'watcher');
      await subscribe(watcher, channel);
      const member = await connect(a, 'steady');
      await subscribe(member, channel);
      await watcher.find((f) => f.event === 'join' && (f.data as any).user === 'steady');
      // Watch for several TTLs: the member stays listed, no leave, and its connection slot stays taken.
      const until = Date.now() + TTL * 4;
      while (Date.now() < until) {
        const res = await api(b.url, 'GET', `/api/presence/${channel}`);
        assert.deepEqual(res.body.members.map((m: any) => m.user).sort(), ['steady', 'watcher'], `presence after ${TTL * 4 - (until - Date.now())} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(frames(watcher, 'leave', channel), []);
      assert.equal(frames(watcher, 'join', channel).filter((f) => (f.data as any).user === 'steady').length, 1);
      assert.equal((await upgradeStatus(`${b.wsUrl}?token=${await signToken('steady')}`)).status, 429, 'the slot did not expire');
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      await stopRedis(redis);
    }
  });
});

describe('Redis with a password', () => {
  test('a URL with a password works and the password never appears in any log line', async () => {
    const password = 'pw-Sup3rSecret-4cluster';
    const redis = await startRedis({ password });
    assert.ok(redis.url.includes(password));
    // debug level: connection errors and reconnects are logged too.
    const [a, b] = await startNodes(['a', 'b'], { redisUrl: redis.url, config: { namespaces: NAMESPACES }, logLevel: 'debug' });
    try {
      const channel = 'chat:secret';
      const sub = await connect(b, 'x1');
      await subscribe(sub, channel);
      assert.equal((await publish(a, channel, { ok: true })).status, 200);
      await sub.find((f) => f.event === 'message');
      // A Redis outage makes the nodes log errors and reconnects; still no password.
      await redis.restart();
      await until('publish succeeds after the restart', async () => (await publish(a, channel, { ok: 2 })).status === 200, 10000, 50);
      for (const node of [a, b]) {
        assert.ok(node.logs.some((l) => l.msg === 'redis connected'));
        const leaking = node.rawLines.filter((l) => l.includes(password) || l.includes(encodeURIComponent(password)));
        assert.deepEqual(leaking, [], `node ${node.name} logged the password`);
      }
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      for (const node of [a, b]) {
        assert.deepEqual(node.rawLines.filter((l) => l.includes(password)), [], `node ${node.name} logged the password at shutdown`);
      }
      await stopRedis(redis);
    }
  });
});
