import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { constants as zlib, inflateRawSync } from 'node:zlib';

const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * A minimal WebSocket client on a raw `net` socket, built to be cheap for the load generator:
 * every socket reads into ONE shared buffer (`onread`), frame headers are parsed in place and
 * payload bytes are not copied or decoded, except on the few sampled sockets that measure latency.
 *
 * Deliveries are counted as data messages plus `\n` bytes in their payloads, which counts every
 * frame of a Chorus batch (frames joined by newlines, docs/PROTOCOL.md §2), every plain ws
 * message, and every Socket.IO packet (one packet per message, no raw newline in JSON).
 */

/** Counters shared by all clients of one run (the load process is single-threaded). */
export class Counters {
  /** Deliveries: data messages + newline-separated frames inside them. */
  deliveries = 0;
  /** WebSocket data messages. */
  messages = 0;
  /** Payload bytes of data messages. */
  bytes = 0;
  /** Connections that closed or failed after opening. */
  closed = 0;
  /** Called after each chunk is processed (flow control); keep it cheap. */
  onChunk: (() => void) | undefined;

  reset(): void {
    this.deliveries = 0;
    this.messages = 0;
    this.bytes = 0;
  }
}

/** Publish-to-receipt latencies (ms), in a preallocated array: bounded memory. */
export class LatencyRecorder {
  private readonly values: Float64Array;
  count = 0;

  constructor(capacity = 2_000_000) {
    this.values = new Float64Array(capacity);
  }

  record(ms: number): void {
    if (this.count < this.values.length) this.values[this.count++] = ms;
  }

  reset(): void {
    this.count = 0;
  }

  /** Percentiles (0..100) of what was recorded; NaN when empty. */
  percentiles(ps: number[]): number[] {
    if (this.count === 0) return ps.map(() => Number.NaN);
    const sorted = this.values.slice(0, this.count).sort();
    return ps.map((p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
  }
}

/** The clock shared by the server and load processes (wall-clock ms with sub-ms precision). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const SHARED_READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
const T_KEY = Buffer.from('"t":');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const NEWLINE = 0x0a;

export interface WireOptions {
  port: number;
  /** Request path including the query string. */
  path: string;
  counters: Counters;
  /** Record publish-to-receipt latency of every `"t":<ms>` found in this socket's messages. */
  latency?: LatencyRecorder;
  /** Socket.IO (engine.io) mode: answer engine.io pings ("2" -> "3") and count only "4..." packets. */
  engineIo?: boolean;
  /** Give up on the handshake after this many ms. Default 10000. */
  timeoutMs?: number;
  /** Extra handshake header lines, e.g. `Sec-WebSocket-Protocol: chorus.v1.msgpack\r\n`. */
  headers?: string;
  /**
   * Count deliveries as occurrences of this byte pattern in each message instead of newlines
   * (MessagePack batches have no separator: count each `message` frame's map key and value).
   */
  countPattern?: Buffer;
  /** permessage-deflate: copy each compressed message and inflate it to count its newlines. */
  inflate?: boolean;
  /** Local (source) address, e.g. one of several 127.0.0.x: each gives its own ~28k ephemeral ports. */
  localAddress?: string;
}

/** One raw WebSocket connection. `open()` resolves when the 101 response has arrived. */
export class WireClient {
  private socket: net.Socket | undefined;
  private state: 'handshake' | 'open' | 'closed' = 'handshake';
  private handshake: Buffer[] = [];
  // Frame parser state (survives chunk boundaries).
  private readonly header = Buffer.alloc(14);
  private headerLength = 0;
  private remaining = 0;
  private opcode = 0;
  private fin = false;
  private messageFirstByte = -1;
  private messageNewlines = 0;
  private messageBytes = 0;
  private control: Buffer[] = [];
  private sampled: Buffer[] | undefined;
  /** The tail of the previous payload chunk (pattern counting across chunk boundaries). */
  private carry: Buffer | undefined;
  private compressed = false;
  private deflated: Buffer[] = [];
  /** First bytes after the handshake, before the caller asked for them (e.g. Chorus `connected`). */
  firstMessage: Promise<void>;
  private resolveFirstMessage!: () => void;

  constructor(private readonly options: WireOptions) {
    this.firstMessage = new Promise((resolve) => (this.resolveFirstMessage = resolve));
    if (options.latency) this.sampled = [];
  }

