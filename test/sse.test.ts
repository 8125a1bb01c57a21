/**
 * Unidirectional SSE (`GET /sse?channel=...`): admission like the WebSocket, frames exactly as
 * on the WebSocket, ids holding every channel's position, resume with Last-Event-ID (in order,
 * no duplicates, or recovered:false), heartbeat comments without a silence timeout, slow
 * consumers and token expiry.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { channelListHash, decodeEventId, encodeEventId } from '../src/server/transports/sse-id.js';
import { SECRET, TestSocket, signToken, until, withServer } from './helpers.js';
import { SseReader, sseUrl } from './sse-helpers.js';

describe('SSE event ids', () => {
  test('round trip; another channel list, a malformed or an overlong id is not ours', () => {
    const channels = ['chat:a', 'chat:b', 'chat:c'];
    const positions = new Map([
      ['chat:a', { offset: 12345, epoch: 'e;p:o%ch' }],
      ['chat:c', { offset: 0, epoch: 'x' }],
    ]);
    const id = encodeEventId(channelListHash(channels), channels, positions);
    assert.match(id, /^v1;[0-9a-z]+;0:9ix:e%3Bp%3Ao%25ch;2:0:x$/);
    assert.deepEqual(decodeEventId(id, channels), positions);
    assert.equal(decodeEventId(id, ['chat:a', 'chat:b']), undefined);
    assert.equal(decodeEventId(id, ['chat:b', 'chat:a', 'chat:c']), undefined, 'order matters');
    for (const bad of ['', 'v2;x', `v1;${channelListHash(channels)};9:1:x`, `v1;${channelListHash(channels)};0:1`, 'v1;' + 'x'.repeat(9000)]) {
      assert.equal(decodeEventId(bad, channels), undefined, bad);
    }
  });
});

describe('SSE endpoint', () => {
  test('admission: channel parameters checked, then Origin, then the token (query or Bearer header)', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const cases: Array<[string, Record<string, string>, number, string]> = [
        [`${s.url}/sse?token=${token}`, {}, 400, 'BAD_REQUEST'],
        [sseUrl(s.url, ['chat:a', 'chat:a'], { token }), {}, 400, 'BAD_REQUEST'],
        [sseUrl(s.url, ['bad name'], { token }), {}, 400, 'BAD_REQUEST'],
        [sseUrl(s.url, Array.from({ length: 65 }, (_, i) => `chat:${i}`), { token }), {}, 400, 'BAD_REQUEST'],
        [sseUrl(s.url, ['chat:a'], { token }), { origin: 'http://evil.example' }, 403, 'ORIGIN_NOT_ALLOWED'],
        [sseUrl(s.url, ['chat:a']), {}, 401, 'UNAUTHORIZED'],
        [sseUrl(s.url, ['chat:a'], { token: await signToken('ada', { secret: 'another-secret-0123456789-abcdefghijkl' }) }), {}, 401, 'UNAUTHORIZED'],
      ];
      for (const [url, headers, status, code] of cases) {
        const reader = new SseReader(url, headers);
        await reader.done;
        assert.equal(reader.status, status, url);
        assert.equal(JSON.parse(reader.body).error.code, code, url);
      }
      const bearer = new SseReader(sseUrl(s.url, ['chat:a']), { authorization: `Bearer ${token}` });
      await bearer.until('connected', () => bearer.events.some((e) => e.frame.event === 'connected'));
      assert.equal(bearer.headers['content-type'], 'text/event-stream; charset=utf-8');
      bearer.close();
    });
  });

  test('frames exactly as on the WebSocket; publications carry ids; namespace rules apply per channel', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const ws = await TestSocket.connect(s.wsUrl, await signToken('bob'));
      await ws.ok('subscribe', { channel: 'chat:same' });
      const reader = new SseReader(sseUrl(s.url, ['chat:same', 'user:bob', 'nope:x'], { token }));
      await reader.until('three subscribe outcomes', () => reader.events.filter((e) => ['subscribed', 'error'].includes(e.frame.event)).length === 3);
      const [connected, ...rest] = reader.events;
      assert.equal(connected!.frame.event, 'connected');
      assert.equal(connected!.frame.data.user, 'ada');
      const outcome = (channel: string) => rest.find((e) => e.frame.data?.channel === channel)!.frame;
      assert.equal(outcome('chat:same').event, 'subscribed');
      assert.deepEqual(outcome('user:bob').data, { code: 'PERMISSION_DENIED', message: outcome('user:bob').data.message, event: 'subscribe', channel: 'user:bob' });
      assert.equal(outcome('nope:x').data.code, 'BAD_CHANNEL');
      await s.chorus.publish('chat:same', { text: 'hi', bin: new Uint8Array([7]) });
      await reader.until('the message', () => reader.messages('chat:same').length === 1);
      const wsMessage = await ws.find((f) => f.event === 'message');
      const event = reader.events.find((e) => e.frame.event === 'message')!;
      assert.equal(event.raw, JSON.stringify(wsMessage), 'the data line is the WebSocket frame');
      assert.ok(event.id, 'a publication event has an id');
      assert.deepEqual(decodeEventId(event.id!, ['chat:same', 'user:bob', 'nope:x'])!.get('chat:same'), {
        offset: wsMessage.data && (wsMessage.data as any).offset,
        epoch: (wsMessage.data as any).epoch,
      });
      reader.close();
      ws.close();
    });
  });

  test('Last-Event-ID resumes every channel: missed publications in order without duplicates, then live', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const channels = ['chat:r1', 'chat:r2'];
      const first = new SseReader(sseUrl(s.url, channels, { token }));
      await first.until('subscribed twice', () => first.events.filter((e) => e.frame.event === 'subscribed').length === 2);
      for (let i = 0; i < 3; i++) for (const c of channels) await s.chorus.publish(c, { i });
      await first.until('six messages', () => channels.every((c) => first.messages(c).length === 3));
      const lastId = first.lastEventId;
      first.close();
      await until('stream gone', () => s.chorus.connections.size === 0);
      for (let i = 3; i < 8; i++) for (const c of channels) await s.chorus.publish(c, { i });
      const second = new SseReader(sseUrl(s.url, channels, { token }), { 'last-event-id': lastId });
      await second.until('recovered and subscribed', () => second.events.filter((e) => e.frame.event === 'subscribed').length === 2);
      for (const c of channels) {
        assert.deepEqual(second.messages(c).map((m) => m.data.i), [3, 4, 5, 6, 7], c);
        assert.equal(second.events.find((e) => e.frame.event === 'subscribed' && e.frame.data.channel === c)!.frame.data.recovered, true);
      }
      await s.chorus.publish('chat:r2', { i: 8 });
      await second.until('live after recovery', () => second.messages('chat:r2').length === 6);
      // The same id from `?lastEventId=` (a new EventSource after a token refresh cannot set headers).
      const third = new SseReader(sseUrl(s.url, channels, { token, lastEventId: second.lastEventId }));
      await third.until('subscribed', () => third.events.filter((e) => e.frame.event === 'subscribed').length === 2);
      assert.deepEqual(third.events.filter((e) => e.frame.event === 'message'), [], 'nothing missed, nothing repeated');
      assert.ok(third.events.filter((e) => e.frame.event === 'subscribed').every((e) => e.frame.data.recovered === true));
      second.close();
      third.close();
    });
  });

  test('an id that cannot be filled gives recovered:false per channel', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const channels = ['chat:u1', 'chat:u2'];
      await s.chorus.publish('chat:u1', { i: 0 });
      const stale = encodeEventId(channelListHash(channels), channels, new Map([['chat:u1', { offset: 0, epoch: 'not-the-epoch' }]]));
      for (const id of [stale, 'garbage']) {
        const reader = new SseReader(sseUrl(s.url, channels, { token }), { 'last-event-id': id });
        await reader.until('subscribed', () => reader.events.filter((e) => e.frame.event === 'subscribed').length === 2);
        for (const e of reader.events.filter((x) => x.frame.event === 'subscribed')) assert.equal(e.frame.data.recovered, false, `${id} ${e.frame.data.channel}`);
        reader.close();
      }
    });
  });

  test('heartbeat comments keep a silent stream open past the heartbeat timeout; no ping frames', async () => {
    await withServer({ heartbeat: { intervalMs: 50, timeoutMs: 150 } }, async (s) => {
      const reader = new SseReader(sseUrl(s.url, ['chat:hb'], { token: await signToken('ada') }));
      await reader.until('connected', () => reader.events.length > 0);
      const start = Date.now();
      // Heartbeat comments keep arriving well after the 150 ms timeout that would close a silent WebSocket.
      await reader.until('comments past the timeout', () => reader.comments >= 8 && Date.now() - start > 300);
      assert.equal(reader.ended, false);
      assert.equal(s.chorus.connections.size, 1);
      assert.ok(!reader.events.some((e) => e.frame.event === 'ping'));
      reader.close();
    });
  });

  test('a stream that does not read is a slow consumer (4003 recorded, stream closed)', async () => {
    await withServer({ limits: { maxQueuedBytes: 64 * 1024 } }, async (s) => {
      const token = await signToken('ada');
      // A raw socket that never reads: the kernel buffers fill, then the send queue.
      const socket = net.connect(s.port, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((r) => socket.once('connect', r));
      socket.write(`GET /sse?channel=chat:slow&token=${token} HTTP/1.1\r\nHost: x\r\n\r\n`);
      socket.pause();
      await until('connected', () => s.chorus.connections.size === 1);
      const connection = [...s.chorus.connections][0]!;
      await until('subscribed', () => connection.subscriptions.has('chat:slow'));
      const big = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 2000 && s.chorus.connections.size > 0; i++) {
        await s.chorus.publish('chat:slow', { i, big });
      }
      await until('closed', () => s.chorus.connections.size === 0);
      assert.equal(connection.closeCode, 4003);
      socket.destroy();
    });
  });

  test('the stream ends at token expiry with a disconnect frame (4001)', async () => {
    await withServer({ auth: { secret: SECRET, clockToleranceSec: 0 }, heartbeat: { intervalMs: 100, timeoutMs: 1000 } }, async (s) => {
      const reader = new SseReader(sseUrl(s.url, ['chat:exp'], { token: await signToken('ada', { expSeconds: 1 }) }));
      await reader.until('stream end', () => reader.ended, 5000);
      const last = reader.events.at(-1)!.frame;
      assert.equal(last.event, 'disconnect');
      assert.equal(last.data.code, 4001);
    });
  });
});
