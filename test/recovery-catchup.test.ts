/**
 * Recovery catch-up (subscribe with `since`): what a subscriber receives between its position
 * and going live, through the server's public API. The engine is a test-bus node whose history
 * read is wrapped so a publication can be made at an exact point of the catch-up: before the
 * read (it is in the recovered page AND arrives live) or after it (it arrives live only).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { TestBus, type BusNode } from '../src/engines/bus/index.js';
import type { HistoryReadOptions } from '../src/engines/types.js';
import type { Frame } from '../src/protocol/index.js';
import { signToken, startServer, TestSocket, until, type TestServer } from './helpers.js';

const CHANNEL = 'chat:catchup';
let bus: TestBus | undefined;
let server: TestServer | undefined;
const sockets: TestSocket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.ws.terminate();
  await server?.close();
  await bus?.close();
  server = undefined;
  bus = undefined;
});

async function setup(): Promise<{ node: BusNode; server: TestServer; epoch: string }> {
  bus = new TestBus();
  const node = bus.node('a');
  server = await startServer({ engine: node, namespaces: [{ pattern: 'chat:*', historySize: 100, recoveryMaxMissed: 3 }] });
  // A first subscriber keeps the node subscribed to the channel, as on a busy node.
  const watcher = await socket(server);
  await watcher.ok('subscribe', { channel: CHANNEL });
  for (let i = 1; i <= 4; i++) await server.chorus.publish(CHANNEL, { i });
  await until('the watcher is live', () => watcher.messages(CHANNEL).length === 4, 5000);
  return { node, server, epoch: (await node.position(CHANNEL)).epoch };
}

async function socket(s: TestServer): Promise<TestSocket> {
  const ws = await TestSocket.connect(s.wsUrl, await signToken('reader'));
  sockets.push(ws);
  return ws;
}

/** Run `during` once, around the next recovery read (before or after the real read). */
function aroundNextRead(node: BusNode, when: 'before' | 'after', during: () => Promise<unknown>): void {
  const read = node.read.bind(node);
  let armed = true;
  node.read = async (channel: string, options: HistoryReadOptions) => {
    if (!armed || options.since === undefined) return read(channel, options);
    armed = false;
    if (when === 'before') await during();
    const result = await read(channel, options);
    if (when === 'after') await during();
    return result;
  };
}

/** The reader's frames for the channel: message offsets and the ack, in wire order. */
function order(s: TestSocket): Array<number | 'ack'> {
  return s.frames
    .filter((f: Frame) => (f.event === 'message' && (f.data as any).channel === CHANNEL) || (f.event === 'ack' && (f.data as any)?.channel === CHANNEL))
    .map((f) => (f.event === 'ack' ? 'ack' : (f.data as any).offset));
}

describe('recovery catch-up', () => {
  test('the missed publications come before the ack, in order; later ones live after it', async () => {
    const { server, epoch } = await setup();
    const reader = await socket(server);
    const ack = await reader.ok('subscribe', { channel: CHANNEL, since: { offset: 2, epoch } });
    assert.equal(ack.recovered, true);
    assert.deepEqual([ack.offset, ack.epoch], [4, epoch]);
    await server.chorus.publish(CHANNEL, { i: 5 });
    await until('live', () => reader.messages(CHANNEL).length === 3, 5000);
    assert.deepEqual(order(reader), [3, 4, 'ack', 5]);
  });

  test('a publication made during the catch-up and already in the recovered page is not sent twice', async () => {
    const { node, server, epoch } = await setup();
    aroundNextRead(node, 'before', () => server.chorus.publish(CHANNEL, { i: 5 }));
    const reader = await socket(server);
    const ack = await reader.ok('subscribe', { channel: CHANNEL, since: { offset: 2, epoch } });
    assert.deepEqual([ack.recovered, ack.offset], [true, 5]);
    await server.chorus.publish(CHANNEL, { i: 6 });
    await until('live', () => reader.messages(CHANNEL).some((m) => m.offset === 6), 5000);
    assert.deepEqual(order(reader), [3, 4, 5, 'ack', 6]);
  });

  test('a publication made after the recovery read is held back and sent right after the ack', async () => {
    const { node, server, epoch } = await setup();
    aroundNextRead(node, 'after', () => server.chorus.publish(CHANNEL, { i: 5 }));
    const reader = await socket(server);
    const ack = await reader.ok('subscribe', { channel: CHANNEL, since: { offset: 2, epoch } });
    assert.deepEqual([ack.recovered, ack.offset], [true, 4]);
    await until('live', () => reader.messages(CHANNEL).some((m) => m.offset === 5), 5000);
    assert.deepEqual(order(reader), [3, 4, 'ack', 5]);
  });

  test('more missed than recoveryMaxMissed, or another epoch: recovered:false at the top, nothing replayed', async () => {
    const { server, epoch } = await setup();
    const far = await socket(server);
    const tooMany = await far.ok('subscribe', { channel: CHANNEL, since: { offset: 0, epoch } });
    assert.deepEqual([tooMany.recovered, tooMany.offset, tooMany.epoch], [false, 4, epoch]);
    const other = await socket(server);
    const wrongEpoch = await other.ok('subscribe', { channel: CHANNEL, since: { offset: 3, epoch: 'not-the-epoch' } });
    assert.deepEqual([wrongEpoch.recovered, wrongEpoch.offset], [false, 4]);
    assert.deepEqual([...order(far), ...order(other)], ['ack', 'ack']);
  });

  test('at the top already: recovered:true, nothing replayed', async () => {
    const { server, epoch } = await setup();
    const reader = await socket(server);
    const ack = await reader.ok('subscribe', { channel: CHANNEL, since: { offset: 4, epoch } });
    assert.deepEqual([ack.recovered, ack.offset], [true, 4]);
    assert.deepEqual(order(reader), ['ack']);
  });

  test(
    'a node whose live stream lags behind history does not send the recovered publications again',
    async () => {
      const bus2 = (bus = new TestBus());
      const node = bus2.node('a');
      server = await startServer({ engine: node, namespaces: [{ pattern: 'chat:*', historySize: 100, recoveryMaxMissed: 100 }] });
      const watcher = await socket(server);
      await watcher.ok('subscribe', { channel: CHANNEL });
      for (let i = 1; i <= 2; i++) await server.chorus.publish(CHANNEL, { i });
      bus2.delay({ to: 'a', channel: CHANNEL, ms: 50, count: 2 });
      for (let i = 3; i <= 4; i++) await server.chorus.publish(CHANNEL, { i });
      const reader = await socket(server);
      await reader.ok('subscribe', { channel: CHANNEL, since: { offset: 2, epoch: (await node.position(CHANNEL)).epoch } });
      await until('the delayed copies landed', () => bus2.settled && watcher.messages(CHANNEL).length === 4, 5000);
      // A later publication still goes out live: only copies at or below the acked position are dropped.
      await server.chorus.publish(CHANNEL, { i: 5 });
      await until('live', () => reader.messages(CHANNEL).some((m) => m.offset === 5), 5000);
      assert.deepEqual(order(reader), [3, 4, 'ack', 5]);
    },
  );
});
