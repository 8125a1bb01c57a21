/**
 * The cluster's resync and recovery paths over the in-process test bus (src/engines/bus): two
 * ChorusServers on port 0 share one bus, real WebSocket clients connect to them, and the bus's
 * fault switches drop, duplicate, reorder and delay publications between the nodes, cut a node
 * off, or lose it. The same paths run against a real redis-server in cluster.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { busClusters, offsets, range } from './bus-helpers.js';
import { api, signToken, until, upgradeStatus, type TestServer } from './helpers.js';

const NAMESPACES = [
  { pattern: 'chat:*', historySize: 100, recoveryMaxMissed: 100, presence: true },
  { pattern: 'small:*', historySize: 2, recoveryMaxMissed: 2 },
];

const { cluster, connect } = busClusters(NAMESPACES);

async function publishAll(server: TestServer, channel: string, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    const result = await server.chorus.publish(channel, { i });
    assert.equal(result.offset, i);
  }
}

describe('test bus cluster: publications between nodes', () => {
  test('a publication on one node reaches subscribers on the other in order; history is shared', async () => {
    const { a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:plain' });
    await publishAll(a, 'chat:plain', 5);
    await until('every publication on B', () => offsets(reader, 'chat:plain').length === 5, 5000);
    assert.deepEqual(offsets(reader, 'chat:plain'), range(5));
    const history = await b.chorus.history('chat:plain', { limit: 10 });
    assert.deepEqual(history.publications.map((p) => p.offset), range(5));
  });

  test('a dropped publication is backfilled from history when the next one shows the gap', async () => {
    const { bus, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:drop' });
    bus.drop({ to: 'b', channel: 'chat:drop', count: 2 });
    await publishAll(a, 'chat:drop', 5);
    await until('every publication on B', () => offsets(reader, 'chat:drop').length === 5, 5000);
    assert.deepEqual(offsets(reader, 'chat:drop'), range(5), 'once each, in order');
    assert.equal(bus.faults.pending, 0, 'both drops happened');
    assert.equal(reader.closeCode, undefined);
  });

  test('a dropped tail (nothing published after it) is backfilled by the gap check, at its second round', async () => {
    const { bus, nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:tail' });
    await publishAll(a, 'chat:tail', 2);
    await until('live delivery', () => offsets(reader, 'chat:tail').length === 2, 5000);
    bus.drop({ to: 'b', channel: 'chat:tail', count: 1 });
    await a.chorus.publish('chat:tail', { i: 3 });
    await nodes.b.checkGaps(); // notes the top: pub/sub may still be delivering it
    assert.deepEqual(offsets(reader, 'chat:tail'), range(2));
    await nodes.b.checkGaps(); // still missing a round later: backfilled
    await until('the tail on B', () => offsets(reader, 'chat:tail').length === 3, 5000);
    assert.deepEqual(offsets(reader, 'chat:tail'), range(3));
  });

  test('a drop that history cannot cover closes subscribers with 4005; resubscribing says recovered:false', async () => {
    const { bus, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    const ack = await reader.ok('subscribe', { channel: 'small:drop' });
    bus.drop({ to: 'b', channel: 'small:drop', count: 3 });
    await publishAll(a, 'small:drop', 4); // history keeps 3 and 4 only: 1 and 2 cannot be backfilled
    const { code } = await reader.closed;
    assert.equal(code, 4005);
    assert.deepEqual(offsets(reader, 'small:drop'), [], 'nothing delivered out of order before the close');
    const again = await connect(b, 'reader');
    const resubscribed = await again.ok('subscribe', { channel: 'small:drop', since: { offset: ack.offset, epoch: ack.epoch } });
    assert.equal(resubscribed.recovered, false);
    assert.equal(resubscribed.offset, 4);
    await a.chorus.publish('small:drop', { i: 5 });
    await until('live again', () => offsets(again, 'small:drop').length === 1, 5000);
    assert.deepEqual(offsets(again, 'small:drop'), [5]);
  });

  test('duplicated and reordered publications are delivered once each, in order', async () => {
    const { bus, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:mixed' });
    bus.duplicate({ to: 'b', channel: 'chat:mixed', count: 3 });
    bus.reorder({ to: 'b', channel: 'chat:mixed', count: 3 });
    bus.delay({ to: 'b', channel: 'chat:mixed', ms: 20, count: 2 });
    bus.duplicate({ to: 'b', channel: 'chat:mixed', count: 2 });
    await publishAll(a, 'chat:mixed', 20);
    await until('every publication on B', () => offsets(reader, 'chat:mixed').length >= 20, 5000);
    await until('every fault applied and every delayed or held publication delivered', () => bus.faults.pending === 0 && bus.settled, 5000);
    assert.deepEqual(offsets(reader, 'chat:mixed'), range(20));
    assert.equal(reader.closeCode, undefined);
  });

  test('a node cut off from the bus catches up when it reconnects (as after a pub/sub reconnect)', async () => {
    const { nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:cut' });
    await publishAll(a, 'chat:cut', 3);
    await until('live delivery', () => offsets(reader, 'chat:cut').length === 3, 5000);
    nodes.b.disconnect();
    for (let i = 4; i <= 8; i++) await a.chorus.publish('chat:cut', { i });
    assert.deepEqual(offsets(reader, 'chat:cut'), range(3), 'nothing reached B while cut off');
    await nodes.b.reconnect();
    await until('backfilled', () => offsets(reader, 'chat:cut').length === 8, 5000);
    assert.deepEqual(offsets(reader, 'chat:cut'), range(8));
  });
});

describe('test bus cluster: a lost node', () => {
  test("its presence entries expire with one leave per user; its connection slots are freed after the TTL", async () => {
    const TTL = 300;
    const { bus, nodes, a, b } = await cluster({ server: { presenceTtlMs: TTL, limits: { maxConnectionsPerUser: 2 } } });
    const watcher = await connect(b, 'watcher');
    await watcher.ok('subscribe', { channel: 'chat:room' });
    const ghosts = [await connect(a, 'ghost'), await connect(a, 'ghost')];
    for (const g of ghosts) await g.ok('subscribe', { channel: 'chat:room' });
    await watcher.find((f) => f.event === 'join' && (f.data as any).user === 'ghost');
    const ghostToken = await signToken('ghost');
    assert.equal((await upgradeStatus(`${b.wsUrl}?token=${ghostToken}`)).status, 429, 'two slots held on A');

    bus.lose(nodes.a);
    const lostAt = Date.now();
    await watcher.find((f) => f.event === 'leave' && (f.data as any).user === 'ghost', TTL * 10);
    assert.ok(Date.now() - lostAt >= TTL / 3, 'the leave came from the TTL');
    const members = (await api(b.url, 'GET', '/api/presence/chat:room')).body.members.map((m: any) => m.user);
    assert.deepEqual(members, ['watcher']);
    await until('the dead slots expired', async () => (await upgradeStatus(`${b.wsUrl}?token=${ghostToken}`)).status === 101, TTL * 10, 20);
    const leaves = watcher.frames.filter((f) => f.event === 'leave').map((f) => (f.data as any).user);
    const joins = watcher.frames.filter((f) => f.event === 'join').map((f) => (f.data as any).user);
    assert.deepEqual(leaves, ['ghost'], 'one leave for the user of two connections');
    assert.deepEqual(joins.filter((u) => u === 'ghost'), ['ghost'], 'one join for the user of two connections');
    // The lost node hears nothing more.
    await b.chorus.publish('chat:room', { after: true });
    await watcher.find((f) => f.event === 'message' && (f.data as any).data.after === true);
    assert.ok(ghosts.every((g) => g.messages('chat:room').length === 0));
  });
});
