/**
 * Namespace `backpressure` policies: `latest-per-key` and `drop-oldest` at the queue's edge
 * (a fake transport), the `skipped` notices that keep positions exact, the client's tracker
 * treating skipped offsets as not-a-gap, and a real non-reading client that stays connected.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient } from '../src/client/index.js';
import { PositionTracker } from '../src/client/position.js';
import type { Publication } from '../src/engines/types.js';
import { CongestionWatch } from '../src/server/backpressure.js';
import { encodeMessage } from '../src/server/hub.js';
import { FakeTransport, fakeConnection } from './fake-transport.js';
import { API_KEY, TestSocket, api, signToken, startServer, until } from './helpers.js';


const EPOCH = 'e1';
/** Publications of channel `dash:x` with offsets 1..9: the same frame length for each. */
function publication(offset: number, key?: string): Publication {
  return { channel: 'dash:x', data: 'd', time: 1, offset, epoch: EPOCH, ...(key !== undefined ? { key } : {}) };
}

function setup(maxQueuedBytes: number) {
  return fakeConnection({ maxQueuedBytes, maxMessageBytes: 1 << 20 }, { congestion: new CongestionWatch(5) });
}

/** What the client sees, as `m<offset>` for messages and `s<from>-<to>` for skipped notices. */
function seen(transport: FakeTransport): string[] {
  return transport.frames().map((f) => (f.event === 'message' ? `m${f.data.offset}` : `s${f.data.from}-${f.data.to}`));
}

describe('backpressure policies at the edge of the send queue (fake transport)', () => {
  // Four keyed frames fill exactly half the queue: the policies' own budget.
  const frameBytes = encodeMessage(publication(1, 'a')).length;
  const max = 2 * 4 * frameBytes;

  test('latest-per-key: a queue exactly at its budget is kept; one more publication compacts it to the newest per key', () => {
    const { connection, transport, reports } = setup(max);
    const keys = ['a', 'b', 'a', 'b'];
    keys.forEach((key, i) => connection.sendPublication(encodeMessage(publication(i + 1, key)), publication(i + 1, key), 'latest-per-key'));
    assert.equal(connection.pendingBytes, max / 2, 'four frames fill the budget exactly and nothing is skipped');
    assert.deepEqual(reports, []);
    connection.sendPublication(encodeMessage(publication(5, 'a')), publication(5, 'a'), 'latest-per-key');
    assert.deepEqual(reports, ['limit:backpressure_skipped']);
    assert.equal(connection.closing, false);
    connection.flush();
    // 1a, 2b, 3a are older than 4b and 5a: one run of skipped offsets, where 1 was.
    assert.deepEqual(seen(transport), ['s1-3', 'm4', 'm5']);
    const notice = transport.frames()[0]!;
    assert.deepEqual(notice, { event: 'skipped', data: { channel: 'dash:x', epoch: EPOCH, from: 1, to: 3 } });
    connection.disposed();
  });

  test('latest-per-key: a kept publication between skipped ones splits the notice so offsets stay in order', () => {
    const { connection, transport } = setup(max);
    const keys = ['a', 'b', 'a', 'c'];
    keys.forEach((key, i) => connection.sendPublication(encodeMessage(publication(i + 1, key)), publication(i + 1, key), 'latest-per-key'));
    connection.sendPublication(encodeMessage(publication(5, 'a')), publication(5, 'a'), 'latest-per-key');
    connection.flush();
    assert.deepEqual(seen(transport), ['s1-1', 'm2', 's3-3', 'm4', 'm5']);
    connection.disposed();
  });

  test('latest-per-key: publications without a key are never skipped; when they fill the budget the client is a slow consumer', () => {
    const { connection, transport, reports } = setup(max);
    for (let i = 1; i <= 4; i++) connection.sendPublication(encodeMessage(publication(i)), publication(i), 'latest-per-key');
    assert.equal(connection.closing, false);
    connection.sendPublication(encodeMessage(publication(5)), publication(5), 'latest-per-key');
    assert.deepEqual(reports, ['slowConsumer']);
    assert.equal(transport.closedWith?.code, 4003);
    connection.disposed();
  });

  test('drop-oldest: one publication past the budget drops the oldest queued one and says so', () => {
    const { connection, transport } = setup(max);
    for (let i = 1; i <= 4; i++) connection.sendPublication(encodeMessage(publication(i)), publication(i), 'drop-oldest');
    connection.sendPublication(encodeMessage(publication(5)), publication(5), 'drop-oldest');
    connection.sendPublication(encodeMessage(publication(6)), publication(6), 'drop-oldest');
    assert.equal(connection.closing, false);
    connection.flush();
    assert.deepEqual(seen(transport), ['s1-2', 'm3', 'm4', 'm5', 'm6']);
    connection.disposed();
  });

  test('drop-oldest: when nothing of ours is queued, a publication that does not fit is itself skipped', () => {
    const { connection, transport } = setup(max);
    // Other frames (replies) fill our queue: they are never dropped, so the publication goes.
    connection.sendEncoded(Buffer.from('r'.repeat(max / 2)), 'reply');
    connection.sendPublication(encodeMessage(publication(7)), publication(7), 'drop-oldest');
    assert.equal(connection.closing, false);
    connection.flush();
    const [reply, notice] = transport.sent[0]!.toString('utf8').split('\n');
    assert.equal(reply, 'r'.repeat(max / 2));
    assert.deepEqual(JSON.parse(notice!), { event: 'skipped', data: { channel: 'dash:x', epoch: EPOCH, from: 7, to: 7 } });
    connection.disposed();
  });

  test('the disconnect policy is unchanged: past maxQueuedBytes is 4003', () => {
    const { connection, transport } = setup(frameBytes);
    connection.sendPublication(encodeMessage(publication(1)), publication(1), 'disconnect');
    assert.equal(connection.closing, false);
    connection.sendPublication(encodeMessage(publication(2)), publication(2), 'disconnect');
    assert.equal(transport.closedWith?.code, 4003);
    connection.disposed();
  });

  test('writes are held while the transport holds half the budget, and retried once it drains', async () => {
    const { connection, transport, scheduled } = setup(max);
    connection.sendPublication(encodeMessage(publication(1, 'a')), publication(1, 'a'), 'latest-per-key');
    transport.bufferedAmount = max / 2;
    connection.flush();
    assert.equal(transport.sent.length, 0, 'held: the frame can still be skipped');
    assert.equal(connection.pendingBytes, max / 2 + frameBytes);
    const before = scheduled.length;
    await until('a retry', () => scheduled.length > before, 2000, 2);
    transport.bufferedAmount = max / 2 - 1;
    connection.flush();
    assert.deepEqual(seen(transport), ['m1']);
    connection.disposed();
  });
});

