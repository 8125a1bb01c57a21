import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { signToken, startServer, TestSocket, withTimeout } from './helpers.js';

describe('heartbeats (short clock)', () => {
  test('the server sends ping frames browsers can see, and WebSocket pings', async () => {
    const s = await startServer({ heartbeat: { intervalMs: 40, timeoutMs: 2000 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      assert.equal((a.frames[0]!.data as any).pingIntervalMs, 40);
      let wsPings = 0;
      a.ws.on('ping', () => wsPings++);
      await a.next((f) => f.event === 'ping', 2000);
      await a.next((f) => f.event === 'ping', 2000);
      assert.ok(wsPings >= 1, 'WebSocket-level pings are sent too');
      a.close();
    } finally {
      await s.close();
    }
  });

  test('a live client (auto pong) stays connected past the timeout', async () => {
    const s = await startServer({ heartbeat: { intervalMs: 30, timeoutMs: 150 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      let pings = 0;
      while (pings < 12) {
        await a.next((f) => f.event === 'ping', 2000);
        pings++;
      }
      assert.equal(a.closeCode, undefined);
      a.close();
    } finally {
      await s.close();
    }
  });

  test('a dead peer (no pong, no frames) is dropped after the timeout and leaves presence once', async () => {
    const s = await startServer({ heartbeat: { intervalMs: 30, timeoutMs: 150 } });
    try {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:hb' });
      const ws = new WebSocket(`${s.wsUrl}?token=${await signToken('zombie')}`, { autoPong: false });
      const zombie = new TestSocket(ws);
      await zombie.next((f) => f.event === 'connected');
      await zombie.ok('subscribe', { channel: 'chat:hb' });
      await watcher.find((f) => f.event === 'join' && (f.data as any).user === 'zombie');
      // From now on the zombie neither answers pings nor sends anything.
      const leave = await watcher.next((f) => f.event === 'leave', 3000);
      assert.deepEqual(leave.data, { channel: 'chat:hb', user: 'zombie' });
      await withTimeout(zombie.closed, 3000, 'zombie closed');
      const presence = await watcher.ok('presence', { channel: 'chat:hb' });
      assert.deepEqual(presence.members.map((m: any) => m.user), ['watcher']);
      const log = s.logs.find((l) => l.msg === 'disconnected' && l.user === 'zombie');
      assert.equal(log?.code, 4002);
      assert.equal(watcher.frames.filter((f) => f.event === 'leave').length, 1);
      watcher.close();
    } finally {
      await s.close();
    }
  });

  test('tick() with an injected clock: timeout boundary is exact', async () => {
    const s = await startServer({ heartbeat: { intervalMs: 1_000_000, timeoutMs: 2_000_000 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const conn = [...s.chorus.connections][0]!;
      s.chorus.tick(conn.lastSeen + 2_000_000);
      assert.equal(conn.closing, false, 'exactly at the timeout: still alive');
      s.chorus.tick(conn.lastSeen + 2_000_001);
      assert.equal(conn.closing, true);
      assert.equal(conn.closeCode, 4002);
      await a.closed;
    } finally {
      await s.close();
    }
  });
});
