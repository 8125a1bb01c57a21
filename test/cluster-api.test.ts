/**
 * Cluster-wide answers of the HTTP API: two nodes on the in-process test bus (and once on a real
 * redis-server) each with their own connections; whichever node is asked, `/api/channels` sums
 * every node's subscribers and `/api/disconnect`, `/api/subscribe`, `/api/unsubscribe` act on
 * and count every node's connections. A node that does not answer is listed as missing.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { TestBus, type BusNode } from '../src/engines/bus/index.js';
import { RedisEngine } from '../src/engines/redis/index.js';
import type { Engine } from '../src/engines/types.js';
import type { ServerOptions } from '../src/server/index.js';
import { api, signToken, startServer, TestSocket, until, type TestServer } from './helpers.js';
import { RedisProcess } from './redis-helpers.js';

const OPTIONS: ServerOptions = {
  namespaces: [{ pattern: 'chat:*', historySize: 10, presence: true }],
  cluster: { reportIntervalMs: 100, replyTimeoutMs: 500 },
  personalChannel: false,
};

const sockets = new Set<TestSocket>();
const servers: TestServer[] = [];
let cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const s of sockets) s.ws.terminate();
  sockets.clear();
  await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  for (const fn of cleanup.splice(0)) await fn();
  cleanup = [];
});

async function connect(server: TestServer, user: string, channel?: string): Promise<TestSocket> {
  const socket = await TestSocket.connect(server.wsUrl, await signToken(user));
  sockets.add(socket);
  if (channel) await socket.ok('subscribe', { channel });
  return socket;
}

async function twoNodes(engines: [Engine, Engine]): Promise<[TestServer, TestServer]> {
  const [a, b] = await Promise.all(engines.map((engine, i) => startServer({ ...OPTIONS, engine, nodeId: `node-${'ab'[i]}` })));
  servers.push(a!, b!);
  await Promise.all([a!.chorus.start(), b!.chorus.start()]);
  // Both nodes reported to the directory.
  await until('both nodes reported', async () => (await a!.chorus.engine.nodes.list()).length === 2, 5000);
  return [a!, b!];
}

/** The same scenario on any two-node engine. */
async function clusterScenario(a: TestServer, b: TestServer): Promise<void> {
  const ada1 = await connect(a, 'ada', 'chat:room');
  const ada2 = await connect(b, 'ada', 'chat:room');
  await connect(b, 'bob', 'chat:room');
  await connect(b, 'bob', 'chat:other');

  // Channels: asked on node a, counted on both (b's figures from its report).
  await until(
    'cluster channel counts',
    async () => {
      const r = await api(a.url, 'GET', '/api/channels');
      const room = r.body.channels.find((c: any) => c.channel === 'chat:room');
      const other = r.body.channels.find((c: any) => c.channel === 'chat:other');
      // b reports periodically: wait for a report taken after both of bob's subscriptions.
      return room?.subscribers === 3 && room?.nodes === 2 && other !== undefined;
    },
    5000,
    20,
  );
  const channels = (await api(a.url, 'GET', '/api/channels')).body;
  assert.deepEqual(channels.nodes, ['node-a', 'node-b']);
  assert.deepEqual(channels.channels.find((c: any) => c.channel === 'chat:other'), { channel: 'chat:other', subscribers: 1, nodes: 1 });

  // Subscribe: bob's two connections are both on b; a answers with the cluster count.
  const sub = await api(a.url, 'POST', '/api/subscribe', { user: 'bob', channel: 'chat:news' });
  assert.deepEqual(sub.body, { subscribed: 2, nodes: ['node-a', 'node-b'], missing: [] });
  const unsub = await api(a.url, 'POST', '/api/unsubscribe', { user: 'bob', channel: 'chat:other' });
  assert.deepEqual(unsub.body, { unsubscribed: 1, nodes: ['node-a', 'node-b'], missing: [] });

  // Disconnect: ada has one connection per node; asked on b, both close.
  const dis = await api(b.url, 'POST', '/api/disconnect', { user: 'ada' });
  assert.deepEqual(dis.body, { disconnected: 2, nodes: ['node-a', 'node-b'], missing: [] });
  const [c1, c2] = await Promise.all([ada1.closed, ada2.closed]);
  assert.equal(c1.code, 4500);
  assert.equal(c2.code, 4500);
  const none = await api(a.url, 'POST', '/api/disconnect', { user: 'nobody' });
  assert.deepEqual(none.body, { disconnected: 0, nodes: ['node-a', 'node-b'], missing: [] });
}

describe('cluster-wide HTTP API answers (test bus)', () => {
  test('channels, subscribe, unsubscribe and disconnect count every node, whichever is asked', async () => {
    const bus = new TestBus();
    await bus.start();
    cleanup.push(() => bus.close());
    const [a, b] = await twoNodes([bus.node('a'), bus.node('b')]);
    await clusterScenario(a, b);
  });

  test('a node cut off from the bus is listed as missing after the reply timeout; its report expires', async () => {
    const bus = new TestBus();
    await bus.start();
    cleanup.push(() => bus.close());
    const nodeB: BusNode = bus.node('b');
    const [a] = await twoNodes([bus.node('a'), nodeB]);
    nodeB.disconnect();
    const r = await api(a.url, 'POST', '/api/disconnect', { user: 'ada' });
    assert.deepEqual(r.body, { disconnected: 0, nodes: ['node-a'], missing: ['node-b'] });
    await nodeB.reconnect();
    const back = await api(a.url, 'POST', '/api/disconnect', { user: 'ada' });
    assert.deepEqual(back.body.missing, []);
  });

  test('a node that shut down leaves the directory at once', async () => {
    const bus = new TestBus();
    await bus.start();
    cleanup.push(() => bus.close());
    const [a, b] = await twoNodes([bus.node('a'), bus.node('b')]);
    servers.splice(servers.indexOf(b), 1);
    await b.close();
    assert.deepEqual((await a.chorus.engine.nodes.list()).map((n) => n.node), ['node-a']);
    const r = await api(a.url, 'POST', '/api/disconnect', { user: 'ada' });
    assert.deepEqual(r.body, { disconnected: 0, nodes: ['node-a'], missing: [] });
  });
});

describe('cluster-wide HTTP API answers (real redis-server)', () => {
  let redis: RedisProcess;
  before(async () => {
    redis = await RedisProcess.start();
  });
  after(async () => {
    await redis.stop();
  });

  test('two nodes sharing Redis answer for each other', async () => {
    const engines: [RedisEngine, RedisEngine] = [new RedisEngine({ url: redis.url }), new RedisEngine({ url: redis.url })];
    cleanup.push(async () => {
      await Promise.all(engines.map((e) => e.close()));
    });
    const [a, b] = await twoNodes(engines);
    await clusterScenario(a, b);
    // A report expires by TTL: one written with 50 ms is gone after it.
    await engines[0].nodes.report('ghost', { node: 'ghost' }, 50);
    assert.ok((await engines[0].nodes.list()).some((n) => n.node === 'ghost'));
    await until('ghost expired', async () => !(await engines[1].nodes.list()).some((n) => n.node === 'ghost'), 3000, 20);
  });
});