describe('the client position tracker and skipped offsets', () => {
  test('a notice that starts at the next offset moves the position; a message after it is next, not a gap', () => {
    const tracker = new PositionTracker({ offset: 3, epoch: EPOCH });
    assert.deepEqual(tracker.skip({ from: 4, to: 9, epoch: EPOCH }), { deliver: [], recoveryFailed: false });
    assert.deepEqual(tracker.position, { offset: 9, epoch: EPOCH });
    const step = tracker.receive({ channel: 'dash:x', data: 1, time: 1, offset: 10, epoch: EPOCH });
    assert.equal(step.deliver.length, 1);
    assert.equal(step.fetchSince, undefined);
  });

  test('an old notice is ignored; one ahead of the position is a gap up to its start; another epoch is ignored', () => {
    const tracker = new PositionTracker({ offset: 10, epoch: EPOCH });
    tracker.skip({ from: 4, to: 9, epoch: EPOCH });
    assert.deepEqual(tracker.position, { offset: 10, epoch: EPOCH });
    tracker.skip({ from: 20, to: 30, epoch: 'other' });
    assert.deepEqual(tracker.position, { offset: 10, epoch: EPOCH });
    const step = tracker.skip({ from: 13, to: 15, epoch: EPOCH });
    assert.deepEqual(step.fetchSince, { offset: 10, epoch: EPOCH });
    assert.equal(tracker.recovering, true);
  });
});

/** Check what a client read: every offset after `start` is a message or inside a notice, in order. */
function checkSequence(frames: Array<{ event: string; data: any }>, channel: string, start: number): { last: number; skipped: number; messages: any[] } {
  let position = start;
  let skipped = 0;
  const messages: any[] = [];
  for (const f of frames) {
    if (f.data?.channel !== channel) continue;
    if (f.event === 'message') {
      assert.equal(f.data.offset, position + 1, `message ${f.data.offset} follows ${position}`);
      position = f.data.offset;
      messages.push(f.data);
    } else if (f.event === 'skipped') {
      assert.equal(f.data.from, position + 1, `notice ${f.data.from}-${f.data.to} follows ${position}`);
      assert.ok(f.data.to >= f.data.from);
      skipped += f.data.to - f.data.from + 1;
      position = f.data.to;
    }
  }
  return { last: position, skipped, messages };
}

