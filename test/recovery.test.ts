/**
 * Recovery edges over the raw protocol (docs/PROTOCOL.md 5.1, 5.3, 5.4), the `history` paging
 * rules and the idempotency (dedupe) window, against a real server. Clocks are injected into
 * the memory engine where time matters (stream TTL, dedupe window): no sleeps.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryEngine, STREAM_META_TTL_MS } from '../src/engines/memory/index.js';
import type { HistoryReadOptions, HistoryReadResult } from '../src/engines/types.js';
import type { Frame } from '../src/protocol/index.js';
import type { NamespaceOptions } from '../src/server/index.js';
import { api, signToken, TestSocket, type TestServer, withServer } from './helpers.js';

const USER_NS: NamespaceOptions = { pattern: 'user:*', personal: true, publish: 'none' };

/** A controllable clock for the memory engine. */
function fakeClock(start = Date.now()) {
  const clock = { t: start, now: () => clock.t, advance: (ms: number) => void (clock.t += ms) };
  return clock;
}

/** A memory engine that can run code around each history read (to publish "during" a recovery). */
class HookedEngine extends MemoryEngine {
  beforeRead: (() => Promise<void>) | undefined;
  afterRead: (() => Promise<void>) | undefined;
  override async read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult> {
    const before = this.beforeRead;
    this.beforeRead = undefined;
    if (before) await before();
    const result = await super.read(channel, options);
    const after = this.afterRead;
    this.afterRead = undefined;
    if (after) await after();
    return result;
  }
}

async function publishN(s: TestServer, channel: string, n: number, from = 1): Promise<{ offset: number; epoch: string }> {
  let last: { offset?: number; epoch?: string } = {};
  for (let i = from; i < from + n; i++) last = await s.chorus.publish(channel, { n: i });
  return { offset: last.offset!, epoch: last.epoch! };
}

/** Frames of one channel's subscribe exchange: messages before the ack, the ack, frames after. */
function split(socket: TestSocket, ackId: string, channel: string) {
  const index = socket.frames.findIndex((f) => f.id === ackId);
  assert.ok(index >= 0, 'ack received');
  const isMsg = (f: Frame) => f.event === 'message' && (f.data as any).channel === channel;
  return {
    before: socket.frames.slice(0, index).filter(isMsg).map((f) => f.data as any),
    ack: socket.frames[index]!,
    after: socket.frames.slice(index + 1).filter(isMsg).map((f) => f.data as any),
  };
}

const offsets = (list: any[]) => list.map((m) => m.offset);
const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

