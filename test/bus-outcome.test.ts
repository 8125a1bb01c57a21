/**
 * Saying only what is true when the engine misbehaves, over the in-process test bus (ms, no
 * Redis): a publish applied but answered OUTCOME_UNKNOWN (`loseReplies`) on the HTTP API (504),
 * a client `publish` frame, the server's `publish()` promise and the client library (which
 * retries with the same id into exactly one copy); and the gap check / backfill never closing
 * subscribers with 4005 while history or a pub/sub backlog still covers the gap. The same cases
 * run against a real redis-server behind a fault-injecting proxy in redis-faults.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient } from '../src/client/index.js';
import { MemoryEngine } from '../src/engines/memory/index.js';
import type { PublishOptions, PublishResult } from '../src/engines/types.js';
import { ChorusError, CloseCode, ErrorCode } from '../src/protocol/index.js';
import { busClusters, offsets, range } from './bus-helpers.js';
import { api, nextEvent, signToken, startServer, until } from './helpers.js';

const NAMESPACES = [
  { pattern: 'chat:*', historySize: 100, recoveryMaxMissed: 100 },
  { pattern: 'small:*', historySize: 2, recoveryMaxMissed: 2 },
];

const { cluster, connect } = busClusters(NAMESPACES);

describe('a publish whose outcome is unknown (applied, reply lost)', () => {
  test('HTTP API: 504 OUTCOME_UNKNOWN; a retry with the same idempotencyKey answers the real position; one copy delivered', async () => {
    const { nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:api' });
    nodes.a.loseReplies(1);
    const first = await api(a.url, 'POST', '/api/publish', { channel: 'chat:api', data: { n: 1 }, idempotencyKey: 'k1' });
    assert.equal(first.status, 504);
    assert.equal(first.body.error.code, ErrorCode.OUTCOME_UNKNOWN);
    await until('delivered anyway', () => offsets(reader, 'chat:api').length === 1, 5000);
    const retry = await api(a.url, 'POST', '/api/publish', { channel: 'chat:api', data: { n: 1 }, idempotencyKey: 'k1' });
    assert.equal(retry.status, 200);
    assert.equal(retry.body.offset, 1, 'the position the first attempt got');
    await b.chorus.publish('chat:api', { n: 2 }); // a marker: everything before it has arrived
    await until('marker', () => offsets(reader, 'chat:api').length === 2, 5000);
    assert.deepEqual(offsets(reader, 'chat:api'), [1, 2], 'exactly one copy');
  });

  test("the server's publish() rejects with a ChorusError coded OUTCOME_UNKNOWN (not UNAVAILABLE)", async () => {
    const { nodes, a } = await cluster();
    nodes.a.loseReplies(1);
    await assert.rejects(a.chorus.publish('chat:server', { n: 1 }, { idempotencyKey: 'x' }), (err: unknown) => {
      assert.ok(err instanceof ChorusError);
      assert.equal(err.code, ErrorCode.OUTCOME_UNKNOWN);
      return true;
    });
    const retry = await a.chorus.publish('chat:server', { n: 1 }, { idempotencyKey: 'x' });
    assert.equal(retry.offset, 1, 'the position the first attempt got');
  });

  test('an engine failing with an uncoded error is reported as OUTCOME_UNKNOWN, not as "not applied"', async () => {
    class Flaky extends MemoryEngine {
      override async publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
        await super.publish(channel, data, options);
        throw new Error('socket hang up');
      }
    }
    const engine = new Flaky();
    const server = await startServer({ namespaces: NAMESPACES, engine });
    try {
      const res = await api(server.url, 'POST', '/api/publish', { channel: 'chat:flaky', data: 1 });
      assert.deepEqual([res.status, res.body.error.code], [504, ErrorCode.OUTCOME_UNKNOWN]);
    } finally {
      await server.close();
      await engine.close();
    }
  });

  test('a client publish frame gets error OUTCOME_UNKNOWN; the same id again is acked with the first position', async () => {
    const { nodes, a } = await cluster();
    const writer = await connect(a, 'writer');
    await writer.ok('subscribe', { channel: 'chat:frame' });
    nodes.a.loseReplies(1);
    const reply = await writer.request('publish', { channel: 'chat:frame', data: 'hi' }, 'p1');
    assert.equal(reply.event, 'error');
    assert.equal((reply.data as any).code, ErrorCode.OUTCOME_UNKNOWN);
    const again = await writer.request('publish', { channel: 'chat:frame', data: 'hi' }, 'p1');
    assert.equal(again.event, 'ack');
    assert.equal((again.data as any).offset, 1);
    await a.chorus.publish('chat:frame', 'marker');
    await until('marker', () => offsets(writer, 'chat:frame').length === 2, 5000);
    assert.deepEqual(offsets(writer, 'chat:frame'), [1, 2]);
  });

  test('the client library retries a publish answered OUTCOME_UNKNOWN with the same id: it resolves once, one copy delivered', async () => {
    const { nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:lib' });
    const client = new ChorusClient({ url: a.wsUrl, WebSocket: WebSocket as any, token: await signToken('writer') });
    try {
      client.connect();
      await nextEvent(client, 'connected');
      nodes.a.loseReplies(2); // the first attempt and the first retry lose their replies
      const result = await client.publish('chat:lib', { n: 1 });
      assert.equal(result.offset, 1);
      await b.chorus.publish('chat:lib', 'marker');
      await until('marker', () => offsets(reader, 'chat:lib').length === 2, 5000);
      assert.deepEqual(offsets(reader, 'chat:lib'), [1, 2], 'exactly one copy');
    } finally {
      client.close();
    }
  });

  test('the client library does not retry an ephemeral publish answered OUTCOME_UNKNOWN (no idempotency)', async () => {
    const { nodes, a } = await cluster();
    const client = new ChorusClient({ url: a.wsUrl, WebSocket: WebSocket as any, token: await signToken('writer') });
    try {
      client.connect();
      await nextEvent(client, 'connected');
      nodes.a.loseReplies(1);
      await assert.rejects(client.publish('chat:eph', 'typing', { ephemeral: true }), (err: any) => err.code === ErrorCode.OUTCOME_UNKNOWN);
    } finally {
      client.close();
    }
  });
});

describe('no resync while history or pub/sub still covers the gap', () => {
  test('a held-back pub/sub backlog longer than history: the gap check declares nothing, the release delivers all in order', async () => {
    const { bus, nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'small:backlog' });
    bus.holdBacklog(nodes.b);
    for (let i = 1; i <= 10; i++) await a.chorus.publish('small:backlog', { i }); // history keeps only 9 and 10
    await nodes.b.checkGaps(); // the stream is far ahead of what B has read: not a gap yet
    assert.equal(bus.releaseBacklog(nodes.b), 10);
    await nodes.b.checkGaps();
    await nodes.b.checkGaps();
    await until('all delivered', () => offsets(reader, 'small:backlog').length === 10, 5000);
    assert.deepEqual(offsets(reader, 'small:backlog'), range(10));
    assert.equal(reader.closeCode, undefined, 'not told to resync');
  });

  test('a backlog held for a whole gap-check round is backfilled from history; the late backlog is dropped as duplicates', async () => {
    const { bus, nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:stalled' });
    bus.holdBacklog(nodes.b);
    for (let i = 1; i <= 5; i++) await a.chorus.publish('chat:stalled', { i });
    await nodes.b.checkGaps();
    await nodes.b.checkGaps();
    await until('backfilled from history', () => offsets(reader, 'chat:stalled').length === 5, 5000);
    bus.releaseBacklog(nodes.b);
    await a.chorus.publish('chat:stalled', { i: 6 });
    await until('live again', () => offsets(reader, 'chat:stalled').length === 6, 5000);
    assert.deepEqual(offsets(reader, 'chat:stalled'), range(6));
    assert.equal(reader.closeCode, undefined);
  });

  test('a failed history read during a backfill keeps the position: the next publication retries it, no 4005', async () => {
    const { bus, nodes, a, b } = await cluster();
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:slow' });
    bus.drop({ to: 'b', channel: 'chat:slow', count: 1 });
    nodes.b.failHistoryReads(1);
    await a.chorus.publish('chat:slow', { i: 1 }); // dropped
    await a.chorus.publish('chat:slow', { i: 2 }); // shows the gap; the backfill read fails
    await until('the backfill read failed', () => nodes.b.pendingReadFailures === 0, 5000);
    assert.deepEqual(offsets(reader, 'chat:slow'), [], 'nothing out of order');
    await a.chorus.publish('chat:slow', { i: 3 }); // retries the backfill
    await until('all delivered', () => offsets(reader, 'chat:slow').length === 3, 5000);
    assert.deepEqual(offsets(reader, 'chat:slow'), range(3));
    assert.equal(reader.closeCode, undefined);
  });

  test('more held publications than maxHeldPublications while history stays unreadable: 4005', async () => {
    const { bus, nodes, a, b } = await cluster({ node: { maxHeldPublications: 2 } });
    const reader = await connect(b, 'reader');
    await reader.ok('subscribe', { channel: 'chat:overflow' });
    bus.drop({ to: 'b', channel: 'chat:overflow', count: 1 });
    nodes.b.failHistoryReads(100);
    for (let i = 1; i <= 3; i++) await a.chorus.publish('chat:overflow', { i }); // 1 dropped; 2 (gap), 3 held
    await until('the backfill read failed', () => nodes.b.pendingReadFailures < 100, 5000);
    await new Promise((resolve) => setImmediate(resolve)); // let queued deliveries run
    assert.equal(reader.closeCode, undefined, 'two held: at the limit');
    await a.chorus.publish('chat:overflow', { i: 4 }); // a third held: over the limit
    const { code } = await reader.closed;
    assert.equal(code, CloseCode.INSUFFICIENT_STATE);
  });
});