  open(): Promise<void> {
    const { port, path, timeoutMs = 10000 } = this.options;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          this.destroy();
          reject(err);
        } else resolve();
      };
      const timer = setTimeout(() => settle(new Error('handshake timeout')), timeoutMs);
      const socket = net.connect({
        host: '127.0.0.1',
        port,
        ...(this.options.localAddress ? { localAddress: this.options.localAddress } : {}),
        noDelay: true,
        onread: {
          buffer: SHARED_READ_BUFFER,
          callback: (n: number, buf: Uint8Array) => {
            this.onData(buf as Buffer, n, settle);
            return true;
          },
        },
      });
      this.socket = socket;
      socket.on('error', (err) => settle(err));
      socket.on('close', () => {
        if (this.state === 'open') this.options.counters.closed++;
        this.state = 'closed';
        settle(new Error('closed during handshake'));
      });
      socket.on('connect', () => {
        const key = randomBytes(16).toString('base64');
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${this.options.headers ?? ''}\r\n`,
        );
      });
    });
  }

  /** Send one binary message (masked). */
  sendBinary(payload: Buffer): void {
    if (this.state !== 'open' || !this.socket) return;
    this.socket.write(encodeClientFrame(0x2, payload));
  }

  /** Send one text message (masked, as a client must). */
  sendText(text: string): void {
    if (this.state !== 'open' || !this.socket) return;
    this.socket.write(encodeClientFrame(0x1, Buffer.from(text)));
  }

  destroy(): void {
    this.state = 'closed';
    this.socket?.destroy();
  }

  private onData(buf: Buffer, n: number, settle: (err?: Error) => void): void {
    let pos = 0;
    if (this.state === 'handshake') {
      this.handshake.push(Buffer.from(buf.subarray(0, n)));
      const all = Buffer.concat(this.handshake);
      const end = all.indexOf(CRLFCRLF);
      if (end === -1) {
        if (all.length > 8192) settle(new Error('handshake response too large'));
        return;
      }
      const status = all.toString('latin1', 0, Math.min(end, 64));
      if (!status.startsWith('HTTP/1.1 101')) {
        settle(new Error(`handshake refused: ${status.split('\r\n')[0]}`));
        return;
      }
      this.state = 'open';
      this.handshake = [];
      settle();
      const rest = all.subarray(end + 4);
      if (rest.length > 0) this.parse(rest, 0, rest.length);
      this.options.counters.onChunk?.();
      return;
    }
    if (this.state === 'open') this.parse(buf, pos, n);
    this.options.counters.onChunk?.();
  }

  /** Walk frames in buf[pos, end): headers are parsed, payload bytes are only scanned for newlines. */
  private parse(buf: Buffer, pos: number, end: number): void {
    while (pos < end) {
      if (this.remaining === 0 && this.headerLength >= 0) {
        // Reading a header.
        const header = this.header;
        header[this.headerLength++] = buf[pos++]!;
        if (this.headerLength < 2) continue;
        const len7 = header[1]! & 0x7f;
        const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
        while (this.headerLength < need && pos < end) header[this.headerLength++] = buf[pos++]!;
        if (this.headerLength < need) return;
        let length = len7;
        if (len7 === 126) length = header.readUInt16BE(2);
        else if (len7 === 127) length = Number(header.readBigUInt64BE(2));
        this.fin = (header[0]! & 0x80) !== 0;
        this.opcode = header[0]! & 0x0f;
        this.headerLength = -1; // in payload
        this.remaining = length;
        if (this.opcode === 1 || this.opcode === 2) {
          this.messageFirstByte = -1;
          this.messageNewlines = 0;
          this.messageBytes = 0;
          this.carry = undefined;
          this.compressed = (header[0]! & 0x40) !== 0;
        }
        if (length === 0) this.endFrame();
        continue;
      }
      // In a payload.
      const take = Math.min(this.remaining, end - pos);
      if (this.opcode >= 0x8) {
        this.control.push(Buffer.from(buf.subarray(pos, pos + take)));
      } else {
        if (this.messageFirstByte === -1) this.messageFirstByte = buf[pos]!;
        if (this.compressed && this.options.inflate) this.deflated.push(Buffer.from(buf.subarray(pos, pos + take)));
        else if (this.options.countPattern) this.countPattern(buf.subarray(pos, pos + take));
        else {
          let i = buf.indexOf(NEWLINE, pos);
          while (i !== -1 && i < pos + take) {
            this.messageNewlines++;
            i = buf.indexOf(NEWLINE, i + 1);
          }
        }
        this.messageBytes += take;
        if (this.sampled) this.sampled.push(Buffer.from(buf.subarray(pos, pos + take)));
      }
      pos += take;
      this.remaining -= take;
      if (this.remaining === 0) this.endFrame();
    }
  }

  private endFrame(): void {
    this.headerLength = 0;
    const opcode = this.opcode;
    if (opcode >= 0x8) {
      const payload = Buffer.concat(this.control);
      this.control = [];
      if (opcode === 0x9) this.socket?.write(encodeClientFrame(0xa, payload)); // pong
      else if (opcode === 0x8) this.socket?.end();
      return;
    }
    if (!this.fin) return;
    this.endMessage();
  }

  /** Count pattern occurrences in a payload chunk, including one that spans the previous chunk. */
  private countPattern(chunk: Buffer): void {
    const pattern = this.options.countPattern!;
    if (this.carry) {
      const joined = Buffer.concat([this.carry, chunk.subarray(0, pattern.length - 1)]);
      if (joined.indexOf(pattern) !== -1) this.messageNewlines++;
    }
    let i = chunk.indexOf(pattern);
    while (i !== -1) {
      this.messageNewlines++;
      i = chunk.indexOf(pattern, i + pattern.length);
    }
    this.carry = Buffer.from(chunk.subarray(Math.max(0, chunk.length - pattern.length + 1)));
  }

  private endMessage(): void {
    const counters = this.options.counters;
    if (this.deflated.length > 0) {
      const text = inflateRawSync(Buffer.concat([...this.deflated, DEFLATE_TAIL]), { finishFlush: zlib.Z_SYNC_FLUSH });
      this.deflated = [];
      let i = text.indexOf(NEWLINE);
      while (i !== -1) {
        this.messageNewlines++;
        i = text.indexOf(NEWLINE, i + 1);
      }
    }
    // Pattern counting counts every frame itself; newline counting counts separators.
    if (this.options.countPattern && !this.compressed) this.messageNewlines--;
    this.resolveFirstMessage();
    if (this.options.engineIo) {
      if (this.messageFirstByte === 0x32 && this.messageBytes === 1) {
        this.sendText('3'); // engine.io pong
        this.sampled = this.sampled ? [] : undefined;
        return;
      }
      if (this.messageFirstByte !== 0x34) {
        this.sampled = this.sampled ? [] : undefined;
        return;
      }
    }
    counters.messages++;
    counters.deliveries += 1 + this.messageNewlines;
    counters.bytes += this.messageBytes;
    if (this.sampled) {
      if (this.sampled.length > 0) recordLatencies(Buffer.concat(this.sampled), this.options.latency!);
      this.sampled = [];
    }
  }
}

/** Find every `"t":<ms>` in a message and record now - t. */
function recordLatencies(payload: Buffer, latency: LatencyRecorder): void {
  const now = nowMs();
  let i = payload.indexOf(T_KEY);
  while (i !== -1) {
    const start = i + T_KEY.length;
    let j = start;
    while (j < payload.length) {
      const c = payload[j]!;
      if ((c >= 0x30 && c <= 0x39) || c === 0x2e) j++;
      else break;
    }
    const t = Number(payload.toString('latin1', start, j));
    if (Number.isFinite(t)) latency.record(now - t);
    i = payload.indexOf(T_KEY, j);
  }
}

/** A masked client frame (RFC 6455 §5.3). */
export function encodeClientFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  const mask = randomBytes(4);
  mask.copy(frame, headerLength);
  const body = headerLength + 4;
  for (let i = 0; i < length; i++) frame[body + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** Open `count` clients with at most `concurrency` handshakes in flight; returns them and the elapsed ms. */
export async function openMany(
  count: number,
  concurrency: number,
  make: (i: number) => WireClient,
  deadlineMs: number,
  onOpen?: (client: WireClient) => void,
): Promise<{ clients: WireClient[]; failed: number; elapsedMs: number; firstError: string | undefined }> {
  const clients: WireClient[] = [];
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const worker = async () => {
    while (next < count && performance.now() - started < deadlineMs) {
      const client = make(next++);
      try {
        await client.open();
        clients.push(client);
        onOpen?.(client);
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { clients, failed, elapsedMs: performance.now() - started, firstError };
}