describe('recovery edges (subscribe with since)', () => {
  const namespaces: NamespaceOptions[] = [
    USER_NS,
    { pattern: 'chat:*', historySize: 100, recoveryMaxMissed: 1000 },
    { pattern: 'small:*', historySize: 5, recoveryMaxMissed: 1000 },
    { pattern: 'cap:*', historySize: 100, recoveryMaxMissed: 3 },
    { pattern: 'nohist:*' },
  ];

  /**
   * Each row: a channel with `published` publications, a `since` built from the stream's top
   * (offset and epoch), and what the ack and the frames before it must be.
   */
  const table: Array<{
    name: string;
    channel: string;
    published: number;
    since: (top: { offset: number; epoch: string }) => { offset: number; epoch: string };
    recovered: boolean;
    delivered: number[];
  }> = [
    { name: 'since == top', channel: 'chat:same', published: 7, since: (t) => t, recovered: true, delivered: [] },
    { name: 'since behind, within history', channel: 'chat:behind', published: 10, since: (t) => ({ ...t, offset: 6 }), recovered: true, delivered: [7, 8, 9, 10] },
    { name: 'since 0 on a stream with everything retained', channel: 'chat:zero', published: 4, since: (t) => ({ ...t, offset: 0 }), recovered: true, delivered: [1, 2, 3, 4] },
    { name: 'oldest retained is exactly the next one (edge)', channel: 'small:edge', published: 12, since: (t) => ({ ...t, offset: 7 }), recovered: true, delivered: [8, 9, 10, 11, 12] },
    { name: 'position already gone (history size exceeded by one)', channel: 'small:gone1', published: 12, since: (t) => ({ ...t, offset: 6 }), recovered: false, delivered: [] },
    { name: 'position long gone', channel: 'small:gone', published: 12, since: (t) => ({ ...t, offset: 1 }), recovered: false, delivered: [] },
    { name: 'position from the future (top + 1)', channel: 'chat:future', published: 3, since: (t) => ({ ...t, offset: t.offset + 1 }), recovered: false, delivered: [] },
    { name: 'position from the future (far)', channel: 'chat:future2', published: 3, since: (t) => ({ ...t, offset: 1000 }), recovered: false, delivered: [] },
    { name: 'wrong epoch', channel: 'chat:epoch', published: 5, since: (t) => ({ offset: 3, epoch: `${t.epoch}x` }), recovered: false, delivered: [] },
    { name: 'wrong epoch, same offset as top', channel: 'chat:epoch2', published: 5, since: (t) => ({ offset: t.offset, epoch: 'nope' }), recovered: false, delivered: [] },
    { name: 'missed == recoveryMaxMissed (edge)', channel: 'cap:at', published: 10, since: (t) => ({ ...t, offset: 7 }), recovered: true, delivered: [8, 9, 10] },
    { name: 'missed == recoveryMaxMissed + 1', channel: 'cap:over', published: 10, since: (t) => ({ ...t, offset: 6 }), recovered: false, delivered: [] },
    { name: 'channel without history, since == top', channel: 'nohist:same', published: 3, since: (t) => t, recovered: true, delivered: [] },
    { name: 'channel without history, since behind', channel: 'nohist:behind', published: 3, since: (t) => ({ ...t, offset: 2 }), recovered: false, delivered: [] },
  ];

  test('table', async () => {
    await withServer({ namespaces }, async (s) => {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      for (const row of table) {
        const top = await publishN(s, row.channel, row.published);
        assert.equal(top.offset, row.published, row.name);
        const id = `sub-${row.channel}`;
        const ack = await a.request('subscribe', { channel: row.channel, since: row.since(top) }, id);
        assert.equal(ack.event, 'ack', `${row.name}: ${JSON.stringify(ack.data)}`);
        const data = ack.data as any;
        assert.equal(data.recovered, row.recovered, `${row.name}: recovered`);
        assert.equal(data.offset, top.offset, `${row.name}: ack offset is the top`);
        assert.equal(data.epoch, top.epoch, `${row.name}: ack epoch is the stream's`);
        const { before } = split(a, id, row.channel);
        assert.deepEqual(offsets(before), row.delivered, `${row.name}: messages before the ack`);
        for (const m of before) {
          assert.deepEqual(m.data, { n: m.offset }, `${row.name}: payload`);
          assert.equal(m.epoch, top.epoch);
        }
        // Live publications continue right after the ack's offset, once each.
        await s.chorus.publish(row.channel, { n: row.published + 1 });
        const live = await a.next((f) => f.event === 'message' && (f.data as any).channel === row.channel);
        assert.equal((live.data as any).offset, top.offset + 1, `${row.name}: next live offset`);
        assert.deepEqual(offsets(a.messages(row.channel)), [...row.delivered, top.offset + 1], `${row.name}: no duplicate`);
      }
      a.close();
    });
  });

  test('publications during recovery: recovered ones, then the ack, then live ones, no duplicate', async () => {
    const engine = new HookedEngine();
    await withServer({ namespaces, engine }, async (s) => {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const top = await publishN(s, 'chat:race', 10);
      // 11 lands after the server looked at the top but before it read history (so the read
      // includes it and the held-back live copy is a duplicate); 12 and 13 land after the read.
      engine.beforeRead = async () => void (await s.chorus.publish('chat:race', { n: 11 }));
      engine.afterRead = async () => {
        await s.chorus.publish('chat:race', { n: 12 });
        await s.chorus.publish('chat:race', { n: 13 });
      };
      const ack = await a.request('subscribe', { channel: 'chat:race', since: { offset: 6, epoch: top.epoch } }, 'race');
      assert.equal((ack.data as any).recovered, true);
      assert.equal((ack.data as any).offset, 11);
      await a.find((f) => f.event === 'message' && (f.data as any).offset === 13);
      const { before, after } = split(a, 'race', 'chat:race');
      assert.deepEqual(offsets(before), [7, 8, 9, 10, 11]);
      assert.deepEqual(offsets(after), [12, 13]);
      assert.deepEqual(a.messages('chat:race').map((m) => m.data.n), [7, 8, 9, 10, 11, 12, 13]);
      a.close();
    });
  });

  test('expired history (injected clock): the position and epoch stay; missed publications that expired are recovered:false; nothing missed recovers', async () => {
    const clock = fakeClock();
    const engine = new MemoryEngine({ now: clock.now });
    await withServer({ namespaces: [USER_NS, { pattern: 'ttl:*', historySize: 10, historyTtlMs: 1000 }], engine }, async (s) => {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const top = await publishN(s, 'ttl:a', 3);
      const topB = await publishN(s, 'ttl:b', 3);

      clock.advance(999); // 1 ms before the history expires
      const alive = await a.ok('subscribe', { channel: 'ttl:a', since: { offset: 1, epoch: top.epoch } });
      assert.equal(alive.recovered, true);
      assert.deepEqual(offsets(a.messages('ttl:a')), [2, 3]);

      clock.advance(1); // ttl:b's history was last written 1000 ms ago: expired
      const id = 'expired';
      const ack = await a.request('subscribe', { channel: 'ttl:b', since: { offset: 2, epoch: topB.epoch } }, id);
      const data = ack.data as any;
      assert.equal(data.recovered, false, 'publication 3 expired: it cannot be delivered');
      assert.equal(data.epoch, topB.epoch, 'a quiet channel keeps its epoch');
      assert.equal(data.offset, 3);
      assert.deepEqual(split(a, id, 'ttl:b').before, [], 'nothing partial');
      await a.ok('unsubscribe', { channel: 'ttl:b' });
      const upToDate = await a.ok('subscribe', { channel: 'ttl:b', since: { offset: 3, epoch: topB.epoch } });
      assert.equal(upToDate.recovered, true, 'nothing was missed: recovered, although the history expired');
      const next = await s.chorus.publish('ttl:b', { n: 4 });
      assert.deepEqual(next, { offset: 4, epoch: topB.epoch });
      a.close();
    });
  });

  test('expired stream (position TTL, injected clock): recovered false with a new epoch', async () => {
    const clock = fakeClock();
    const engine = new MemoryEngine({ now: clock.now });
    await withServer({ namespaces: [USER_NS, { pattern: 'ttl:*', historySize: 10, historyTtlMs: 1000 }], engine }, async (s) => {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const top = await publishN(s, 'ttl:c', 3);
      clock.advance(STREAM_META_TTL_MS); // a day without publications or reads
      const id = 'gone';
      const ack = await a.request('subscribe', { channel: 'ttl:c', since: { offset: 3, epoch: top.epoch } }, id);
      const data = ack.data as any;
      assert.equal(data.recovered, false);
      assert.notEqual(data.epoch, top.epoch, 'a new epoch: the stream was forgotten');
      assert.equal(data.offset, 0);
      assert.deepEqual(split(a, id, 'ttl:c').before, [], 'nothing partial');
      const next = await s.chorus.publish('ttl:c', { n: 1 });
      assert.deepEqual(next, { offset: 1, epoch: data.epoch });
      a.close();
    });
  });

  test('snapshot: the latest publication first; nothing on an empty channel; not on top of a successful recovery', async () => {
    await withServer({ namespaces }, async (s) => {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const top = await publishN(s, 'chat:dash', 3);

      const ack = await a.request('subscribe', { channel: 'chat:dash', snapshot: true }, 'snap');
      assert.equal((ack.data as any).offset, 3);
      assert.equal((ack.data as any).recovered, undefined, 'recovered is absent without since');
      const { before } = split(a, 'snap', 'chat:dash');
      assert.deepEqual(before.map((m) => [m.offset, m.data.n]), [[3, 3]]);

      const empty = await a.request('subscribe', { channel: 'chat:empty', snapshot: true }, 'snap-empty');
      assert.equal((empty.data as any).offset, 0);
      assert.deepEqual(split(a, 'snap-empty', 'chat:empty').before, []);

      const b = await TestSocket.connect(s.wsUrl, await signToken('bob'));
      await b.request('subscribe', { channel: 'chat:dash', snapshot: true, since: { offset: 1, epoch: top.epoch } }, 'snap-rec');
      assert.deepEqual(offsets(split(b, 'snap-rec', 'chat:dash').before), [2, 3], 'recovery, no extra snapshot');

      const c = await TestSocket.connect(s.wsUrl, await signToken('cy'));
      const failed = await c.request('subscribe', { channel: 'chat:dash', snapshot: true, since: { offset: 1, epoch: 'old' } }, 'snap-fail');
      assert.equal((failed.data as any).recovered, false);
      assert.deepEqual(offsets(split(c, 'snap-fail', 'chat:dash').before), [3], 'failed recovery falls back to the snapshot');
      for (const x of [a, b, c]) x.close();
    });
  });
});

