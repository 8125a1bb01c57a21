import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { API_KEY, api, signToken, startServer, TestSocket, type TestServer } from './helpers.js';

describe('HTTP API', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ limits: { maxMessageBytes: 2048 } });
  });
  after(() => s.close());

  test('publish: 200 with offset and epoch, delivered to subscribers', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const sub = await a.ok('subscribe', { channel: 'chat:api' });
    const r = await api(s.url, 'POST', '/api/publish', { channel: 'chat:api', data: { n: 1 } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { offset: 1, epoch: sub.epoch });
    const msg = (await a.find((f) => f.event === 'message')).data as any;
    assert.deepEqual(msg.data, { n: 1 });
    assert.equal(msg.publisher, undefined);
    a.close();
  });

  test('authentication: wrong key, missing key, disabled API -> 401', async () => {
    assert.equal((await api(s.url, 'POST', '/api/publish', { channel: 'chat:x', data: 1 }, 'wrong')).status, 401);
    const missing = await api(s.url, 'POST', '/api/publish', { channel: 'chat:x', data: 1 }, null);
    assert.equal(missing.status, 401);
    assert.equal(missing.body.error.code, 'UNAUTHORIZED');
    assert.ok(!JSON.stringify(missing.body).includes(API_KEY));
    const noKey = await startServer({ apiKey: undefined });
    try {
      const r = await api(noKey.url, 'GET', '/api/channels', undefined, 'anything');
      assert.equal(r.status, 401);
      assert.match(r.body.error.message, /disabled/);
    } finally {
      await noKey.close();
    }
  });

  test('bad input: invalid JSON 400, missing fields 400, bad channel 400, too large 413, unknown route 404', async () => {
    assert.equal((await api(s.url, 'POST', '/api/publish', '{nope')).status, 400);
    assert.equal((await api(s.url, 'POST', '/api/publish', { channel: 'chat:x' })).status, 400);
    assert.equal((await api(s.url, 'POST', '/api/publish', { data: 1 })).status, 400);
    const bad = await api(s.url, 'POST', '/api/publish', { channel: 'nope:x', data: 1 });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'BAD_CHANNEL');
    const big = await api(s.url, 'POST', '/api/publish', { channel: 'chat:x', data: 'z'.repeat(3000) });
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'TOO_LARGE');
    assert.equal((await api(s.url, 'GET', '/api/nothing')).status, 404);
    assert.equal((await api(s.url, 'DELETE', '/api/publish')).status, 404);
  });

  test('broadcast: one result per channel, failures reported per channel', async () => {
    const r = await api(s.url, 'POST', '/api/broadcast', { channels: ['chat:b1', 'chat:b2', 'bad:x'], data: 'hi' });
    assert.equal(r.status, 200);
    assert.equal(r.body.results.length, 3);
    assert.equal(r.body.results[0].offset, 1);
    assert.equal(r.body.results[1].offset, 1);
    assert.equal(r.body.results[2].error.code, 'BAD_CHANNEL');
    assert.equal((await api(s.url, 'POST', '/api/broadcast', { channels: [], data: 1 })).status, 400);
    // At the edge: 1000 channels are accepted, 1001 are not.
    const many = (n: number) => Array.from({ length: n }, (_, i) => `chat:many-${i}`);
    const big = await startServer(); // default body limit (64 KiB): room for 1000 names
    try {
      const thousand = await api(big.url, 'POST', '/api/broadcast', { channels: many(1000), data: 1 });
      assert.equal(thousand.status, 200);
      assert.equal(thousand.body.results.length, 1000);
      assert.equal((await api(big.url, 'POST', '/api/broadcast', { channels: many(1001), data: 1 })).status, 400);
    } finally {
      await big.close();
    }
  });

  test('idempotencyKey: 1 to 128 characters; a repeat returns the first result', async () => {
    const key = 'k'.repeat(128);
    const first = await api(s.url, 'POST', '/api/publish', { channel: 'chat:idem', data: 1, idempotencyKey: key });
    const again = await api(s.url, 'POST', '/api/publish', { channel: 'chat:idem', data: 1, idempotencyKey: key });
    assert.equal(first.status, 200);
    assert.deepEqual(again.body, first.body);
    const tooLong = await api(s.url, 'POST', '/api/publish', { channel: 'chat:idem', data: 1, idempotencyKey: 'k'.repeat(129) });
    assert.equal(tooLong.status, 400);
    assert.equal((await api(s.url, 'POST', '/api/publish', { channel: 'chat:idem', data: 1, idempotencyKey: '' })).status, 400);
  });

  test('channels, presence and history', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada', { claims: { name: 'Ada' } }));
    const a2 = await TestSocket.connect(s.wsUrl, await signToken('ada', { claims: { name: 'Ada' } }));
    await a.ok('subscribe', { channel: 'chat:room' });
    await a2.ok('subscribe', { channel: 'chat:room' });
    const channels = await api(s.url, 'GET', '/api/channels');
    assert.equal(channels.status, 200);
    assert.deepEqual(channels.body.channels.find((c: any) => c.channel === 'chat:room'), { channel: 'chat:room', subscribers: 2, nodes: 1 });
    assert.deepEqual(channels.body.nodes, [s.chorus.options.nodeId]);
    const presence = await api(s.url, 'GET', `/api/presence/${encodeURIComponent('chat:room')}`);
    assert.deepEqual(presence.body, { channel: 'chat:room', members: [{ user: 'ada', connections: 2, info: { name: 'Ada' } }] });
    for (let i = 1; i <= 5; i++) await api(s.url, 'POST', '/api/publish', { channel: 'chat:room', data: i });
    const all = await api(s.url, 'GET', '/api/history/chat:room');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.publications.map((p: any) => p.data), [1, 2, 3, 4, 5]);
    assert.equal(all.body.offset, 5);
    const page = await api(s.url, 'GET', `/api/history/chat:room?since=2&epoch=${all.body.epoch}&limit=2`);
    assert.deepEqual(page.body.publications.map((p: any) => p.offset), [3, 4]);
    const newest = await api(s.url, 'GET', '/api/history/chat:room?limit=2&reverse=1');
    assert.deepEqual(newest.body.publications.map((p: any) => p.offset), [5, 4]);
    const wrongEpoch = await api(s.url, 'GET', '/api/history/chat:room?since=2&epoch=zzz');
    assert.equal(wrongEpoch.status, 400);
    assert.equal(wrongEpoch.body.error.code, 'UNRECOVERABLE_POSITION');
    assert.equal((await api(s.url, 'GET', '/api/history/chat:room?since=2')).status, 400);
    assert.equal((await api(s.url, 'GET', '/api/history/user:ada')).body.error.code, 'NOT_AVAILABLE');
    a.close();
    a2.close();
  });

  test('disconnect a user: every connection closes with 4500 (or 4004 with reconnect)', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('mallory'));
    const b = await TestSocket.connect(s.wsUrl, await signToken('mallory'));
    const c = await TestSocket.connect(s.wsUrl, await signToken('carol'));
    const r = await api(s.url, 'POST', '/api/disconnect', { user: 'mallory' });
    assert.deepEqual(r.body, { disconnected: 2, nodes: [s.chorus.options.nodeId], missing: [] });
    for (const x of [a, b]) {
      const d = (await x.find((f) => f.event === 'disconnect')).data as any;
      assert.equal(d.reconnect, false);
      assert.equal((await x.closed).code, 4500);
    }
    assert.equal(c.closeCode, undefined);
    const again = await TestSocket.connect(s.wsUrl, await signToken('dave'));
    await api(s.url, 'POST', '/api/disconnect', { user: 'dave', reconnect: true });
    assert.equal((await again.closed).code, 4004);
    assert.equal((await api(s.url, 'POST', '/api/disconnect', { user: 'x', reconnect: 'yes' })).status, 400);
    c.close();
  });

  test('server-side subscribe through the API', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('erin'));
    const r = await api(s.url, 'POST', '/api/subscribe', { user: 'erin', channel: 'chat:pushed' });
    assert.deepEqual(r.body, { subscribed: 1, nodes: [s.chorus.options.nodeId], missing: [] });
    await a.next((f) => f.event === 'subscribed' && (f.data as any).channel === 'chat:pushed');
    await api(s.url, 'POST', '/api/publish', { channel: 'chat:pushed', data: 'x' });
    await a.find((f) => f.event === 'message' && (f.data as any).channel === 'chat:pushed');
    const u = await api(s.url, 'POST', '/api/unsubscribe', { user: 'erin', channel: 'chat:pushed' });
    assert.deepEqual(u.body, { unsubscribed: 1, nodes: [s.chorus.options.nodeId], missing: [] });
    await a.next((f) => f.event === 'unsubscribed');
    a.close();
  });

  test('healthz is 200 while serving', async () => {
    const r = await fetch(`${s.url}/healthz`);
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as any).status, 'ok');
  });
});
