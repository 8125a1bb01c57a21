import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import WebSocket from 'ws';
import { ChorusServer, type ServerOptions } from '../src/server/index.js';
import type { Frame } from '../src/protocol/index.js';

/** A temporary directory, removed when the test process exits (e.g. a standalone server's CHORUS_DATA_DIR). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
export const API_KEY = 'test-api-key-9876543210';

/** Sign an HS256 token for tests. `exp` is seconds from now (default 3600); pass null for no expiry. */
export async function signToken(
  user: string,
  options: { secret?: string; expSeconds?: number | null; claims?: Record<string, unknown> } = {},
): Promise<string> {
  const jwt = new SignJWT({ ...(options.claims ?? {}) }).setProtectedHeader({ alg: 'HS256' }).setSubject(user).setIssuedAt();
  const exp = options.expSeconds === undefined ? 3600 : options.expSeconds;
  if (exp !== null) jwt.setExpirationTime(Math.floor(Date.now() / 1000) + exp);
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

export interface TestServer {
  chorus: ChorusServer;
  http: http.Server;
  port: number;
  url: string;
  wsUrl: string;
  /** Every log line the server wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Every log line as raw text. */
  rawLogs: string[];
  close(): Promise<void>;
}

/** Start a Chorus server attached to a fresh http.Server on 127.0.0.1, port 0. */
export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const logs: Array<Record<string, unknown>> = [];
  const rawLogs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        rawLogs.push(line);
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON: keep the raw line only
        }
      }
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const chorus = new ChorusServer({ auth: { secret: SECRET }, apiKey: API_KEY, logger, ...options });
  const server = http.createServer();
  chorus.attach(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    chorus,
    http: server,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    logs,
    rawLogs,
    async close() {
      await chorus.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Wait for an event on an emitter, failing after `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms = 5000, what = 'event'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A raw protocol client for tests: collects frames, waits on them, sends requests with ids. */
export class TestSocket {
  readonly frames: Frame[] = [];
  private waiters: Array<{ match: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  private nextId = 0;
  closeCode: number | undefined;
  closeReason = '';
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      for (const part of data.toString().split('\n')) {
        if (!part) continue;
        const frame = JSON.parse(part) as Frame;
        this.frames.push(frame);
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) {
          if (w.match(frame)) w.resolve(frame);
          else this.waiters.push(w);
        }
      }
    });
    ws.on('error', () => {});
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** Open a socket; resolves once the `connected` frame arrived. */
  static async connect(url: string, token?: string, options: WebSocket.ClientOptions = {}): Promise<TestSocket> {
    const full = token === undefined ? url : `${url}?token=${encodeURIComponent(token)}`;
    const ws = new WebSocket(full, options);
    const socket = new TestSocket(ws);
    await withTimeout(socket.next((f) => f.event === 'connected'), 5000, 'connected');
    return socket;
  }

  /** The next frame (including ones already received and not yet consumed by `next`) matching. */
  next(match: (f: Frame) => boolean = () => true, ms = 5000): Promise<Frame> {
    return withTimeout(
      new Promise<Frame>((resolve) => this.waiters.push({ match, resolve })),
      ms,
      'frame',
    );
  }

  /** A frame matching, looking at frames already received first. */
  find(match: (f: Frame) => boolean, ms = 5000): Promise<Frame> {
    const found = this.frames.find(match);
    return found ? Promise.resolve(found) : this.next(match, ms);
  }

  send(frame: Frame | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Send a frame with an id and wait for its ack or error. */
  async request(event: string, data?: unknown, id = `t${++this.nextId}`): Promise<Frame> {
    const reply = this.next((f) => (f.event === 'ack' || f.event === 'error') && f.id === id);
    this.send(data === undefined ? { event, id } : { event, data, id });
    return reply;
  }

  /** Like request, but throws on an error reply and returns the ack data. */
  async ok<T = any>(event: string, data?: unknown): Promise<T> {
    const reply = await this.request(event, data);
    if (reply.event !== 'ack') throw new Error(`expected ack for ${event}, got ${JSON.stringify(reply)}`);
    return reply.data as T;
  }

  messages(channel?: string): any[] {
    return this.frames.filter((f) => f.event === 'message' && (channel === undefined || (f.data as any).channel === channel)).map((f) => f.data);
  }

  close(): void {
    this.ws.close();
  }
}

/** Perform an upgrade and return the HTTP status it was answered with (101 on success). */
export function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.on('error', (err) => {
      if (!String(err.message).includes('Unexpected server response')) reject(err);
    });
  });
}

/** Call the HTTP API. */
export async function api(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  key: string | null = API_KEY,
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep text
  }
  return { status: res.status, body: parsed };
}

/** Start a server, run `fn`, and close the server whatever happens. */
export async function withServer(options: ServerOptions, fn: (s: TestServer) => Promise<void>): Promise<void> {
  const s = await startServer(options);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** Poll a condition (only where no event exists to wait on), bounded by a deadline. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Resolve with the next `event` of an emitter (Chorus client or subscription) matching `filter`, or reject after `ms`. */
export function nextEvent<T>(
  emitter: { on(event: string, listener: (data: any) => void): () => void },
  event: string,
  ms = 5000,
  filter: (data: T) => boolean = () => true,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    const off = emitter.on(event, (data: T) => {
      if (!filter(data)) return;
      clearTimeout(timer);
      off();
      resolve(data);
    });
  });
}
