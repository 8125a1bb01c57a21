/**
 * Codecs end to end: subprotocol negotiation (the server answers only a subprotocol it speaks),
 * MessagePack frames and batching, binary in JSON (`{"$bin": base64}`), a 5 MB file through a
 * MessagePack and a JSON client on one channel, encode-once-per-codec, and MessagePack bodies
 * on the HTTP API.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, test } from 'node:test';
import { Packr, unpackMultiple } from 'msgpackr';
import WebSocket from 'ws';
import { ChorusClient, type MessageData } from '../src/client/index.js';
import {
  JSON_CODEC,
  binaryToJson,
  chooseSubprotocol,
  fromBase64,
  jsonToBinary,
  toBase64,
  type Frame,
} from '../src/protocol/index.js';
import { MSGPACK_CODEC } from '../src/protocol/msgpack.js';
import { API_KEY, nextEvent, signToken, withServer, withTimeout } from './helpers.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

/** A raw MessagePack WebSocket client: every binary message decoded with unpackMultiple. */
class MsgpackSocket {
  readonly frames: Frame[] = [];
  readonly messages: Frame[][] = [];
  private waiters: Array<{ match: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  textMessages = 0;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (!binary) {
        this.textMessages++;
        return;
      }
      const frames = unpackMultiple(data) as Frame[];
      this.messages.push(frames);
      for (const frame of frames) {
        this.frames.push(frame);
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) (w.match(frame) ? w.resolve(frame) : this.waiters.push(w));
      }
    });
    ws.on('error', () => {});
  }
  static async connect(url: string, token: string, protocols: string[] = ['chorus.v1.msgpack']): Promise<MsgpackSocket> {
    const socket = new MsgpackSocket(new WebSocket(`${url}?token=${token}`, protocols));
    await socket.next((f) => f.event === 'connected');
    return socket;
  }
  next(match: (f: Frame) => boolean, ms = 5000): Promise<Frame> {
    const found = this.frames.find(match);
    if (found) return Promise.resolve(found);
    return withTimeout(new Promise<Frame>((resolve) => this.waiters.push({ match, resolve })), ms, 'frame');
  }
  send(...frames: Frame[]): void {
    this.ws.send(Buffer.concat(frames.map((f) => packr.pack(f))));
  }
}

/** The raw handshake answer to an upgrade offering `protocols` (status line and headers). */
function rawUpgrade(port: number, token: string, protocols: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(
        `GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${protocols}\r\n\r\n`,
      );
    });
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(head.slice(0, end));
      }
    });
    socket.on('error', reject);
  });
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

describe('binary in JSON and base64', () => {
  test('base64 matches Node for every length 0..64 and random data', () => {
    for (let n = 0; n <= 64; n++) {
      const bytes = randomBytes(n);
      assert.equal(toBase64(bytes), bytes.toString('base64'));
      assert.deepEqual(Buffer.from(fromBase64(bytes.toString('base64'))), bytes);
    }
    const big = randomBytes(100_003);
    assert.equal(toBase64(big), big.toString('base64'));
  });

  test('Uint8Array <-> {"$bin"} anywhere, copying only what changes; bad base64 is BAD_REQUEST', () => {
    const plain = { a: [1, { b: 'x' }], c: null };
    assert.equal(binaryToJson(plain), plain, 'no binary: the same object');
    const value = { name: 'f', parts: [new Uint8Array([0, 1, 255])], nested: { deep: Buffer.from('hi') } };
    const json = binaryToJson(value) as any;
    assert.deepEqual(json, { name: 'f', parts: [{ $bin: 'AAH/' }], nested: { deep: { $bin: 'aGk=' } } });
    const back = jsonToBinary(JSON.parse(JSON.stringify(json))) as any;
    assert.deepEqual([...back.parts[0]], [0, 1, 255]);
    assert.deepEqual(Buffer.from(back.nested.deep).toString(), 'hi');
    assert.deepEqual(jsonToBinary({ $bin: 'AA==', other: 1 }), { $bin: 'AA==', other: 1 }, 'another key: not a marker');
    for (const bad of ['A', 'AAA', '@@@@', 'AA=A']) {
      assert.throws(() => binaryToJson({ $bin: bad }, true), (err: any) => err.code === 'BAD_REQUEST', bad);
    }
  });

  test('subprotocol choice: the first offered that Chorus speaks, else none', () => {
    assert.equal(chooseSubprotocol(['chorus.v1.msgpack', 'chorus.v1.json']), 'chorus.v1.msgpack');
    assert.equal(chooseSubprotocol(['mqtt', 'chorus.v1.json']), 'chorus.v1.json');
    assert.equal(chooseSubprotocol(['mqtt', 'chorus.v2.msgpack']), undefined);
    assert.equal(chooseSubprotocol([]), undefined);
  });
});

