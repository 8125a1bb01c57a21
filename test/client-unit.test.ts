import { strict as assert } from 'node:assert';
import { once as onceEvent } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import type { Frame, MessageData } from '../src/protocol/index.js';
import {
  Backoff,
  ChorusClient,
  ChorusClientError,
  ClientState,
  OfflineQueue,
  PositionTracker,
  SubscriptionState,
  backoffDelay,
  classifyMessage,
} from '../src/client/index.js';
import type {
  ChorusClientOptions,
  ClientLifecycleEvents,
  Subscription,
  SubscriptionEvents,
} from '../src/client/index.js';

// ---------------------------------------------------------------- helpers

/** Resolve with the next `event` of a client or subscription (matching `filter`), or reject after `ms`. */
function next<K extends keyof ClientLifecycleEvents>(
  emitter: ChorusClient,
  event: K,
  ms?: number,
  filter?: (data: ClientLifecycleEvents[K]) => boolean,
): Promise<ClientLifecycleEvents[K]>;
function next<K extends keyof SubscriptionEvents>(
  emitter: Subscription,
  event: K,
  ms?: number,
  filter?: (data: SubscriptionEvents[K]) => boolean,
): Promise<SubscriptionEvents[K]>;
function next(
  emitter: { on(event: string, listener: (data: any) => void): () => void },
  event: string,
  ms = 2000,
  filter: (data: any) => boolean = () => true,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for "${event}"`));
    }, ms);
    const off = emitter.on(event, (data) => {
      if (!filter(data)) return;
      clearTimeout(timer);
      off();
      resolve(data);
    });
  });
}

function msg(offset: number | undefined, epoch = 'e1', channel = 'chat:a'): MessageData {
  return offset === undefined
    ? { channel, data: 'x', time: 0, ephemeral: true }
    : { channel, data: offset, offset, epoch, time: 0 };
}

const offsets = (list: MessageData[]): (number | undefined)[] => list.map((m) => m.offset);

// ---------------------------------------------------------------- backoff

describe('backoff', () => {
  test('delay is within [0, min(max, min * 2^attempt))', () => {
    assert.equal(backoffDelay(0, 1000, 30000, () => 0), 0);
    assert.equal(backoffDelay(0, 1000, 30000, () => 0.999999), 999);
    assert.equal(backoffDelay(3, 1000, 30000, () => 0.999999), 7999);
    assert.equal(backoffDelay(5, 1000, 30000, () => 0.999999), 29999); // 32000 capped at 30000
    assert.equal(backoffDelay(1000, 1000, 30000, () => 0.5), 15000); // no overflow at huge attempts
  });

  test('attempts grow the ceiling and reset() restarts from min', () => {
    const backoff = new Backoff(10, 50, () => 0.999999);
    assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [9, 19, 39, 49]);
    assert.equal(backoff.attempt, 4);
    backoff.reset();
    assert.equal(backoff.attempt, 0);
    assert.equal(backoff.next(), 9);
  });

  test('contradictory bounds are rejected', () => {
    assert.throws(() => new Backoff(100, 10), TypeError);
  });
});

// ---------------------------------------------------------------- position tracking

describe('position tracking', () => {
  test('classifyMessage table', () => {
    const pos = { offset: 5, epoch: 'e1' };
    const table: [Parameters<typeof classifyMessage>[0], MessageData, string][] = [
      [pos, msg(6), 'next'],
      [pos, msg(5), 'duplicate'],
      [pos, msg(1), 'duplicate'],
      [pos, msg(7), 'gap'],
      [pos, msg(6, 'e2'), 'epoch-changed'],
      [pos, msg(undefined), 'ephemeral'],
      [undefined, msg(42), 'next'],
      [undefined, msg(undefined), 'ephemeral'],
    ];
    for (const [position, message, expected] of table) {
      assert.equal(classifyMessage(position, message), expected, `${JSON.stringify(position)} + ${message.offset}`);
    }
  });

  test('next advances, duplicate is dropped, ephemeral passes without moving', () => {
    const tracker = new PositionTracker({ offset: 5, epoch: 'e1' });
    assert.deepEqual(offsets(tracker.receive(msg(6)).deliver), [6]);
    assert.deepEqual(offsets(tracker.receive(msg(6)).deliver), []);
    assert.deepEqual(offsets(tracker.receive(msg(undefined)).deliver), [undefined]);
    assert.deepEqual(tracker.position, { offset: 6, epoch: 'e1' });
  });

  test('gap: buffer live messages, fill from history, then deliver the buffer without duplicates', () => {
    const tracker = new PositionTracker({ offset: 5, epoch: 'e1' });
    const gap = tracker.receive(msg(8));
    assert.deepEqual(gap.deliver, []);
    assert.deepEqual(gap.fetchSince, { offset: 5, epoch: 'e1' });
    assert.equal(tracker.recovering, true);
    assert.deepEqual(tracker.receive(msg(9)).deliver, []); // buffered while recovering
    assert.deepEqual(tracker.receive(msg(8)).deliver, []); // duplicate in the buffer
    const filled = tracker.applyHistory({ epoch: 'e1', publications: [msg(6), msg(7), msg(8)] });
    assert.deepEqual(offsets(filled.deliver), [6, 7, 8, 9]);
    assert.equal(filled.recoveryFailed, false);
    assert.equal(filled.fetchSince, undefined);
    assert.equal(tracker.recovering, false);
    assert.deepEqual(tracker.position, { offset: 9, epoch: 'e1' });
    assert.deepEqual(offsets(tracker.receive(msg(10)).deliver), [10]);
  });

  test('gap larger than one page: keeps paging from the new position', () => {
    const tracker = new PositionTracker({ offset: 0, epoch: 'e1' });
    tracker.receive(msg(5));
    const page1 = tracker.applyHistory({ epoch: 'e1', publications: [msg(1), msg(2)] });
    assert.deepEqual(offsets(page1.deliver), [1, 2]);
    assert.deepEqual(page1.fetchSince, { offset: 2, epoch: 'e1' });
    const page2 = tracker.applyHistory({ epoch: 'e1', publications: [msg(3), msg(4), msg(5)] });
    assert.deepEqual(offsets(page2.deliver), [3, 4, 5]);
    assert.equal(page2.fetchSince, undefined);
  });

  test('gap history cannot fill (trimmed): recovery fails and jumps to the buffered messages', () => {
    const tracker = new PositionTracker({ offset: 5, epoch: 'e1' });
    tracker.receive(msg(9));
    tracker.receive(msg(10));
    const step = tracker.applyHistory({ epoch: 'e1', publications: [] });
    assert.equal(step.recoveryFailed, true);
    assert.deepEqual(offsets(step.deliver), [9, 10]);
    assert.deepEqual(tracker.position, { offset: 10, epoch: 'e1' });
    const hole = new PositionTracker({ offset: 5, epoch: 'e1' });
    hole.receive(msg(9));
    const trimmed = hole.applyHistory({ epoch: 'e1', publications: [msg(7), msg(8), msg(9)] });
    assert.equal(trimmed.recoveryFailed, true);
    assert.deepEqual(offsets(trimmed.deliver), [9]);
  });

  test('epoch change: live message or history epoch', () => {
    const live = new PositionTracker({ offset: 5, epoch: 'e1' });
    const step = live.receive(msg(1, 'e2'));
    assert.equal(step.recoveryFailed, true);
    assert.deepEqual(offsets(step.deliver), [1]);
    assert.deepEqual(live.position, { offset: 1, epoch: 'e2' });

    const history = new PositionTracker({ offset: 5, epoch: 'e1' });
    history.receive(msg(7));
    const failed = history.applyHistory({ epoch: 'e2', publications: [msg(1, 'e2')] });
    assert.equal(failed.recoveryFailed, true);
    assert.deepEqual(offsets(failed.deliver), [7]);
    assert.deepEqual(history.position, { offset: 7, epoch: 'e1' });
  });

  test('recoverTo: a later position fetches history; another epoch fails', () => {
    const tracker = new PositionTracker({ offset: 3, epoch: 'e1' });
    assert.deepEqual(tracker.recoverTo({ offset: 3, epoch: 'e1' }).fetchSince, undefined);
    const step = tracker.recoverTo({ offset: 5, epoch: 'e1' });
    assert.deepEqual(step.fetchSince, { offset: 3, epoch: 'e1' });
    const done = tracker.applyHistory({ epoch: 'e1', publications: [msg(4), msg(5)] });
    assert.deepEqual(offsets(done.deliver), [4, 5]);
    assert.equal(done.fetchSince, undefined);
    const other = tracker.recoverTo({ offset: 9, epoch: 'e2' });
    assert.equal(other.recoveryFailed, true);
    assert.deepEqual(tracker.position, { offset: 9, epoch: 'e2' });
  });
});

// ---------------------------------------------------------------- offline queue

describe('offline queue', () => {
  test('size limit at its edge; expired items do not take room', () => {
    let now = 1000;
    const queue = new OfflineQueue<string>({ maxSize: 2, maxAgeMs: 100, now: () => now });
    assert.equal(queue.push('a').accepted, true);
    assert.equal(queue.push('b').accepted, true);
    assert.equal(queue.push('c').accepted, false); // size === maxSize
    assert.equal(queue.size, 2);
    now += 100;
    const pushed = queue.push('d');
    assert.equal(pushed.accepted, true);
    assert.deepEqual(pushed.expired, ['a', 'b']);
  });

  test('age limit at its edge: maxAgeMs - 1 kept, maxAgeMs expired', () => {
    let now = 0;
    const queue = new OfflineQueue<string>({ maxSize: 10, maxAgeMs: 100, now: () => now });
    queue.push('a');
    now = 50;
    queue.push('b');
    assert.equal(queue.nextExpiryAt(), 100);
    now = 99;
    assert.deepEqual(queue.expire(), []);
    now = 100;
    assert.deepEqual(queue.expire(), ['a']);
    now = 149;
    assert.deepEqual(queue.drain(), { items: ['b'], expired: [] });
    assert.equal(queue.size, 0);
    assert.equal(queue.nextExpiryAt(), undefined);
  });

  test('maxSize 0 queues nothing; invalid limits throw', () => {
    const queue = new OfflineQueue<string>({ maxSize: 0, maxAgeMs: 100 });
    assert.equal(queue.push('a').accepted, false);
    assert.throws(() => new OfflineQueue({ maxSize: -1, maxAgeMs: 1 }), TypeError);
    assert.throws(() => new OfflineQueue({ maxSize: 1.5, maxAgeMs: 1 }), TypeError);
  });
});

// ---------------------------------------------------------------- fake server

interface FakeConn {
  ws: WebSocket;
  url: string;
  frames: Frame[];
  send(...frames: Frame[]): void;
  /** The next received frame with this event (consumed in order). */
  next(event: string, ms?: number): Promise<Frame>;
}

interface FakeServerOptions {
  /** Data of the connected frame; false: do not send it. */
  connected?: Record<string, unknown> | false;
  /** Handle a frame; return true when handled (otherwise the default behaviour runs). */
  onFrame?: (conn: FakeConn, frame: Frame) => boolean | void;
}

/**
 * A minimal protocol speaker: connected frame, subscribe ack (recovered:true when `since`),
 * publish ack with per-channel offsets deduped by id, emit ack echoing the data.
 */
async function fakeServer(options: FakeServerOptions = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await onceEvent(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  const connections: FakeConn[] = [];
  const waiters: ((conn: FakeConn) => void)[] = [];
  const offsetsByChannel = new Map<string, number>();
  const dedupe = new Map<string, { offset: number; epoch: string }>();

  wss.on('connection', (ws, req) => {
    const received: Frame[] = [];
    const pending: { event: string; resolve: (f: Frame) => void }[] = [];
    const conn: FakeConn = {
      ws,
      url: req.url ?? '',
      frames: received,
      send: (...frames) => ws.send(frames.map((f) => JSON.stringify(f)).join('\n')),
      next(event, ms = 2000) {
        const index = received.findIndex((f) => f.event === event);
        if (index !== -1) return Promise.resolve(received.splice(index, 1)[0] as Frame);
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`fake server: no "${event}" frame`)), ms);
          pending.push({
            event,
            resolve: (f) => {
              clearTimeout(timer);
              resolve(f);
            },
          });
        });
      },
    };
    ws.on('message', (raw) => {
      for (const text of raw.toString().split('\n')) {
        if (text === '') continue;
        const frame = JSON.parse(text) as Frame;
        const handled = options.onFrame?.(conn, frame) === true;
        if (!handled) defaultReply(conn, frame);
        const waiter = pending.findIndex((p) => p.event === frame.event);
        if (waiter !== -1) pending.splice(waiter, 1)[0]?.resolve(frame);
        else received.push(frame);
      }
    });
    connections.push(conn);
    if (options.connected !== false) {
      conn.send({
        event: 'connected',
        data: {
          client: `c${connections.length}`,
          user: 'ada',
          node: 'n1',
          pingIntervalMs: 0,
          pingTimeoutMs: 0,
          subscriptions: [],
          ...options.connected,
        },
      });
    }
    waiters.splice(0).forEach((w) => w(conn));
  });

  function defaultReply(conn: FakeConn, frame: Frame): void {
    const data = (frame.data ?? {}) as Record<string, unknown>;
    const channel = String(data.channel);
    if (frame.id === undefined) return;
    if (frame.event === 'subscribe') {
      const ack: Record<string, unknown> = {
        channel,
        offset: offsetsByChannel.get(channel) ?? 0,
        epoch: 'e1',
        history: true,
        presence: true,
      };
      if (data.since !== undefined) ack.recovered = true;
      conn.send({ event: 'ack', id: frame.id, data: ack });
    } else if (frame.event === 'publish') {
      let position = dedupe.get(frame.id);
      if (position === undefined) {
        const offset = (offsetsByChannel.get(channel) ?? 0) + 1;
        offsetsByChannel.set(channel, offset);
        position = { offset, epoch: 'e1' };
        dedupe.set(frame.id, position);
      }
      conn.send({ event: 'ack', id: frame.id, data: position });
    } else if (frame.event === 'unsubscribe') {
      conn.send({ event: 'ack', id: frame.id, data: { channel } });
    } else {
      conn.send({ event: 'ack', id: frame.id, data: frame.data ?? null });
    }
  }

  return {
    url: `ws://127.0.0.1:${port}/ws`,
    connections,
    /** The next connection (or the n-th, 1-based, if it already exists). */
    connection(n: number, ms = 2000): Promise<FakeConn> {
      const existing = connections[n - 1];
      if (existing !== undefined) return Promise.resolve(existing);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`fake server: no connection #${n}`)), ms);
        const wait = (): void => {
          const conn = connections[n - 1];
          if (conn !== undefined) {
            clearTimeout(timer);
            resolve(conn);
          } else waiters.push(wait);
        };
        waiters.push(wait);
      });
    },
    async close(): Promise<void> {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

type FakeServer = Awaited<ReturnType<typeof fakeServer>>;

function makeClient(server: FakeServer, options: Partial<ChorusClientOptions> = {}): ChorusClient {
  return new ChorusClient({
    url: server.url,
    token: 'tok',
    WebSocket,
    minReconnectDelayMs: 10,
    maxReconnectDelayMs: 50,
    timeoutMs: 1000,
    ...options,
  });
}

/** Run a test body with a fake server and a client, and always clean both up. */
async function withClient(
  serverOptions: FakeServerOptions,
  clientOptions: Partial<ChorusClientOptions>,
  body: (server: FakeServer, client: ChorusClient) => Promise<void>,
): Promise<void> {
  const server = await fakeServer(serverOptions);
  const client = makeClient(server, clientOptions);
  try {
    await body(server, client);
  } finally {
    client.close();
    await server.close();
  }
}

// ---------------------------------------------------------------- client against the fake server

describe('client state machine', () => {
  test('connects: states in order, token in the query, connected data', async () => {
    await withClient({}, {}, async (server, client) => {
      const states: string[] = [];
      client.on('state', ({ oldState, newState }) => states.push(`${oldState}->${newState}`));
      const connected = next(client, 'connected');
      client.connect();
      const data = await connected;
      assert.equal(data.user, 'ada');
      assert.equal(client.state, ClientState.CONNECTED);
      assert.deepEqual(states, ['disconnected->connecting', 'connecting->connected']);
      const conn = await server.connection(1);
      assert.equal(conn.url, '/ws?token=tok');
    });
  });

  test('emit resolves with the ack; an error reply rejects with its code; app events arrive', async () => {
    await withClient(
      {
        onFrame(conn, frame) {
          if (frame.event !== 'fail') return false;
          conn.send({ event: 'error', id: frame.id, data: { code: 'NOPE', message: 'no', retryAfterMs: 5 } });
          return true;
        },
      },
      {},
      async (server, client) => {
        client.connect();
        await next(client, 'connected');
        assert.deepEqual(await client.emit('echo', { a: 1 }), { a: 1 });
        await assert.rejects(client.emit('fail', null), (err: ChorusClientError) => {
          assert.ok(err instanceof ChorusClientError);
          assert.equal(err.code, 'NOPE');
          assert.deepEqual(err.details, { retryAfterMs: 5 });
          return true;
        });
        await assert.rejects(client.emit('subscribe', {}), { code: 'BAD_REQUEST' });
        const notice = new Promise((resolve) => client.on('notice', resolve));
        (await server.connection(1)).send({ event: 'notice', data: { text: 'hello' } });
        assert.deepEqual(await notice, { text: 'hello' });
      },
    );
  });

  test('ack timeout rejects with TIMEOUT', async () => {
    await withClient({ onFrame: (_conn, frame) => frame.event === 'slow' }, { timeoutMs: 100 }, async (_s, client) => {
      client.connect();
      await next(client, 'connected');
      const started = Date.now();
      await assert.rejects(client.emit('slow', null), { code: 'TIMEOUT' });
      assert.ok(Date.now() - started >= 90);
    });
  });

  test('a publish answered OUTCOME_UNKNOWN is re-sent with the same id (UNAVAILABLE after it too) until acked', async () => {
    const ids: string[] = [];
    const replies = ['OUTCOME_UNKNOWN', 'UNAVAILABLE'];
    await withClient(
      {
        onFrame(conn, frame) {
          if (frame.event !== 'publish') return false;
          ids.push(frame.id!);
          const code = replies.shift();
          if (code) conn.send({ event: 'error', id: frame.id, data: { code, message: code } });
          else conn.send({ event: 'ack', id: frame.id, data: { offset: 7, epoch: 'e1' } });
          return true;
        },
      },
      {},
      async (_s, client) => {
        client.connect();
        await next(client, 'connected');
        assert.deepEqual(await client.publish('chat:a', 'hi'), { offset: 7, epoch: 'e1' });
        assert.equal(ids.length, 3);
        assert.equal(new Set(ids).size, 1, 'every attempt carries the same id (the idempotency key)');
      },
    );
  });

  test('a publish whose outcome stays unknown rejects with OUTCOME_UNKNOWN at its timeout, never with UNAVAILABLE', async () => {
    let first = true;
    await withClient(
      {
        onFrame(conn, frame) {
          if (frame.event !== 'publish') return false;
          const code = first ? 'OUTCOME_UNKNOWN' : 'UNAVAILABLE';
          first = false;
          conn.send({ event: 'error', id: frame.id, data: { code, message: code } });
          return true;
        },
      },
      { timeoutMs: 700 },
      async (_s, client) => {
        client.connect();
        await next(client, 'connected');
        await assert.rejects(client.publish('chat:a', 'hi'), { code: 'OUTCOME_UNKNOWN' });
        await assert.rejects(client.publish('chat:a', 'again'), { code: 'UNAVAILABLE' }, 'a plain UNAVAILABLE is not retried');
      },
    );
  });

  test('batched frames are split on newline and handled in order', async () => {
    await withClient({}, {}, async (server, client) => {
      client.connect();
      await next(client, 'connected');
      const sub = client.subscribe('chat:a');
      await next(sub, 'subscribed');
      const got: unknown[] = [];
      sub.on('message', (m) => got.push(m.data));
      const third = next(sub, 'message', 2000, (m) => m.offset === 3);
      (await server.connection(1)).send(
        { event: 'message', data: { channel: 'chat:a', offset: 1, epoch: 'e1', time: 1, data: 'a' } },
        { event: 'message', data: { channel: 'chat:a', offset: 2, epoch: 'e1', time: 1, data: 'b' } },
        { event: 'message', data: { channel: 'chat:a', offset: 2, epoch: 'e1', time: 1, data: 'dup' } },
        { event: 'message', data: { channel: 'chat:a', offset: 3, epoch: 'e1', time: 1, data: 'c' } },
      );
      await third;
      assert.deepEqual(got, ['a', 'b', 'c']);
    });
  });

  test('dropped socket: reconnect with backoff, resubscribe with since, retry a publish with the same id', async () => {
    let dropPublish = true;
    await withClient(
      {
        onFrame(conn, frame) {
          if (frame.event === 'publish' && dropPublish) {
            dropPublish = false;
            conn.ws.terminate(); // the publish was received but never acked
            return true;
          }
          return false;
        },
      },
      {},
      async (server, client) => {
        client.connect();
        await next(client, 'connected');
        const sub = client.subscribe('chat:a');
        await next(sub, 'subscribed');
        const conn1 = await server.connection(1);
        await conn1.next('subscribe');
        const delivered = next(sub, 'message');
        conn1.send({ event: 'message', data: { channel: 'chat:a', offset: 7, epoch: 'e1', time: 1, data: 'x' } });
        assert.equal((await delivered).offset, 7);

        const disconnected = next(client, 'disconnected');
        const reconnecting = next(client, 'connecting');
        const resubscribed = next(sub, 'subscribed');
        const published = client.publish('chat:a', { text: 'hi' });
        const first = await conn1.next('publish');
        const drop = await disconnected;
        assert.equal(drop.reconnect, true);
        assert.equal(client.state, ClientState.CONNECTING);
        assert.equal(sub.state, SubscriptionState.SUBSCRIBING);
        const { delayMs } = await reconnecting;
        assert.ok(delayMs >= 0 && delayMs < 10, `first reconnect delay ${delayMs} < min`);

        const conn2 = await server.connection(2);
        const resubscribe = await conn2.next('subscribe');
        assert.deepEqual(resubscribe.data, { channel: 'chat:a', since: { offset: 7, epoch: 'e1' } });
        const retry = await conn2.next('publish');
        assert.equal(retry.id, first.id);
        assert.deepEqual(retry.data, first.data);
        assert.deepEqual(await published, { offset: 1, epoch: 'e1' });
        assert.equal((await resubscribed).recovered, true);
        assert.equal(sub.state, SubscriptionState.SUBSCRIBED);
      },
    );
  });

  test('publishes made while connecting are queued, sent after connected; overflow rejects QUEUE_FULL', async () => {
    await withClient({}, { maxQueuedPublishes: 2 }, async (server, client) => {
      await assert.rejects(client.publish('chat:a', 0), { code: 'DISCONNECTED' }); // not started
      client.connect();
      const p1 = client.publish('chat:a', 1);
      const p2 = client.publish('chat:a', 2);
      await assert.rejects(client.publish('chat:a', 3), { code: 'QUEUE_FULL' });
      await assert.rejects(client.publish('chat:a', 4, { ephemeral: true }), { code: 'DISCONNECTED' });
      assert.equal(client.queuedPublishes, 2);
      assert.deepEqual(await p1, { offset: 1, epoch: 'e1' });
      assert.deepEqual(await p2, { offset: 2, epoch: 'e1' });
      const conn = await server.connection(1);
      assert.deepEqual((await conn.next('publish')).data, { channel: 'chat:a', data: 1 });
    });
  });

  test('a queued publish expires after maxQueuedAgeMs with QUEUE_FULL', async () => {
    await withClient({ connected: false }, { maxQueuedAgeMs: 50, timeoutMs: 5000 }, async (_server, client) => {
      client.connect();
      await assert.rejects(client.publish('chat:a', 1), { code: 'QUEUE_FULL' });
      assert.equal(client.queuedPublishes, 0);
    });
  });

  test('close code 4500: no reconnect, pending requests reject with DISCONNECTED', async () => {
    await withClient({ onFrame: (_c, frame) => frame.event === 'hang' }, {}, async (server, client) => {
      client.connect();
      await next(client, 'connected');
      const pending = client.emit('hang', null);
      const conn = await server.connection(1);
      await conn.next('hang');
      const disconnected = next(client, 'disconnected');
      conn.ws.close(4500, 'banned');
      assert.deepEqual(await disconnected, { code: 4500, reason: 'banned', reconnect: false });
      assert.equal(client.state, ClientState.DISCONNECTED);
      await assert.rejects(pending, { code: 'DISCONNECTED' });
      await assert.rejects(client.emit('x', null), { code: 'DISCONNECTED' });
      assert.equal(server.connections.length, 1);
    });
  });

  test('a disconnect frame retryAfterMs sets the reconnect delay (graceful shutdown 1001)', async () => {
    await withClient({}, { minReconnectDelayMs: 1000, maxReconnectDelayMs: 1000 }, async (server, client) => {
      client.connect();
      await next(client, 'connected');
      const conn = await server.connection(1);
      const connecting = next(client, 'connecting');
      conn.send({ event: 'disconnect', data: { code: 1001, reason: 'shutdown', reconnect: true, retryAfterMs: 5 } });
      conn.ws.close(1001, 'shutdown');
      assert.equal((await connecting).delayMs, 5);
      await next(client, 'connected');
      assert.equal(server.connections.length, 2);
    });
  });

  test('connect() while waiting out a reconnect delay reconnects at once', async () => {
    await withClient({}, { minReconnectDelayMs: 60000, maxReconnectDelayMs: 60000, random: () => 0.999 }, async (server, client) => {
      client.connect();
      await next(client, 'connected');
      const conn = await server.connection(1);
      const connecting = next(client, 'connecting');
      conn.ws.close(4000, 'drop');
      assert.ok((await connecting).delayMs > 1000, 'a long delay is pending');
      client.connect();
      await next(client, 'connected');
      assert.equal(server.connections.length, 2);
    });
  });

  test('a silent server is detected (pingIntervalMs + pingTimeoutMs / 3) and the client reconnects', async () => {
    await withClient({ connected: { pingIntervalMs: 40, pingTimeoutMs: 30 } }, {}, async (server, client) => {
      client.connect();
      await next(client, 'connected');
      const started = Date.now();
      const drop = await next(client, 'disconnected');
      assert.equal(drop.code, 3002);
      assert.equal(drop.reconnect, true);
      assert.ok(Date.now() - started >= 45, 'not before the limit');
      await next(client, 'connected');
      assert.equal(server.connections.length, 2);
    });
  });

  test('a gap is recovered from history in order; recovered:false reaches the app', async () => {
    let recoveredFalse = false;
    await withClient(
      {
        onFrame(conn, frame) {
          const data = frame.data as Record<string, any>;
          if (frame.event === 'history') {
            assert.deepEqual(data.since, { offset: 1, epoch: 'e1' });
            const publications = [2, 3].map((offset) => ({ channel: 'chat:a', offset, epoch: 'e1', time: 1, data: offset }));
            conn.send({ event: 'ack', id: frame.id, data: { channel: 'chat:a', publications, offset: 4, epoch: 'e1' } });
            return true;
          }
          if (frame.event === 'subscribe' && recoveredFalse) {
            const ack = { channel: 'chat:a', offset: 50, epoch: 'e2', recovered: false, history: true, presence: true };
            conn.send({ event: 'ack', id: frame.id, data: ack });
            return true;
          }
          return false;
        },
      },
      {},
      async (server, client) => {
        client.connect();
        const sub = client.subscribe('chat:a');
        await next(sub, 'subscribed');
        const got: unknown[] = [];
        sub.on('message', (m) => got.push(m.offset));
        const fourth = next(sub, 'message', 2000, (m) => m.offset === 4);
        const conn = await server.connection(1);
        conn.send(
          { event: 'message', data: { channel: 'chat:a', offset: 1, epoch: 'e1', time: 1, data: 1 } },
          { event: 'message', data: { channel: 'chat:a', offset: 4, epoch: 'e1', time: 1, data: 4 } },
        );
        await fourth;
        assert.deepEqual(got, [1, 2, 3, 4]);
        assert.deepEqual(sub.position, { offset: 4, epoch: 'e1' });

        recoveredFalse = true;
        const failed = next(sub, 'recovery-failed');
        conn.ws.terminate();
        assert.deepEqual(await failed, { channel: 'chat:a', position: { offset: 50, epoch: 'e2' } });
        assert.equal(sub.state, SubscriptionState.SUBSCRIBED);
      },
    );
  });

  test('live messages right behind the subscribe ack (same read) move the position: no duplicate later', async () => {
    const pub = (offset: number) => ({ event: 'message', data: { channel: 'chat:a', offset, epoch: 'e1', time: 1, data: offset } });
    const histories: unknown[] = [];
    await withClient(
      {
        onFrame(conn, frame) {
          if (frame.event === 'subscribe') {
            // The ack and the next live publication arrive in one WebSocket message (one read).
            const ack = { channel: 'chat:a', offset: 5, epoch: 'e1', history: true, presence: true };
            conn.send({ event: 'ack', id: frame.id, data: ack }, pub(6));
            return true;
          }
          if (frame.event === 'history') {
            histories.push(frame.data);
            const publications = [6, 7].map((offset) => pub(offset).data);
            conn.send({ event: 'ack', id: frame.id, data: { channel: 'chat:a', publications, offset: 7, epoch: 'e1' } });
            return true;
          }
          return false;
        },
      },
      {},
      async (server, client) => {
        client.connect();
        const sub = client.subscribe('chat:a');
        const got: unknown[] = [];
        sub.on('message', (m) => got.push(m.offset));
        const seventh = next(sub, 'message', 2000, (m) => m.offset === 7);
        await next(sub, 'subscribed');
        (await server.connection(1)).send(pub(7));
        await seventh;
        assert.deepEqual(got, [6, 7]);
        assert.deepEqual(histories, [], 'no gap was seen, so no history fetch');
        assert.deepEqual(sub.position, { offset: 7, epoch: 'e1' });
      },
    );
  });

  test('server-side subscriptions from connected get Subscription objects', async () => {
    const personal = { channel: 'user:ada', offset: 0, epoch: 'u1', history: true, presence: false };
    await withClient({ connected: { subscriptions: [personal] } }, {}, async (server, client) => {
      client.connect();
      await next(client, 'connected');
      const sub = client.getSubscription('user:ada');
      assert.ok(sub !== undefined);
      assert.equal(sub.state, SubscriptionState.SUBSCRIBED);
      assert.equal(sub.serverSide, true);
      const message = next(sub, 'message');
      const stray = next(client, 'message');
      const conn = await server.connection(1);
      conn.send(
        { event: 'message', data: { channel: 'user:ada', offset: 1, epoch: 'u1', time: 1, data: 'ping' } },
        { event: 'message', data: { channel: 'chat:none', offset: 1, epoch: 'e1', time: 1, data: 'stray' } },
      );
      assert.equal((await message).data, 'ping');
      assert.equal((await stray).channel, 'chat:none');
      const unsubscribed = next(sub, 'unsubscribed');
      conn.send({ event: 'unsubscribed', data: { channel: 'user:ada', reason: 'admin' } });
      assert.deepEqual(await unsubscribed, { channel: 'user:ada', reason: 'admin' });
      assert.ok(!conn.frames.some((f) => f.event === 'subscribe'), 'server-side subscriptions are not resubscribed');
    });
  });

  test('typing: one start per interval, automatic stop after the timeout', async () => {
    await withClient({}, {}, async (server, client) => {
      client.connect();
      const sub = client.subscribe('chat:a', { typingIntervalMs: 10_000, typingTimeoutMs: 30 });
      await next(sub, 'subscribed');
      const conn = await server.connection(1);
      sub.startTyping();
      sub.startTyping();
      const start = await conn.next('publish');
      assert.deepEqual(start.data, { channel: 'chat:a', data: { type: 'typing', typing: true }, ephemeral: true });
      const stop = await conn.next('publish');
      assert.deepEqual(stop.data, { channel: 'chat:a', data: { type: 'typing', typing: false }, ephemeral: true });
      assert.equal(conn.frames.filter((f) => f.event === 'publish').length, 0);
    });
  });

  test('close() stops for good and rejects queued publishes with DISCONNECTED', async () => {
    const server = await fakeServer({ connected: false });
    const client = makeClient(server);
    try {
      client.connect();
      const queued = client.publish('chat:a', 1);
      client.close();
      await assert.rejects(queued, { code: 'DISCONNECTED' });
      assert.equal(client.state, ClientState.DISCONNECTED);
    } finally {
      await server.close();
    }
  });

  test('token refresh before expiry uses getToken; reconnects ask getToken again', async () => {
    const clock = 1_000_000;
    let issued = 0;
    await withClient(
      { connected: { expiresAt: clock + 100 } },
      { now: () => clock, getToken: async () => `tok${++issued + 1}` },
      async (server, client) => {
        client.connect();
        await next(client, 'connected');
        const conn1 = await server.connection(1);
        assert.equal(conn1.url, '/ws?token=tok'); // the first connect uses options.token
        const refresh = await conn1.next('refresh');
        assert.deepEqual(refresh.data, { token: 'tok2' });
        conn1.ws.terminate();
        const conn2 = await server.connection(2);
        assert.equal(conn2.url, '/ws?token=tok3');
      },
    );
  });
});
