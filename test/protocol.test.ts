import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { ChorusError } from '../src/server/index.js';
import { signToken, startServer, TestSocket, type TestServer } from './helpers.js';

describe('protocol', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({
      namespaces: [
        { pattern: 'user:*', personal: true, publish: 'none' },
        { pattern: 'chat:*', historySize: 100, presence: true },
        { pattern: 'news:*', publish: 'none' },
        { pattern: 'room:*', publish: 'subscribers' },
        { pattern: 'locked:*', subscribe: 'none' },
        { pattern: 'quiet:*', ephemeral: false },
      ],
    });
    s.chorus.on('echo', (data) => ({ echoed: data }));
    s.chorus.on('fail.coded', () => {
      throw new ChorusError('NOT_ALLOWED_HERE', 'nope');
    });
    s.chorus.on('fail.plain', () => {
      throw Object.assign(new Error('custom coded'), { code: 'OUT_OF_STOCK' });
    });
    s.chorus.on('fail.internal', () => {
      throw new Error('secret internal detail');
    });
    s.chorus.on('message.send', async (data, { connection, server }) => {
      const r = await server.publish(`chat:${data.room}`, { text: data.text, from: connection.user }, { exceptClient: connection.id });
      return { offset: r.offset };
    }, { schema: z.object({ room: z.string().min(1), text: z.string().max(200) }) });
  });
  after(() => s.close());

  test('connected frame first, with identity, heartbeat settings and the personal channel', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada', { claims: { info: { name: 'Ada' } } }));
    const connected = a.frames[0]!;
    assert.equal(connected.event, 'connected');
    const data = connected.data as any;
    assert.equal(data.user, 'ada');
    assert.match(data.client, /^c_/);
    assert.equal(data.pingIntervalMs, 30000);
    assert.equal(data.pingTimeoutMs, 90000);
    assert.ok(data.expiresAt > Date.now());
    assert.deepEqual(data.subscriptions.map((x: any) => x.channel), ['user:ada']);
    a.close();
  });

  test('every frame with an id gets exactly one reply, with the same id', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const ids = ['x1', 'x2', 'x3', 'x4'];
    a.send({ event: 'subscribe', id: 'x1', data: { channel: 'chat:one' } });
    a.send({ event: 'subscribe', id: 'x2', data: { channel: 'chat:one' } });
    a.send({ event: 'publish', id: 'x3', data: { channel: 'chat:one', data: 1 } });
    a.send({ event: 'nope', id: 'x4', data: {} });
    await a.next((f) => f.id === 'x4');
    await a.ok('ping');
    const replies = a.frames.filter((f) => f.id !== undefined && ids.includes(f.id));
    assert.deepEqual(replies.map((f) => `${f.id}:${f.event}`), ['x1:ack', 'x2:error', 'x3:ack', 'x4:error']);
    assert.equal((replies[1]!.data as any).code, 'ALREADY_SUBSCRIBED');
    assert.equal((replies[3]!.data as any).code, 'UNKNOWN_EVENT');
    a.close();
  });

  test('malformed frames get BAD_FRAME, without id an error carries the event', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const cases: Array<[string, string]> = [
      ['not json', 'BAD_FRAME'],
      ['[1,2]', 'BAD_FRAME'],
      ['{"data":1}', 'BAD_FRAME'],
      ['{"event":""}', 'BAD_FRAME'],
      [`{"event":"${'e'.repeat(129)}"}`, 'BAD_FRAME'],
      ['{"event":"ping","id":5}', 'BAD_FRAME'],
      [`{"event":"ping","id":"${'i'.repeat(129)}"}`, 'BAD_FRAME'],
    ];
    for (const [text, code] of cases) {
      const reply = a.next((f) => f.event === 'error');
      a.send(text);
      assert.equal(((await reply).data as any).code, code, text);
    }
    const reply = a.next((f) => f.event === 'error');
    a.send({ event: 'subscribe', data: 'chat:x' });
    const err = (await reply).data as any;
    assert.equal(err.code, 'BAD_REQUEST');
    assert.equal(err.event, 'subscribe');
    const bin = a.next((f) => f.event === 'error');
    a.ws.send(Buffer.from('{"event":"ping"}'), { binary: true });
    assert.equal(((await bin).data as any).code, 'BAD_FRAME');
    a.close();
  });

  test('batched frames in one message are all processed in order', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    a.send(['{"event":"ping","id":"b1"}', '{"event":"subscribe","id":"b2","data":{"channel":"chat:batch"}}', '{"event":"ping","id":"b3"}'].join('\n'));
    await a.next((f) => f.id === 'b3');
    assert.deepEqual(a.frames.filter((f) => f.id?.startsWith('b')).map((f) => f.id), ['b1', 'b2', 'b3']);
    a.close();
  });

  test('publish reaches every subscriber once, ack carries the offset', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada', { claims: { name: 'Ada' } }));
    const b = await TestSocket.connect(s.wsUrl, await signToken('bob'));
    const sub = await b.ok('subscribe', { channel: 'chat:pub' });
    assert.equal(sub.offset, 0);
    assert.equal(sub.history, true);
    const ack = await a.ok('publish', { channel: 'chat:pub', data: { text: 'hello' } });
    assert.equal(ack.offset, 1);
    assert.equal(ack.epoch, sub.epoch);
    const msg = (await b.find((f) => f.event === 'message')).data as any;
    assert.deepEqual(msg.data, { text: 'hello' });
    assert.equal(msg.offset, 1);
    assert.equal(msg.epoch, sub.epoch);
    assert.equal(msg.publisher.user, 'ada');
    assert.deepEqual(msg.publisher.info, { name: 'Ada' });
    assert.equal(typeof msg.time, 'number');
    await a.ok('publish', { channel: 'chat:pub', data: 2 });
    await b.find((f) => f.event === 'message' && (f.data as any).offset === 2);
    assert.equal(b.messages('chat:pub').length, 2);
    a.close();
    b.close();
  });

  test('unsubscribe stops delivery; unsubscribing twice is NOT_SUBSCRIBED', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    await a.ok('subscribe', { channel: 'chat:un' });
    assert.deepEqual(await a.ok('unsubscribe', { channel: 'chat:un' }), { channel: 'chat:un' });
    const again = await a.request('unsubscribe', { channel: 'chat:un' });
    assert.equal((again.data as any).code, 'NOT_SUBSCRIBED');
    await a.ok('publish', { channel: 'chat:un', data: 1 });
    await a.ok('ping');
    assert.equal(a.messages('chat:un').length, 0);
    a.close();
  });

  test('channel permissions: personal, publish none, subscribers-only, subscribe none, bad names', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const code = async (event: string, data: unknown) => ((await a.request(event, data)).data as any).code;
    assert.equal(await code('subscribe', { channel: 'user:bob' }), 'PERMISSION_DENIED');
    assert.equal(await code('publish', { channel: 'user:ada', data: 1 }), 'PERMISSION_DENIED');
    assert.equal(await code('publish', { channel: 'news:today', data: 1 }), 'PERMISSION_DENIED');
    assert.equal(await code('publish', { channel: 'room:1', data: 1 }), 'PERMISSION_DENIED');
    await a.ok('subscribe', { channel: 'room:1' });
    assert.equal((await a.ok('publish', { channel: 'room:1', data: 1 })).offset, 1);
    assert.equal(await code('subscribe', { channel: 'locked:x' }), 'PERMISSION_DENIED');
    assert.equal(await code('subscribe', { channel: 'nowhere:x' }), 'BAD_CHANNEL');
    assert.equal(await code('subscribe', { channel: 'bad channel' }), 'BAD_CHANNEL');
    assert.equal(await code('subscribe', { channel: 'x'.repeat(256) }), 'BAD_CHANNEL');
    assert.equal(await code('publish', { channel: 'quiet:x', data: 1, ephemeral: true }), 'NOT_AVAILABLE');
    assert.equal(await code('history', { channel: 'news:today' }), 'NOT_AVAILABLE');
    assert.equal(await code('presence', { channel: 'news:today' }), 'NOT_AVAILABLE');
    assert.equal(await code('publish', { channel: 'chat:x' }), 'BAD_REQUEST');
    a.close();
  });

  test('application events: return value is the ack, coded errors are error replies, internals hidden', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    assert.deepEqual(await a.ok('echo', { n: 1 }), { echoed: { n: 1 } });
    const coded = (await a.request('fail.coded', {})).data as any;
    assert.deepEqual([coded.code, coded.message], ['NOT_ALLOWED_HERE', 'nope']);
    const plain = (await a.request('fail.plain', {})).data as any;
    assert.equal(plain.code, 'OUT_OF_STOCK');
    const internal = (await a.request('fail.internal', {})).data as any;
    assert.equal(internal.code, 'INTERNAL');
    assert.ok(!JSON.stringify(internal).includes('secret internal detail'));
    a.close();
  });

  test('schema validation (zod through Standard Schema) and exclude-the-sender', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const b = await TestSocket.connect(s.wsUrl, await signToken('bob'));
    await a.ok('subscribe', { channel: 'chat:schema' });
    await b.ok('subscribe', { channel: 'chat:schema' });
    const bad = (await a.request('message.send', { room: '', text: 5 })).data as any;
    assert.equal(bad.code, 'BAD_REQUEST');
    assert.ok(Array.isArray(bad.issues) && bad.issues.length >= 1);
    const ok = await a.ok('message.send', { room: 'schema', text: 'hi' });
    assert.equal(ok.offset, 1);
    const got = (await b.find((f) => f.event === 'message')).data as any;
    assert.deepEqual(got.data, { text: 'hi', from: 'ada' });
    await a.ok('ping');
    assert.equal(a.messages('chat:schema').length, 0, 'the sender was excluded');
    a.close();
    b.close();
  });

  test('handlers cannot take reserved event names', () => {
    assert.throws(() => s.chorus.on('subscribe', () => 1), TypeError);
    assert.throws(() => s.chorus.on('message', () => 1), TypeError);
  });

  test('ping without id gets a pong frame', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const pong = a.next((f) => f.event === 'pong');
    a.send({ event: 'ping' });
    await pong;
    a.close();
  });

  test('subscribe without an id sends a subscribed event with the position', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    a.send({ event: 'subscribe', data: { channel: 'chat:noid' } });
    const f = await a.next((x) => x.event === 'subscribed');
    assert.equal((f.data as any).channel, 'chat:noid');
    assert.equal((f.data as any).offset, 0);
    a.close();
  });

  test('server-side subscribe and messages on the personal channel', async () => {
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    const n = await s.chorus.subscribeUser('ada', 'chat:server-side');
    assert.equal(n, 1);
    const sub = await a.next((f) => f.event === 'subscribed');
    assert.equal((sub.data as any).channel, 'chat:server-side');
    await s.chorus.publish('user:ada', { notice: 'hi ada' });
    const msg = (await a.find((f) => f.event === 'message' && (f.data as any).channel === 'user:ada')).data as any;
    assert.deepEqual(msg.data, { notice: 'hi ada' });
    assert.equal(msg.publisher, undefined);
    await s.chorus.unsubscribeUser('ada', 'chat:server-side');
    const unsub = await a.next((f) => f.event === 'unsubscribed');
    assert.equal((unsub.data as any).channel, 'chat:server-side');
    a.close();
  });

  test('connection.emit sends an application event to one client', async () => {
    s.chorus.on('whoami', (_d, { connection }) => {
      connection.emit('notice', { you: connection.user });
      return null;
    });
    const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
    assert.equal(await a.ok('whoami'), null);
    const notice = await a.find((f) => f.event === 'notice');
    assert.deepEqual(notice.data, { you: 'ada' });
    a.close();
  });
});