describe('codecs on the WebSocket', () => {
  test('the server answers only a subprotocol it speaks (no echo of an unknown offer)', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const unknown = await rawUpgrade(s.port, token, 'mqtt, chorus.v2.msgpack');
      assert.match(unknown, /^HTTP\/1\.1 101/);
      assert.doesNotMatch(unknown, /sec-websocket-protocol/i, 'nothing answered for protocols Chorus does not speak');
      const picked = await rawUpgrade(s.port, token, 'mqtt, chorus.v1.msgpack, chorus.v1.json');
      assert.match(picked, /\r\nsec-websocket-protocol: chorus\.v1\.msgpack/i);
      const json = await rawUpgrade(s.port, token, 'chorus.v1.json');
      assert.match(json, /\r\nsec-websocket-protocol: chorus\.v1\.json/i);
    });
  });

  test('chorus.v1.msgpack: binary frames both ways, MessagePack maps with the JSON keys; batches are concatenated values', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const a = await MsgpackSocket.connect(s.wsUrl, token);
      assert.equal(a.ws.protocol, 'chorus.v1.msgpack');
      const connected = a.frames[0]!;
      assert.equal((connected.data as any).user, 'ada');
      // Two requests in one binary message: two replies.
      a.send({ event: 'subscribe', id: 's1', data: { channel: 'chat:mp' } }, { event: 'ping', id: 'p1' });
      await a.next((f) => f.id === 's1' && f.event === 'ack');
      await a.next((f) => f.id === 'p1' && f.event === 'ack');
      // A fan-out burst arrives batched: several frames in one binary message.
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.chorus.publish('chat:mp', { i, bytes: new Uint8Array([i]) })));
      await a.next((f) => f.event === 'message' && (f.data as any).data.i === 19);
      const messages = a.frames.filter((f) => f.event === 'message').map((f) => f.data as any);
      assert.deepEqual(messages.map((m) => m.data.i), [...Array(20).keys()]);
      assert.ok(messages.every((m) => m.data.bytes instanceof Uint8Array && m.data.bytes[0] === m.data.i), 'binary arrives as MessagePack bin');
      assert.ok(a.messages.some((m) => m.length > 1), 'some message carries several frames');
      assert.equal(a.textMessages, 0);
      // A text message, and bytes that are not MessagePack, are BAD_FRAME errors.
      a.ws.send('{"event":"ping"}');
      const textError = await a.next((f) => f.event === 'error' && (f.data as any).event === 'text');
      assert.equal((textError.data as any).code, 'BAD_FRAME');
      for (const bytes of [Buffer.from([0xc1]), Buffer.from([0x92, 0x01]), packr.pack([1, 2])]) {
        const before = a.frames.length;
        a.ws.send(bytes);
        const bad = await a.next((f) => a.frames.indexOf(f) >= before && f.event === 'error');
        assert.equal((bad.data as any).code, 'BAD_FRAME', bytes.toString('hex'));
      }
      a.ws.close();
    });
  });

  test('a 5 MB file in chunks: byte-identical (sha256) at the MessagePack subscriber, decodable at the JSON one', async () => {
    await withServer({ limits: { maxQueuedBytes: 16 * 1024 * 1024 } }, async (s) => {
      const file = randomBytes(5 * 1024 * 1024);
      const chunkSize = 60_000; // one publish frame stays under maxMessageBytes (65536)
      const chunks = Math.ceil(file.length / chunkSize);
      const clients = await Promise.all(
        (['msgpack', 'json', 'msgpack'] as const).map(async (codec, i) => {
          const client = new ChorusClient({ url: s.wsUrl, WebSocket: WebSocket as any, token: await signToken(`u${i}`), codec });
          client.connect();
          await nextEvent(client, 'connected');
          return client;
        }),
      );
      const [msgpackSub, jsonSub, publisher] = clients as [ChorusClient, ChorusClient, ChorusClient];
      try {
        const received = new Map<string, Uint8Array[]>([
          ['msgpack', []],
          ['json', []],
        ]);
        const done = [msgpackSub, jsonSub].map((client, i) => {
          const sub = client.subscribe<{ seq: number; bytes: Uint8Array }>('chat:file');
          const list = received.get(i === 0 ? 'msgpack' : 'json')!;
          sub.on('message', (m: MessageData<{ seq: number; bytes: Uint8Array }>) => {
            assert.ok(m.data.bytes instanceof Uint8Array, 'the client hands binary over as Uint8Array');
            assert.equal(m.data.seq, list.length);
            list.push(m.data.bytes);
          });
          return nextEvent(sub, 'subscribed');
        });
        await Promise.all(done);
        // The publisher's chunks go out sequentially (each awaits its ack), like a file upload.
        for (let seq = 0; seq < chunks; seq++) {
          await publisher.publish('chat:file', { seq, bytes: file.subarray(seq * chunkSize, (seq + 1) * chunkSize) });
        }
        const lastArrived = (list: Uint8Array[]) => list.length === chunks;
        await withTimeout(
          (async () => {
            while (!lastArrived(received.get('msgpack')!) || !lastArrived(received.get('json')!)) await new Promise((r) => setImmediate(r));
          })(),
          60_000,
          'every chunk at both subscribers',
        );
        assert.equal(sha256(Buffer.concat(received.get('msgpack')!)), sha256(file));
        assert.equal(sha256(Buffer.concat(received.get('json')!)), sha256(file));
      } finally {
        for (const client of clients) client.close();
      }
    });
  });

  test('each publication is encoded once per codec in use, not once per subscriber', async () => {
    await withServer({}, async (s) => {
      const sockets = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const token = await signToken(`e${i}`);
          if (i % 2 === 0) return MsgpackSocket.connect(s.wsUrl, token);
          const socket = new MsgpackSocket(new WebSocket(`${s.wsUrl}?token=${token}`, ['chorus.v1.json']));
          await new Promise((r) => socket.ws.once('open', r));
          return socket;
        }),
      );
      // JSON sockets' messages are text: wait on their acks through the raw ws.
      const jsonAcks = sockets.filter((_, i) => i % 2 === 1).map((x) => new Promise<void>((resolve) => x.ws.on('message', (d: Buffer) => d.toString().includes('"ack"') && resolve())));
      for (const socket of sockets) {
        if (socket.ws.protocol === 'chorus.v1.msgpack') socket.send({ event: 'subscribe', id: 's', data: { channel: 'chat:once' } });
        else socket.ws.send(JSON.stringify({ event: 'subscribe', id: 's', data: { channel: 'chat:once' } }));
      }
      await Promise.all(sockets.filter((x) => x.ws.protocol === 'chorus.v1.msgpack').map((x) => x.next((f) => f.event === 'ack')));
      await Promise.all(jsonAcks);
      const counts = { json: 0, msgpack: 0 };
      const wrap = (codec: typeof JSON_CODEC, name: 'json' | 'msgpack') => {
        const original = codec.encode;
        (codec as { encode: typeof original }).encode = (frame) => {
          if (frame.event === 'message') counts[name]++;
          return original(frame);
        };
        return () => ((codec as { encode: typeof original }).encode = original);
      };
      const unwrap = [wrap(JSON_CODEC, 'json'), wrap(MSGPACK_CODEC, 'msgpack')];
      try {
        await s.chorus.publish('chat:once', { hello: 'all' });
        await Promise.all(sockets.filter((x) => x.ws.protocol === 'chorus.v1.msgpack').map((x) => x.next((f) => f.event === 'message')));
      } finally {
        for (const u of unwrap) u();
      }
      assert.deepEqual(counts, { json: 1, msgpack: 1 });
      for (const socket of sockets) socket.ws.close();
    });
  });
});

