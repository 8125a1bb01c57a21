/**
 * The client's transport fallback: the WebSocket fails before opening, the client moves to the
 * HTTP streaming emulation and works as usual there (subscribe, publish, acks, recovery after the
 * stream is cut), and tries the WebSocket again after `websocketRetryMs`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient, type MessageData } from '../src/client/index.js';
import { TransportChooser } from '../src/client/transports.js';
import { nextEvent, signToken, until, withServer } from './helpers.js';

/** A WebSocket that never opens (blocked): close 1006 on the next tick. */
class BlockedWebSocket {
  readyState = 0;
  onopen: ((e: any) => void) | null = null;
  onmessage: ((e: any) => void) | null = null;
  onclose: ((e: any) => void) | null = null;
  onerror: ((e: any) => void) | null = null;
  static attempts = 0;
  constructor() {
    BlockedWebSocket.attempts++;
    setTimeout(() => {
      this.readyState = 3;
      this.onerror?.({ message: 'blocked' });
      this.onclose?.({ code: 1006, reason: '' });
    }, 1);
  }
  send(): void {
    throw new Error('not open');
  }
  close(): void {}
}

describe('transport choice', () => {
  test('two failures before connected move to the fallback, one there moves back; connected resets', () => {
    const chooser = new TransportChooser(['websocket', 'http-stream'], 2, 1000);
    const seen: string[] = [];
    for (let i = 0; i < 7; i++) {
      seen.push(chooser.current);
      chooser.failedBeforeConnected();
    }
    assert.deepEqual(seen, ['websocket', 'websocket', 'http-stream', 'websocket', 'websocket', 'http-stream', 'websocket']);
    chooser.failedBeforeConnected();
    assert.equal(chooser.current, 'http-stream');
    chooser.connected();
    assert.equal(chooser.onFallback, true);
    chooser.retryFirst();
    assert.equal(chooser.current, 'websocket');
    assert.throws(() => new TransportChooser([], 2, 1), TypeError);
    assert.throws(() => new TransportChooser(['websocket', 'websocket'], 2, 1), TypeError);
    assert.throws(() => new TransportChooser(['carrier-pigeon' as never], 2, 1), TypeError);
  });
});

describe('the client over the HTTP streaming fallback', () => {
  test('a blocked WebSocket falls back; subscribe, publish, acks and recovery after the stream is cut', async () => {
    await withServer({}, async (s) => {
      const client = new ChorusClient({ url: s.wsUrl, WebSocket: BlockedWebSocket as any, token: await signToken('ada'), minReconnectDelayMs: 10, maxReconnectDelayMs: 50 });
      try {
        client.connect();
        await nextEvent(client, 'connected', 10_000);
        assert.equal(client.transport, 'http-stream');
        assert.ok(BlockedWebSocket.attempts >= 2);
        const sub = client.subscribe<{ i: number; bytes?: Uint8Array }>('chat:fb');
        const got: Array<MessageData<{ i: number; bytes?: Uint8Array }>> = [];
        sub.on('message', (m) => void got.push(m));
        await nextEvent(sub, 'subscribed');
        const ack = await client.publish('chat:fb', { i: 0, bytes: new Uint8Array([9, 8]) });
        await until('own message', () => got.length === 1);
        assert.equal(got[0]!.offset, ack.offset);
        assert.deepEqual([...got[0]!.data.bytes!], [9, 8], 'binary as Uint8Array over the fallback too');
        // Cut the stream on the server: the client reconnects (on the fallback) and recovers.
        const [connection] = [...s.chorus.connections];
        connection!.terminate(1006, 'cut');
        for (let i = 1; i <= 5; i++) await s.chorus.publish('chat:fb', { i });
        await until('recovered', () => got.length === 6, 15_000);
        assert.deepEqual(got.map((m) => m.data.i), [0, 1, 2, 3, 4, 5]);
        assert.equal(client.transport, 'http-stream');
        assert.equal(client.state, 'connected');
      } finally {
        client.close();
      }
    });
  });

  test('tries the WebSocket again after websocketRetryMs and stays on it once it opens', async () => {
    await withServer({}, async (s) => {
      let blocked = true;
      class SometimesBlocked {
        constructor(url: string, protocols?: string | string[]) {
          return (blocked ? new BlockedWebSocket() : new WebSocket(url, protocols)) as never;
        }
      }
      const client = new ChorusClient({
        url: s.wsUrl,
        WebSocket: SometimesBlocked as any,
        token: await signToken('ada'),
        websocketRetryMs: 200,
        minReconnectDelayMs: 10,
        maxReconnectDelayMs: 50,
      });
      try {
        client.connect();
        await nextEvent(client, 'connected', 10_000);
        assert.equal(client.transport, 'http-stream');
        blocked = false;
        const retry = await nextEvent<{ code: number }>(client, 'disconnected', 5000);
        assert.equal(retry.code, 3004);
        await nextEvent(client, 'connected', 10_000);
        assert.equal(client.transport, 'websocket');
      } finally {
        client.close();
      }
    });
  });
});
