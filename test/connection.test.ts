/**
 * The connection's send queue and batch flush, driven through a fake in-memory Transport (the
 * seam the server's connection sits on): batching within maxMessageBytes, an oversize frame
 * going alone, reply/live/ephemeral accounting at the queue's edge, and what a close writes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Disconnect } from '../src/protocol/index.js';
import { BatchCache } from '../src/server/batch.js';
import { fakeConnection } from './fake-transport.js';


function setup(limits: { maxQueuedBytes?: number; maxMessageBytes?: number } = {}) {
  return fakeConnection(limits);
}

/** A frame of exactly `n` bytes. */
const frame = (n: number, fill = 'x') => Buffer.from(fill.repeat(n));

describe('connection send queue and flush (fake transport)', () => {
  test('the first queued frame asks the scheduler for a flush, later ones do not', () => {
    const { connection, scheduled } = setup();
    connection.sendEncoded(frame(3));
    connection.sendEncoded(frame(3));
    assert.equal(scheduled.length, 1);
    connection.flush();
    connection.sendEncoded(frame(3));
    assert.equal(scheduled.length, 2, 'after a flush the next frame schedules again');
    connection.disposed();
  });

  test('sendNow: written at once as text when nothing is queued (and counted), queued behind earlier frames otherwise', () => {
    const { transport, connection, scheduled } = fakeConnection();
    const texts: string[] = [];
    const sentBytes: number[] = [];
    (transport as { sendText?: (text: string) => void }).sendText = (text) => texts.push(text);
    (connection as unknown as { host: { flushes: { sent?: (bytes: number) => void } } }).host.flushes.sent = (bytes) => sentBytes.push(bytes);
    connection.sendNow({ event: 'connected', data: { user: 'ada', info: { name: 'Ada Lovelace ✓' } } });
    assert.deepEqual(texts.map((t) => JSON.parse(t).event), ['connected']);
    assert.deepEqual(sentBytes, [Buffer.byteLength(texts[0]!)], 'bytes, not characters');
    assert.equal(scheduled.length, 0, 'no flush needed');
    connection.send({ event: 'ack', id: '1' });
    connection.sendNow({ event: 'connected', data: {} });
    assert.equal(texts.length, 1, 'behind a queued frame: queued too, in order');
    connection.flush();
    assert.deepEqual(transport.frames().map((f) => f.event), ['ack', 'connected']);
  });

  test('frames are joined with newlines into messages of at most maxMessageBytes', () => {
    const { connection, transport } = setup({ maxMessageBytes: 20 });
    // 9 + 1 + 9 = 19 fits, 19 + 1 + 9 does not; 20 exactly would fit.
    for (const fill of ['a', 'b', 'c']) connection.sendEncoded(frame(9, fill));
    const totals = { bytes: 0, frames: 0, messages: 0 };
    connection.flush(new BatchCache(), totals);
    assert.deepEqual(transport.texts(), [`${'a'.repeat(9)}\n${'b'.repeat(9)}`, 'c'.repeat(9)]);
    assert.deepEqual(totals, { bytes: 19 + 9, frames: 3, messages: 2 });
    assert.equal(connection.pendingBytes, 0);
    connection.disposed();
  });

  test('a batch exactly maxMessageBytes long stays one message', () => {
    const { connection, transport } = setup({ maxMessageBytes: 21 });
    connection.sendEncoded(frame(10, 'a'));
    connection.sendEncoded(frame(10, 'b'));
    connection.flush();
    assert.equal(transport.sent.length, 1);
    assert.equal(transport.sent[0]!.length, 21);
    connection.disposed();
  });

  test('a single frame larger than maxMessageBytes goes alone, between its neighbours', () => {
    const { connection, transport } = setup({ maxMessageBytes: 20 });
    connection.sendEncoded(frame(5, 'a'));
    connection.sendEncoded(frame(30, 'B'));
    connection.sendEncoded(frame(5, 'c'));
    connection.flush();
    assert.deepEqual(transport.texts(), ['a'.repeat(5), 'B'.repeat(30), 'c'.repeat(5)]);
    connection.disposed();
  });

  test('connections with the same queued frames share one joined payload (BatchCache)', () => {
    const one = setup();
    const two = setup();
    const frames = [frame(4, 'p'), frame(4, 'q')];
    for (const f of frames) {
      one.connection.sendEncoded(f);
      two.connection.sendEncoded(f);
    }
    const batches = new BatchCache();
    one.connection.flush(batches);
    two.connection.flush(batches);
    assert.equal(one.transport.sent[0], two.transport.sent[0], 'the very same Buffer');
    assert.equal(one.transport.texts()[0], 'pppp\nqqqq');
    one.connection.disposed();
    two.connection.disposed();
  });

  test('a flush after the transport closed writes nothing and empties the queue', () => {
    const { connection, transport } = setup();
    connection.sendEncoded(frame(10));
    transport.isOpen = false;
    connection.flush();
    assert.equal(transport.sent.length, 0);
    assert.equal(connection.pendingBytes, 0);
    connection.disposed();
  });

  test('live: up to maxQueuedBytes is queued; one byte more is a slow consumer, reported and closed 4003 without a notice', () => {
    const { connection, transport, reports } = setup({ maxQueuedBytes: 100 });
    connection.sendEncoded(frame(60), 'live');
    connection.sendEncoded(frame(40), 'live');
    assert.equal(connection.pendingBytes, 100, 'exactly at the limit: still queued');
    assert.deepEqual(reports, []);
    connection.sendEncoded(frame(1), 'live');
    assert.deepEqual(reports, ['slowConsumer']);
    assert.equal(connection.closing, true);
    assert.deepEqual(transport.closedWith, Disconnect.slowConsumer);
    assert.equal(transport.sent.length, 0, 'no disconnect frame and no queued frames for a slow consumer');
    connection.sendEncoded(frame(1), 'live');
    assert.deepEqual(reports, ['slowConsumer'], 'reported once');
    connection.disposed();
  });

  test('the transport’s own buffer counts against the queue (pendingBytes)', () => {
    const { connection, transport, reports } = setup({ maxQueuedBytes: 100 });
    transport.bufferedAmount = 95;
    connection.sendEncoded(frame(5), 'live');
    assert.equal(connection.pendingBytes, 100);
    connection.sendEncoded(frame(1), 'live');
    assert.deepEqual(reports, ['slowConsumer']);
    connection.disposed();
  });

  test('reply: its own size does not count; only a queue already over the limit makes it a slow consumer', () => {
    const { connection, transport, reports } = setup({ maxQueuedBytes: 100 });
    connection.sendEncoded(frame(90), 'live');
    connection.sendEncoded(frame(50), 'reply');
    assert.equal(connection.pendingBytes, 140, 'a reply past the limit is queued');
    assert.deepEqual(reports, []);
    connection.sendEncoded(frame(1), 'reply');
    assert.deepEqual(reports, ['slowConsumer'], 'the queue was over the limit before this reply');
    assert.equal(transport.closedWith?.code, 4003);
    connection.disposed();
  });

  test('ephemeral: dropped past half the queue, reported, never a disconnect', () => {
    const { connection, reports } = setup({ maxQueuedBytes: 100 });
    connection.sendEncoded(frame(40), 'live');
    connection.sendEncoded(frame(10), 'ephemeral');
    assert.equal(connection.pendingBytes, 50, 'exactly half: queued');
    connection.sendEncoded(frame(1), 'ephemeral');
    assert.equal(connection.pendingBytes, 50, 'past half: dropped');
    assert.deepEqual(reports, ['ephemeralDropped']);
    assert.equal(connection.closing, false);
    connection.disposed();
  });

  test('close sends what is queued, then a disconnect frame whose reconnect follows from the code', () => {
    const { connection, transport } = setup();
    connection.sendEncoded(Buffer.from('{"event":"message"}'));
    connection.close(Disconnect.shutdown, { retryAfterMs: 1234 });
    assert.deepEqual(transport.texts(), [
      '{"event":"message"}\n{"event":"disconnect","data":{"code":1001,"reason":"server shutting down","reconnect":true,"retryAfterMs":1234}}',
    ]);
    assert.deepEqual(transport.closedWith, { code: 1001, reason: 'server shutting down' });
    assert.equal(connection.closeCode, 1001);
    connection.disposed();

    const abusive = setup();
    abusive.connection.close(Disconnect.abuse);
    assert.equal(JSON.parse(abusive.transport.texts()[0]!).data.reconnect, false, '1008: do not reconnect');
    abusive.connection.disposed();
  });

  test('a paused transport is resumed on close so the peer’s close frame can be read', () => {
    const { connection, transport } = setup();
    transport.pause();
    connection.close(Disconnect.abuse);
    assert.equal(transport.isPaused, false);
    connection.disposed();
  });

  test('terminate drops the queue and records the disconnect for logs and metrics', async () => {
    const { connection, transport } = setup();
    connection.sendEncoded(frame(10));
    const closed = connection.whenClosed();
    connection.terminate(Disconnect.writeFailed);
    assert.equal(transport.terminated, true);
    assert.equal(connection.pendingBytes, 0);
    assert.deepEqual({ code: connection.closeCode, reason: connection.closeReason }, Disconnect.writeFailed);
    connection.disposed();
    await closed;
  });
});