describe('a real client that stops reading', () => {
  for (const policy of ['latest-per-key', 'drop-oldest'] as const) {
    test(`${policy}: it stays connected, is told what it skipped, and reads an exact sequence when it resumes`, async () => {
      const maxQueuedBytes = 256 * 1024;
      const s = await startServer({
        limits: { maxQueuedBytes },
        personalChannel: false,
        apiKey: API_KEY,
        namespaces: [{ pattern: 'dash:*', historySize: 10, backpressure: policy }],
      });
      try {
        const ws = new WebSocket(`${s.wsUrl}?token=${await signToken('slow')}`);
        const slow = new TestSocket(ws);
        await slow.next((f) => f.event === 'connected');
        const ack = await slow.ok('subscribe', { channel: 'dash:load' });
        (ws as any)._socket.pause();
        const serverConn = [...s.chorus.connections].find((c) => c.user === 'slow')!;
        const payload = 'y'.repeat(8 * 1024);
        const skippedLogged = () => s.logs.some((l) => l.msg === 'limit hit' && l.limit === 'backpressure_skipped');
        let sent = 0;
        // Bounded: at most 4000 publications of 8 KB (32 MB) to fill the kernel buffers first.
        for (; sent < 4000 && !skippedLogged(); sent++) {
          await s.chorus.publish('dash:load', { i: sent, payload }, { key: `k${sent % 4}` });
          if (sent % 8 === 0) await new Promise((r) => setImmediate(r));
        }
        assert.ok(skippedLogged(), 'the policy skipped publications');
        for (let i = 0; i < 200; i++, sent++) await s.chorus.publish('dash:load', { i: sent, payload }, { key: `k${sent % 4}` });
        assert.equal(serverConn.closing, false, 'still connected');
        assert.ok(serverConn.pendingBytes <= maxQueuedBytes + 16 * 1024, `pending ${serverConn.pendingBytes} stays bounded`);
        // A publication through the HTTP API carries its key too.
        const last = await api(s.url, 'POST', '/api/publish', { channel: 'dash:load', data: { i: 'last' }, key: 'k0' });
        assert.equal(last.status, 200);
        (ws as any)._socket.resume();
        await slow.find((f) => f.event === 'message' && (f.data as any)?.data?.i === 'last', 20000);
        const result = checkSequence(slow.frames as Array<{ event: string; data: any }>, 'dash:load', ack.offset);
        assert.equal(result.last, last.body.offset, 'every offset accounted for');
        assert.ok(result.skipped > 0);
        assert.equal(result.messages.at(-1).key, 'k0');
        if (policy === 'latest-per-key') {
          // The newest publication of each key reached the client.
          for (let k = 1; k < 4; k++) {
            const newest = [...Array(sent).keys()].filter((i) => i % 4 === k).at(-1);
            assert.ok(result.messages.some((m) => m.data.i === newest), `newest of k${k} delivered`);
          }
        }
        assert.equal(slow.closeCode, undefined);
        slow.close();
      } finally {
        await s.close();
      }
    });
  }
});

describe('the client library and skipped offsets', () => {
  test('a slow ChorusClient on latest-per-key gets skipped events, no gap, no recovery failure, and ends at the last offset', async () => {
    const s = await startServer({ limits: { maxQueuedBytes: 256 * 1024 }, personalChannel: false, namespaces: [{ pattern: 'dash:*', historySize: 10, backpressure: 'latest-per-key' }] });
    const sockets: WebSocket[] = [];
    /** Events the client sent (to see that it never asks for history). */
    const sent: string[] = [];
    class RecordingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets.push(this);
      }
      override send(data: any, ...rest: any[]): void {
        for (const line of String(data).split('\n')) if (line) sent.push(JSON.parse(line).event);
        (super.send as (...a: unknown[]) => void)(data, ...rest);
      }
    }
    const client = new ChorusClient({ url: s.wsUrl, token: await signToken('slow'), WebSocket: RecordingWebSocket as any });
    try {
      client.connect();
      const sub = client.subscribe('dash:load');
      await new Promise<void>((resolve) => sub.once('subscribed', () => resolve()));
      const events = { skipped: 0, recoveryFailed: 0, messages: [] as number[] };
      sub.on('skipped', (d) => (events.skipped += d.to - d.from + 1));
      sub.on('recovery-failed', () => events.recoveryFailed++);
      sub.on('message', (m) => events.messages.push(m.offset!));
      const socket = (sockets[0] as any)._socket;
      socket.pause();
      const payload = 'y'.repeat(8 * 1024);
      const skippedLogged = () => s.logs.some((l) => l.msg === 'limit hit' && l.limit === 'backpressure_skipped');
      let last = 0;
      for (let i = 0; i < 4000 && !skippedLogged(); i++) {
        last = (await s.chorus.publish('dash:load', { i, payload }, { key: `k${i % 4}` })).offset!;
        if (i % 8 === 0) await new Promise((r) => setImmediate(r));
      }
      assert.ok(skippedLogged());
      for (let i = 0; i < 50; i++) last = (await s.chorus.publish('dash:load', { i, payload }, { key: `k${i % 4}` })).offset!;
      socket.resume();
      await until('the last publication', () => events.messages.at(-1) === last, 20000);
      assert.ok(events.skipped > 0, 'skipped events');
      assert.equal(events.recoveryFailed, 0);
      assert.deepEqual(sent.filter((e) => e === 'history'), [], 'no history fetch for skipped offsets');
      assert.equal(sub.position?.offset, last);
      // The channel was new (position 0): every offset 1..last is a message or skipped, once.
      assert.equal(events.messages.length + events.skipped, last);
      assert.deepEqual(events.messages, [...events.messages].sort((a, b) => a - b));
      assert.equal(client.state, 'connected');
    } finally {
      client.close();
      await s.close();
    }
  });
});