describe('limits on a MessagePack connection', () => {
  test('a message over maxMessageBytes closes 1009; a flood is RATE_LIMITED', async () => {
    await withServer({ limits: { maxMessageBytes: 2048, ratePerSecond: 1, rateBurst: 10 } }, async (s) => {
      const a = await MsgpackSocket.connect(s.wsUrl, await signToken('ada'));
      a.send(...Array.from({ length: 15 }, (_, i) => ({ event: 'ping', id: `f${i}` })));
      const limited = await a.next((f) => f.event === 'error' && (f.data as any).code === 'RATE_LIMITED');
      assert.ok((limited.data as any).retryAfterMs > 0);
      const closed = new Promise<number>((resolve) => a.ws.once('close', (code: number) => resolve(code)));
      a.send({ event: 'ping', data: new Uint8Array(4096) });
      assert.equal(await withTimeout(closed, 5000, 'close'), 1009);
    });
  });
});

describe('MessagePack on the HTTP API', () => {
  test('POST /api/publish with Content-Type: application/msgpack; binary reaches JSON as {"$bin"}', async () => {
    await withServer({}, async (s) => {
      const token = await signToken('ada');
      const jsonSocket = new WebSocket(`${s.wsUrl}?token=${token}`);
      const frames: any[] = [];
      jsonSocket.on('message', (d: Buffer) => d.toString().split('\n').forEach((t) => frames.push(JSON.parse(t))));
      await new Promise((r) => jsonSocket.once('open', r));
      jsonSocket.send(JSON.stringify({ event: 'subscribe', id: 's', data: { channel: 'chat:api' } }));
      while (!frames.some((f) => f.id === 's')) await new Promise((r) => setTimeout(r, 5));
      const body = packr.pack({ channel: 'chat:api', data: { blob: new Uint8Array([1, 2, 3]) } });
      const res = await fetch(`${s.url}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/msgpack' },
        body: new Uint8Array(body),
      });
      assert.equal(res.status, 200);
      const result = (await res.json()) as { offset: number };
      assert.equal(typeof result.offset, 'number');
      while (!frames.some((f) => f.event === 'message')) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(frames.find((f) => f.event === 'message').data.data, { blob: { $bin: 'AQID' } });
      const bad = await fetch(`${s.url}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/msgpack' },
        body: new Uint8Array([0xc1]),
      });
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as any).error.code, 'BAD_REQUEST');
      const array = await fetch(`${s.url}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/msgpack' },
        body: new Uint8Array(packr.pack([1, 2])),
      });
      assert.equal(array.status, 400);
      jsonSocket.close();
    });
  });
});
