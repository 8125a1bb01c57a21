/**
 * The delivery contract end to end (DESIGN.md "Delivery contract"): the REAL client against the
 * REAL server, sockets dropped abruptly at random points while a publisher keeps publishing.
 * Every subscriber must get every publication exactly once and in order. Also: offline publishes
 * are queued and delivered once, an unacknowledged publish re-sent after a drop is applied once,
 * and a live gap (a delivery the server skipped) is recovered by the client from history.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient, type MessageData, type Subscription } from '../src/client/index.js';
import { signToken, TestSocket, type TestServer, withServer, until, nextEvent } from './helpers.js';

/** Clients made by the current test: closed at its end whatever happens (else they reconnect forever). */
const openClients = new Set<ChorusClient>();

/** A `ws` WebSocket class that remembers the last socket it made, so a test can kill it. */
function trackedWebSocket() {
  const holder: { current: WebSocket | undefined; made: number } = { current: undefined, made: 0 };
  class Tracked extends WebSocket {
    constructor(url: string) {
      super(url);
      holder.current = this;
      holder.made++;
    }
  }
  return { Tracked, holder };
}

/** A seeded PRNG so a failure can be replayed (the seed is printed in the assertion messages). */
function prng(seed: number) {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
}

interface Subscriber {
  name: string;
  client: ChorusClient;
  sub: Subscription<{ i: number }>;
  holder: { current: WebSocket | undefined; made: number };
  received: MessageData<{ i: number }>[];
  recoveryFailed: number;
  errors: Error[];
}

async function startSubscriber(s: TestServer, name: string, channel: string): Promise<Subscriber> {
  const { Tracked, holder } = trackedWebSocket();
  const client = new ChorusClient({
    url: s.wsUrl,
    token: await signToken(name),
    WebSocket: Tracked,
    minReconnectDelayMs: 5,
    maxReconnectDelayMs: 20,
    timeoutMs: 5000,
  });
  openClients.add(client);
  const errors: Error[] = [];
  client.on('error', (err) => errors.push(err));
  client.connect();
  const sub = client.subscribe<{ i: number }>(channel);
  const subscriber: Subscriber = { name, client, sub, holder, received: [], recoveryFailed: 0, errors };
  sub.on('message', (m) => subscriber.received.push(m));
  sub.on('recovery-failed', () => subscriber.recoveryFailed++);
  sub.on('error', (err) => errors.push(err));
  await nextEvent(sub, 'subscribed');
  return subscriber;
}

/** Drop a client's connection abruptly: destroy its TCP socket, or terminate it server-side. */
function drop(s: TestServer, subscriber: Subscriber, serverSide: boolean): void {
  if (serverSide) {
    const id = subscriber.client.connectedData?.client;
    const connection = [...s.chorus.connections].find((c) => c.id === id);
    assert.ok(connection, `${subscriber.name}: server connection ${id} found`);
    connection.terminate(1011, 'test drop');
  } else {
    const socket = (subscriber.holder.current as any)?._socket;
    assert.ok(socket, `${subscriber.name}: client socket exists`);
    socket.destroy();
  }
}

function assertExactlyOnceInOrder(subscriber: Subscriber, n: number, epoch: string, seed: number): void {
  const offsets = subscriber.received.map((m) => m.offset);
  const missing: number[] = [];
  const seen = new Set<number>();
  const duplicates: number[] = [];
  for (const o of offsets) {
    if (seen.has(o!)) duplicates.push(o!);
    seen.add(o!);
  }
  for (let i = 1; i <= n; i++) if (!seen.has(i)) missing.push(i);
  const where = `${subscriber.name} (seed ${seed})`;
  assert.deepEqual(duplicates, [], `${where}: duplicates`);
  assert.deepEqual(missing.slice(0, 20), [], `${where}: missing (${missing.length})`);
  assert.equal(subscriber.received.length, n, `${where}: count`);
  subscriber.received.forEach((m, k) => {
    if (m.offset !== k + 1 || m.data.i !== k + 1 || m.epoch !== epoch) {
      assert.fail(`${where}: message #${k} is ${JSON.stringify(m)}, expected offset and i ${k + 1}`);
    }
  });
  assert.equal(subscriber.recoveryFailed, 0, `${where}: recovery-failed events`);
}