describe('history paging', () => {
  test('since + limit pages forward, reverse gives newest first, wrong epoch is UNRECOVERABLE_POSITION', async () => {
    await withServer({ namespaces: [USER_NS, { pattern: 'chat:*', historySize: 20 }, { pattern: 'nohist:*' }], limits: { maxHistoryLimit: 8 } }, async (s) => {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const top = await publishN(s, 'chat:h', 25); // 6..25 retained
      const page = async (data: Record<string, unknown>) => a.ok('history', { channel: 'chat:h', ...data });

      const all: number[] = [];
      let since = 0;
      for (let i = 0; i < 10; i++) {
        const p = await page({ since: { offset: since, epoch: top.epoch }, limit: 7 });
        assert.equal(p.offset, 25);
        assert.equal(p.epoch, top.epoch);
        if (p.publications.length === 0) break;
        assert.ok(p.publications.length <= 7);
        for (const m of p.publications) assert.deepEqual(m.data, { n: m.offset });
        all.push(...offsets(p.publications));
        since = p.publications.at(-1).offset;
      }
      assert.deepEqual(all, range(6, 25), 'pages cover the retained history once, in order');

      assert.deepEqual(offsets((await page({})).publications), range(6, 13), 'no limit: the server maximum (8)');
      assert.deepEqual(offsets((await page({ limit: 1000 })).publications), range(6, 13), 'limit capped');
      assert.deepEqual(offsets((await page({ limit: 0 })).publications), []);
      assert.deepEqual(offsets((await page({ reverse: true, limit: 5 })).publications), [25, 24, 23, 22, 21]);
      assert.deepEqual(offsets((await page({ reverse: true, limit: 3, since: { offset: 20, epoch: top.epoch } })).publications), [25, 24, 23]);
      assert.deepEqual(offsets((await page({ since: { offset: 25, epoch: top.epoch } })).publications), [], 'at the top: empty');
      assert.deepEqual(offsets((await page({ since: { offset: 2, epoch: top.epoch }, limit: 3 })).publications), [6, 7, 8], 'older than retained: from the oldest');

      const wrong = await a.request('history', { channel: 'chat:h', since: { offset: 3, epoch: `${top.epoch}x` } });
      assert.equal(wrong.event, 'error');
      assert.equal((wrong.data as any).code, 'UNRECOVERABLE_POSITION');
      const nohist = await a.request('history', { channel: 'nohist:x' });
      assert.equal((nohist.data as any).code, 'NOT_AVAILABLE');

      // The HTTP API pages the same way.
      const viaApi = await api(s.url, 'GET', `/api/history/chat:h?since=20&epoch=${top.epoch}&limit=3`);
      assert.equal(viaApi.status, 200);
      assert.deepEqual(offsets(viaApi.body.publications), [21, 22, 23]);
      const reverseApi = await api(s.url, 'GET', '/api/history/chat:h?reverse=1&limit=2');
      assert.deepEqual(offsets(reverseApi.body.publications), [25, 24]);
      const wrongApi = await api(s.url, 'GET', `/api/history/chat:h?since=3&epoch=${top.epoch}x`);
      assert.equal(wrongApi.status, 400);
      assert.equal(wrongApi.body.error.code, 'UNRECOVERABLE_POSITION');
      a.close();
    });
  });
});

