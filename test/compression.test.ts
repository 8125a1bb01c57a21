/**
 * permessage-deflate: negotiated only when the server has it on and the client offers it;
 * compressed bytes on the wire; the size limit applies to the decompressed message (a 50 MiB
 * bomb closes 1009 without the process's memory growing); 1,000 compressed connections.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { deflateRawSync } from 'node:zlib';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { resolveOptions } from '../src/server/options.js';
import { loadConfig } from '../src/cli/config.js';
import { SECRET, TestSocket, signToken, until, withServer, withTimeout } from './helpers.js';

function bytesRead(socket: TestSocket): number {
  return (socket.ws as unknown as { _socket: net.Socket })._socket.bytesRead;
}

describe('compression option', () => {
  test('off by default; true gives the defaults; each key checked at its edges', () => {
    assert.equal(resolveOptions({ auth: { secret: SECRET } }).compression, undefined);
    assert.deepEqual(resolveOptions({ auth: { secret: SECRET }, compression: true }).compression, {
      threshold: 1024,
      concurrency: 10,
      contextTakeover: false,
      level: 1,
      memLevel: 4,
      windowBits: 11,
    });
    assert.equal(resolveOptions({ auth: { secret: SECRET }, compression: { windowBits: 9, level: 9 } }).compression!.windowBits, 9);
    for (const bad of [{ windowBits: 8 }, { windowBits: 16 }, { level: 0 }, { concurrency: 0 }, { threshold: -1 }, { contextTakeover: 'yes' }, { nope: 1 }]) {
      assert.throws(() => resolveOptions({ auth: { secret: SECRET }, compression: bad as never }), /invalid option compression\./, JSON.stringify(bad));
    }
  });

  test('CHORUS_COMPRESSION=on|off and the config key compression', () => {
    const load = (env: Record<string, string>, file?: unknown) =>
      loadConfig(file ? ['--config', 'c.json'] : [], { CHORUS_JWT_SECRET: SECRET, ...env }, () => JSON.stringify(file));
    assert.equal(load({}).server.compression, undefined);
    assert.equal(load({ CHORUS_COMPRESSION: 'on' }).server.compression, true);
    assert.equal(load({ CHORUS_COMPRESSION: 'off' }, { compression: true }).server.compression, false);
    assert.deepEqual(load({ CHORUS_COMPRESSION: 'on' }, { compression: { level: 6 } }).server.compression, { level: 6 });
    assert.deepEqual(load({}, { compression: { threshold: 0 } }).server.compression, { threshold: 0 });
    assert.throws(() => load({ CHORUS_COMPRESSION: 'yes' }), /CHORUS_COMPRESSION/);
    assert.throws(() => load({}, { compression: { level: 10 } }), /compression\.level/);
  });
});

describe('permessage-deflate', () => {
  test('negotiated only when on and offered; compressed publications are a fraction of the bytes', async () => {
    const text = 'the quick brown fox jumps over the lazy dog '.repeat(500); // ~22 KB, compressible
    await withServer({ compression: true }, async (s) => {
      const on = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      const off = await TestSocket.connect(s.wsUrl, await signToken('bob'), { perMessageDeflate: false });
      assert.match(on.ws.extensions, /permessage-deflate/);
      assert.equal(off.ws.extensions, '');
      for (const socket of [on, off]) await socket.ok('subscribe', { channel: 'chat:z' });
      const before = [bytesRead(on), bytesRead(off)];
      await s.chorus.publish('chat:z', { text });
      await on.find((f) => f.event === 'message');
      await off.find((f) => f.event === 'message');
      const [compressed, plain] = [bytesRead(on) - before[0]!, bytesRead(off) - before[1]!];
      assert.ok(plain > text.length);
      assert.ok(compressed * 10 < plain, `compressed ${compressed} B vs plain ${plain} B`);
      assert.equal((on.messages('chat:z')[0] as any).data.text, text);
      on.close();
      off.close();
    });
    await withServer({}, async (s) => {
      const offered = await TestSocket.connect(s.wsUrl, await signToken('ada'));
      assert.equal(offered.ws.extensions, '', 'off by default even when the client offers it');
      offered.close();
    });
  });

  test('a 50 MiB compression bomb closes 1009 without the process memory growing', async () => {
    await withServer({ compression: true }, async (s) => {
      const token = await signToken('ada');
      const bomb = deflateRawSync(Buffer.alloc(50 * 1024 * 1024), { level: 9 });
      assert.ok(bomb.length < 100 * 1024, `the bomb is ${bomb.length} bytes compressed`);
      const socket = net.connect(s.port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write(
        `GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n',
      );
      let received = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
      const closed = new Promise((r) => socket.once('close', r));
      await until('upgraded', () => received.includes('\r\n\r\n'));
      const head = received.toString('latin1').split('\r\n\r\n')[0]!;
      assert.match(head, /sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover/i, 'no context takeover by default');
      const headEnd = received.indexOf('\r\n\r\n') + 4;
      // One masked binary frame, RSV1 set (compressed), 64-bit length, all-zero mask key.
      const header = Buffer.alloc(14);
      header[0] = 0xc2;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(bomb.length), 2);
      const baseline = process.memoryUsage();
      let peakRss = baseline.rss;
      let peakExternal = baseline.external + baseline.arrayBuffers;
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakExternal = Math.max(peakExternal, m.external + m.arrayBuffers);
      }, 1);
      socket.write(Buffer.concat([header, bomb]));
      await withTimeout(closed, 10_000, 'the server closing the connection');
      clearInterval(sampler);
      const frames = received.subarray(headEnd);
      const close = frames.indexOf(0x88);
      assert.ok(close >= 0, 'a close frame');
      assert.equal(frames.readUInt16BE(close + 2), 1009);
      const mib = 1024 * 1024;
      assert.ok(peakExternal - (baseline.external + baseline.arrayBuffers) < 16 * mib, `external grew ${(peakExternal - baseline.external - baseline.arrayBuffers) / mib} MiB`);
      assert.ok(peakRss - baseline.rss < 24 * mib, `rss grew ${(peakRss - baseline.rss) / mib} MiB`);
      const log = s.logs.find((l) => l.msg === 'limit hit' && l.limit === 'message_size');
      assert.ok(log, 'the limit hit is logged');
    });
  });

  test('1,000 compressed connections receive a fan-out; memory per connection stays bounded', { timeout: 120_000 }, async () => {
    const count = 1000;
    await withServer({ compression: true, logger: { level: 'silent' } as never }, async (s) => {
      const tokens = await Promise.all(Array.from({ length: count }, (_, i) => signToken(`z${i}`)));
      const baseline = process.memoryUsage().rss;
      const sockets: WebSocket[] = [];
      let received = 0;
      const payload = JSON.stringify({ text: 'compress me please '.repeat(200) });
      try {
        for (let start = 0; start < count; start += 100) {
          await Promise.all(
            tokens.slice(start, start + 100).map(
              (token) =>
                new Promise<void>((resolve, reject) => {
                  const ws = new WebSocket(`${s.wsUrl}?token=${token}`);
                  sockets.push(ws);
                  ws.on('error', reject);
                  ws.on('message', (data: Buffer) => {
                    const text = data.toString();
                    if (text.includes('"connected"')) ws.send(JSON.stringify({ event: 'subscribe', id: 's', data: { channel: 'chat:many' } }));
                    if (text.includes('"ack"')) resolve();
                    for (const frame of text.split('\n')) if (frame.startsWith('{"event":"message"')) received++;
                  });
                }),
            ),
          );
        }
        assert.ok(sockets.every((ws) => ws.extensions.includes('permessage-deflate')));
        const afterConnect = process.memoryUsage().rss;
        for (let i = 0; i < 3; i++) await s.chorus.publish('chat:many', JSON.parse(payload));
        await until('every delivery', () => received === 3 * count, 60_000);
        const afterFanout = process.memoryUsage().rss;
        const perConnection = (afterFanout - baseline) / count;
        // Client and server share this process: the figure covers both ends of each connection.
        console.log(
          `# 1000 compressed connections: rss +${((afterConnect - baseline) / 1048576).toFixed(1)} MiB after connect, ` +
            `+${((afterFanout - baseline) / 1048576).toFixed(1)} MiB after fan-out (${(perConnection / 1024).toFixed(1)} KiB per connection, both ends)`,
        );
        assert.ok(perConnection < 256 * 1024, `${perConnection} bytes per connection`);
      } finally {
        for (const ws of sockets) ws.terminate();
      }
    });
  });
});