describe('reconnects under a continuous publisher', () => {
  test('3 real clients, 100 abrupt drops each at random points: every publication exactly once, in order', async () => {
    const seed = Number(process.env.CHORUS_TEST_SEED ?? Date.now() % 1_000_000);
    const random = prng(seed);
    const DROPS = 100;
    const SUBSCRIBERS = 3;
    const started = Date.now();
    await withServer({}, async (s) => {
      const subscribers: Subscriber[] = [];
      for (let k = 0; k < SUBSCRIBERS; k++) subscribers.push(await startSubscriber(s, `sub${k}`, 'chat:stream'));
      for (const x of subscribers) assert.equal(x.sub.position?.offset, 0);

      // The publisher: small bursts every millisecond or so, until told to stop.
      let published = 0;
      let epoch = '';
      let stop = false;
      const publisher = (async () => {
        while (!stop && Date.now() - started < 40000) {
          const burst = 1 + Math.floor(random() * 4);
          for (let b = 0; b < burst; b++) {
            const result = await s.chorus.publish('chat:stream', { i: published + 1 });
            published++;
            assert.equal(result.offset, published, 'the only publisher: offsets follow the count');
            epoch = result.epoch!;
          }
          await new Promise((r) => setTimeout(r, random() < 0.9 ? 1 : 0));
        }
      })();

      const stats = { clientSide: 0, serverSide: 0, duringResubscribe: 0 };
      const dropLoop = async (x: Subscriber) => {
        for (let d = 0; d < DROPS; d++) {
          assert.ok(Date.now() - started < 40000, `${x.name}: drop loop within its time bound (seed ${seed})`);
          // A random point: right away, after a few ms, or after the next message arrives.
          const mode = random();
          if (mode < 0.3) {
            const count = x.received.length;
            await until(`${x.name}: a message`, () => x.received.length > count || stop, 5000);
          } else if (mode < 0.85) {
            await new Promise((r) => setTimeout(r, Math.floor(random() * 12)));
          }
          const resubscribed = nextEvent(x.sub, 'subscribed', 5000);
          const serverSide = random() < 0.5;
          drop(s, x, serverSide);
          stats[serverSide ? 'serverSide' : 'clientSide']++;
          if (random() < 0.2) {
            // Drop again the moment the next connection is up: the resubscribe (recovery) is in flight.
            await nextEvent(x.client, 'connected', 5000);
            drop(s, x, random() < 0.5);
            stats.duringResubscribe++;
          }
          await resubscribed;
        }
      };
      await Promise.all(subscribers.map(dropLoop));
      stop = true;
      await publisher;
      const n = published;
      assert.ok(n >= 500, `publisher ran: ${n} publications`);
      for (const x of subscribers) {
        await until(`${x.name} to catch up to ${n}`, () => (x.received.at(-1)?.offset ?? 0) >= n, 10000).catch(() => {});
        assertExactlyOnceInOrder(x, n, epoch, seed);
        assert.ok(x.holder.made >= DROPS + 1, `${x.name}: reconnected ${x.holder.made - 1} times`);
        assert.deepEqual(
          x.errors.filter((e) => (e as any).code !== undefined),
          [],
          `${x.name}: no coded errors (seed ${seed})`,
        );
      }
      const disconnects = s.logs.filter((l) => l.msg === 'disconnected').length;
      assert.ok(disconnects >= SUBSCRIBERS * DROPS, `server saw ${disconnects} disconnects`);
      assert.ok(stats.clientSide > 0 && stats.serverSide > 0 && stats.duringResubscribe > 0, JSON.stringify(stats));
      for (const x of subscribers) x.client.close();
    });
  });
});