describe('idempotent publish (dedupe window)', () => {
  const namespaces: NamespaceOptions[] = [USER_NS, { pattern: 'chat:*', historySize: 100 }];

  test('same id: once per user and channel; other users and channels are separate publications', async () => {
    await withServer({ namespaces }, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:d' });
      await watcher.ok('subscribe', { channel: 'chat:e' });
      const ada = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const adaTab2 = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const bob = await TestSocket.connect(s.wsUrl, await signToken('bob'));
      const pub = async (socket: TestSocket, channel: string, text: string, id = 'p-1') => {
        const reply = await socket.request('publish', { channel, data: { text } }, id);
        assert.equal(reply.event, 'ack', JSON.stringify(reply.data));
        return reply.data as { offset: number; epoch: string };
      };

      const first = await pub(ada, 'chat:d', 'one');
      assert.equal(first.offset, 1);
      assert.deepEqual(await pub(ada, 'chat:d', 'one'), first, 'retry on the same connection: same offset');
      assert.deepEqual(await pub(adaTab2, 'chat:d', 'one (other tab)'), first, 'same user on another connection: same offset');
      const bobs = await pub(bob, 'chat:d', 'bob');
      assert.equal(bobs.offset, 2, 'another user with the same id: a new publication');
      const otherChannel = await pub(ada, 'chat:e', 'other channel');
      assert.equal(otherChannel.offset, 1, 'same id on another channel: a new publication');
      const otherId = await pub(ada, 'chat:d', 'two', 'p-2');
      assert.equal(otherId.offset, 3);

      await watcher.find((f) => f.event === 'message' && (f.data as any).offset === 3 && (f.data as any).channel === 'chat:d');
      assert.deepEqual(watcher.messages('chat:d').map((m) => [m.offset, m.data.text, m.publisher.user]), [
        [1, 'one', 'ada'],
        [2, 'bob', 'bob'],
        [3, 'two', 'ada'],
      ]);
      const history = await watcher.ok('history', { channel: 'chat:d' });
      assert.deepEqual(offsets(history.publications), [1, 2, 3]);
      // A duplicate delivers nothing: one more live publication is the very next frame on chat:e.
      await s.chorus.publish('chat:e', { text: 'marker' });
      await watcher.find((f) => f.event === 'message' && (f.data as any).channel === 'chat:e' && (f.data as any).offset === 2);
      assert.deepEqual(offsets(watcher.messages('chat:e')), [1, 2]);
      for (const x of [watcher, ada, adaTab2, bob]) x.close();
    });
  });

  test('the window edge (injected clock): window - 1 ms is a retry, window ms later is new', async () => {
    const clock = fakeClock();
    const engine = new MemoryEngine({ now: clock.now });
    await withServer({ namespaces, engine, idempotencyWindowMs: 1000 }, async (s) => {
      const ada = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const pub = (id: string) => ada.ok('publish', { channel: 'chat:w', data: { id } }).then((r) => r.offset as number);
      const pubWithId = async (id: string) => {
        const reply = await ada.request('publish', { channel: 'chat:w', data: { id } }, id);
        assert.equal(reply.event, 'ack');
        return (reply.data as any).offset as number;
      };
      assert.equal(await pubWithId('k'), 1);
      clock.advance(999);
      assert.equal(await pubWithId('k'), 1, 'inside the window');
      clock.advance(1);
      assert.equal(await pubWithId('k'), 2, 'the window (counted from the first publish) has passed');
      assert.equal(await pubWithId('k'), 2, 'and the new publication starts a new window');
      clock.advance(1000);
      engine.sweep(); // expired entries are dropped by the sweeper; the result is the same
      assert.equal(await pubWithId('k'), 3);
      assert.equal(await pub('unused'), 4);

      // HTTP API idempotencyKey, same rules (keys are scoped to the API, not to a user).
      const apiPub = async (key: string) => {
        const res = await api(s.url, 'POST', '/api/publish', { channel: 'chat:w', data: { key }, idempotencyKey: key });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.offset as number;
      };
      assert.equal(await apiPub('x'), 5);
      assert.equal(await apiPub('x'), 5);
      assert.equal(await apiPub('y'), 6);
      clock.advance(999);
      assert.equal(await apiPub('x'), 5);
      clock.advance(1);
      assert.equal(await apiPub('x'), 7);
      const noKey = await api(s.url, 'POST', '/api/publish', { channel: 'chat:w', data: {} });
      const noKey2 = await api(s.url, 'POST', '/api/publish', { channel: 'chat:w', data: {} });
      assert.deepEqual([noKey.body.offset, noKey2.body.offset], [8, 9], 'no key: never deduped');
      // An API key is not a client frame id: no cross-dedupe with a user's id 'x'.
      const reply = await ada.request('publish', { channel: 'chat:w', data: {} }, 'x');
      assert.equal((reply.data as any).offset, 10);

      const history = await ada.ok('history', { channel: 'chat:w' });
      assert.deepEqual(offsets(history.publications), range(1, 10));
      ada.close();
    });
  });
});
