import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import { signToken, startServer, TestSocket, withTimeout } from './helpers.js';

/** A small deterministic PRNG (mulberry32) so a failure can be replayed with its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomValue(random: () => number, depth = 0): unknown {
  const pick = Math.floor(random() * (depth > 2 ? 6 : 9));
  switch (pick) {
    case 0: return null;
    case 1: return random() < 0.5;
    case 2: return Math.floor(random() * 2 ** 53) * (random() < 0.5 ? -1 : 1);
    case 3: return random() * 1e308;
    case 4: return ['chat:x', '', 'user:ada', 'x'.repeat(300), '🙂', 'nope:1', '../../etc'][Math.floor(random() * 7)];
    case 5: return { offset: Math.floor(random() * 10) - 2, epoch: random() < 0.5 ? 'e' : 5 };
    case 6: return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1));
    default: {
      const obj: Record<string, unknown> = {};
      const keys = ['channel', 'data', 'since', 'snapshot', 'limit', 'reverse', 'token', 'ephemeral', '__proto__', 'constructor'];
      for (let i = 0; i < 1 + Math.floor(random() * 4); i++) obj[keys[Math.floor(random() * keys.length)]!] = randomValue(random, depth + 1);
      return obj;
    }
  }
}

describe('bad peers never crash the server or affect others', () => {
  test('2,000 random frames: every frame with an id gets exactly one reply; a bystander is unaffected', async () => {
    const seed = Number(process.env.CHORUS_TEST_SEED ?? Date.now() % 1_000_000);
    const random = rng(seed);
    const s = await startServer({ limits: { maxFaults: 1_000_000, ratePerSecond: 1_000_000, rateBurst: 1_000_000 } });
    try {
      const bystander = await TestSocket.connect(s.wsUrl, await signToken('bystander'));
      await bystander.ok('subscribe', { channel: 'chat:calm' });
      const fuzzer = await TestSocket.connect(s.wsUrl, await signToken('fuzzer'));
      const events = ['subscribe', 'unsubscribe', 'publish', 'history', 'presence', 'refresh', 'ping', 'pong', 'ack', 'error', 'message', 'whatever', 'connected'];
      const ids: string[] = [];
      for (let i = 0; i < 2000; i++) {
        const id = `f${i}`;
        const frame: Record<string, unknown> = { event: events[Math.floor(random() * events.length)], data: randomValue(random) };
        const withId = random() < 0.8;
        if (withId) frame.id = id;
        const truncated = random() < 0.05; // unparseable: no id to answer to
        if (withId && !truncated) ids.push(id);
        const text = truncated ? JSON.stringify(frame).slice(0, Math.floor(random() * 20)) : JSON.stringify(frame);
        fuzzer.send(text);
      }
      const last = ids[ids.length - 1]!;
      await fuzzer.find((f) => f.id === last, 20000);
      await fuzzer.ok('ping');
      const replies = new Map<string, number>();
      for (const f of fuzzer.frames) if (f.id !== undefined && (f.event === 'ack' || f.event === 'error')) replies.set(f.id, (replies.get(f.id) ?? 0) + 1);
      for (const id of ids) assert.equal(replies.get(id), 1, `frame ${id} got ${replies.get(id) ?? 0} replies (seed ${seed})`);
      for (const f of fuzzer.frames.filter((f) => f.event === 'error')) {
        assert.notEqual((f.data as any).code, 'INTERNAL', `an INTERNAL error means a handler crashed: ${JSON.stringify(f)} (seed ${seed})`);
      }
      await s.chorus.publish('chat:calm', 'still here');
      await bystander.find((f) => f.event === 'message' && (f.data as any).data === 'still here');
      assert.equal(bystander.closeCode, undefined);
      fuzzer.close();
      bystander.close();
    } finally {
      await s.close();
    }
  });

  test('raw TCP abuse: garbage, half handshakes, a socket cut mid-frame', async () => {
    const s = await startServer();
    try {
      const bystander = await TestSocket.connect(s.wsUrl, await signToken('bystander'));
      const token = await signToken('raw');
      const attempts = [
        'GARBAGE\r\n\r\n',
        `GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`, // no key/version
        `GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\xfe\xff`, // cut mid-frame
        `GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x82\x85\x00\x00\x00\x00hello`, // unmasked-ish binary
        `GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello`, // unmasked client frame (protocol error)
        `GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x89\xff\x00\x00\x00\x00`, // oversized control frame
      ];
      for (const payload of attempts) {
        const socket = net.connect(s.port, '127.0.0.1');
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.write(payload, 'binary');
        // Either the server closes it, or we cut it ourselves after the first bytes back.
        await withTimeout(
          new Promise<void>((resolve) => {
            socket.once('data', () => resolve());
            socket.once('close', () => resolve());
          }),
          5000,
          'server reaction',
        );
        socket.destroy();
      }
      // Cut during the handshake, before any answer.
      const cut = net.connect(s.port, '127.0.0.1');
      cut.on('error', () => {});
      await once(cut, 'connect');
      cut.write(`GET /ws?token=${token} HTTP/1.1\r\nHost: x\r\n`);
      cut.destroy();
      await s.chorus.publish('user:bystander', 'alive');
      await bystander.find((f) => f.event === 'message' && (f.data as any).data === 'alive');
      assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
      // Every connection the abuse opened is gone; the per-user slots were released.
      await withTimeout(
        (async () => {
          while ([...s.chorus.connections].some((c) => c.user === 'raw')) await new Promise((r) => setTimeout(r, 5));
        })(),
        5000,
        'raw connections cleaned up',
      );
      for (let i = 0; i < 5; i++) (await TestSocket.connect(s.wsUrl, token)).close();
      bystander.close();
    } finally {
      await s.close();
    }
  });
});