describe('hooks and authorize', () => {
  test('authorize denies, hooks run in priority order, beforePublish replaces data, onUpgrade rejects 403', async () => {
    const order: string[] = [];
    const s = await startServer({
      authorize: ({ action, channel, user }) => !(action === 'subscribe' && channel === 'chat:vip' && user !== 'vip'),
    });
    s.chorus.use({
      name: 'low',
      priority: 1,
      beforePublish: (ctx) => {
        order.push('low');
        return { data: { ...(ctx.data as object), stamped: true } };
      },
    });
    s.chorus.use({
      name: 'high',
      priority: 10,
      beforePublish: (ctx) => {
        order.push('high');
        if ((ctx.data as any).forbidden) throw new ChorusError('CONTENT_REJECTED', 'not here');
      },
      onUpgrade: ({ identity }) => {
        if (identity.user === 'banned') throw new ChorusError('BANNED', 'go away');
      },
      onSubscribe: ({ channel }) => {
        if (channel === 'chat:closed') throw new ChorusError('ROOM_CLOSED', 'closed');
      },
    });
    const disconnects: number[] = [];
    s.chorus.use({ onDisconnect: ({ code }) => void disconnects.push(code) });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      assert.equal(((await a.request('subscribe', { channel: 'chat:vip' })).data as any).code, 'PERMISSION_DENIED');
      assert.equal(((await a.request('subscribe', { channel: 'chat:closed' })).data as any).code, 'ROOM_CLOSED');
      await a.ok('subscribe', { channel: 'chat:open' });
      await a.ok('publish', { channel: 'chat:open', data: { x: 1 } });
      const msg = (await a.find((f) => f.event === 'message')).data as any;
      assert.deepEqual(msg.data, { x: 1, stamped: true });
      assert.deepEqual(order, ['high', 'low']);
      assert.equal(((await a.request('publish', { channel: 'chat:open', data: { forbidden: true } })).data as any).code, 'CONTENT_REJECTED');
      const { upgradeStatus } = await import('./helpers.js');
      const banned = await upgradeStatus(`${s.wsUrl}?token=${await signToken('banned')}`);
      assert.equal(banned.status, 403);
      assert.equal(JSON.parse(banned.body).error.code, 'BANNED');
      a.close();
      await a.closed;
    } finally {
      await s.close();
    }
  });
});