describe('publishing across a drop', () => {
  test('a publish made while disconnected is queued and delivered after the reconnect, exactly once, in order', async () => {
    await withServer({}, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:q' });
      const x = await startSubscriber(s, 'ada', 'chat:q');
      const results: Array<Promise<unknown>> = [];
      let queuedWhileOffline = -1;
      let stateWhileOffline = '';
      const offline = nextEvent(x.client, 'disconnected', 5000).then(() => {
        for (let k = 1; k <= 3; k++) results.push(x.client.publish('chat:q', { i: k }));
        queuedWhileOffline = x.client.queuedPublishes;
        stateWhileOffline = x.client.state;
      });
      drop(s, x, false);
      await offline;
      assert.equal(stateWhileOffline, 'connecting');
      assert.equal(queuedWhileOffline, 3, 'held in the offline queue');
      const acks = (await Promise.all(results)) as Array<{ offset: number }>;
      assert.deepEqual(acks.map((a) => a.offset), [1, 2, 3]);
      assert.equal(x.client.queuedPublishes, 0);
      // A server publication after them proves nothing more is on the way.
      await s.chorus.publish('chat:q', { i: 4 });
      await watcher.find((f) => f.event === 'message' && (f.data as any).offset === 4);
      assert.deepEqual(watcher.messages('chat:q').map((m) => [m.offset, m.data.i]), [[1, 1], [2, 2], [3, 3], [4, 4]]);
      await until('ada got her own publications', () => x.received.length === 4);
      assert.deepEqual(x.received.map((m) => m.data.i), [1, 2, 3, 4]);
      const history = await watcher.ok('history', { channel: 'chat:q' });
      assert.deepEqual(history.publications.map((m: any) => m.offset), [1, 2, 3, 4]);
      x.client.close();
      watcher.close();
    });
  });

  test('a publish applied but not acknowledged (connection died first) is re-sent with the same id and applied once', async () => {
    let dropped = 0;
    let appliedOffset: number | undefined;
    await withServer(
      {},
      async (s) => {
        // The connection dies right after the publication was applied, before its ack is written.
        s.chorus.use({
          name: 'drop-before-ack',
          afterPublish(ctx) {
            if ((ctx.data as any)?.dropAck === true && ctx.connection && dropped === 0) {
              dropped++;
              appliedOffset = ctx.offset;
              ctx.connection.terminate(1011, 'dropped before the ack');
            }
          },
        });
        const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
        await watcher.ok('subscribe', { channel: 'chat:r' });
        const x = await startSubscriber(s, 'ada', 'chat:r');
        const reconnected = nextEvent(x.client, 'connected', 5000);
        const ack = (await x.client.publish('chat:r', { i: 1, dropAck: true })) as { offset: number };
        await reconnected;
        assert.equal(dropped, 1, 'the first attempt was applied and its connection dropped');
        assert.equal(ack.offset, appliedOffset, 'the retry got the original offset');
        assert.equal(ack.offset, 1);
        await s.chorus.publish('chat:r', { i: 2 });
        await watcher.find((f) => f.event === 'message' && (f.data as any).offset === 2);
        assert.deepEqual(watcher.messages('chat:r').map((m) => m.offset), [1, 2], 'applied once');
        await until('ada recovered both', () => x.received.length === 2);
        assert.deepEqual(x.received.map((m) => m.offset), [1, 2]);
        const disconnects = s.logs.filter((l) => l.msg === 'disconnected' && l.user === 'ada').map((l) => l.code);
        assert.deepEqual(disconnects, [1011]);
        x.client.close();
        watcher.close();
      },
    );
  });
});

describe('live gaps', () => {
  test('deliveries the server skipped for one connection are fetched from history by the client, in order', async () => {
    await withServer({}, async (s) => {
      const x = await startSubscriber(s, 'ada', 'chat:gap');
      const id = x.client.connectedData!.client;
      const random = prng(7);
      const skipped: number[] = [];
      const N = 200;
      for (let i = 1; i <= N; i++) {
        // Skip runs of 1-3 deliveries here and there (never the last one, which reveals the gap).
        const skip = i < N && (random() < 0.08 || skipped.at(-1) === i - 1 && random() < 0.5);
        if (skip) skipped.push(i);
        await s.chorus.publish('chat:gap', { i }, skip ? { exceptClient: id } : {});
        if (i % 5 === 0) await new Promise((r) => setImmediate(r)); // let live messages arrive during fetches
      }
      assert.ok(skipped.length >= 5, `skipped ${skipped.length}`);
      await until('all delivered', () => (x.received.at(-1)?.offset ?? 0) >= N, 5000).catch(() => {});
      assert.deepEqual(x.received.map((m) => m.offset), Array.from({ length: N }, (_, k) => k + 1));
      assert.deepEqual(x.received.map((m) => m.data.i), Array.from({ length: N }, (_, k) => k + 1));
      assert.equal(x.recoveryFailed, 0);
      assert.deepEqual(x.errors, []);
      x.client.close();
    });
  });
});
