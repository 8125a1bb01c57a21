/**
 * Bidirectional HTTP streaming, for clients whose WebSocket cannot open (blocked, a proxy that
 * strips the upgrade). `GET /stream` opens a session: admission as for a WebSocket, then a
 * streaming response carrying the same JSON frames, newline-separated. The client sends its
 * messages as `POST /stream/<session>?seq=<n>`, each body one WebSocket-style message (frames
 * joined with newlines), applied in `seq` order. The session id names the node holding the
 * stream, so a POST that reaches another node of a cluster (no sticky sessions) is forwarded
 * to it over the engine's broker (see `HttpStreamForwarder`).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ChorusError, Disconnect, ErrorCode, JSON_CODEC, ServerEvent, disconnectData } from '../../protocol/index.js';
import { originAllowed } from '../handshake.js';
import { httpStatus, readBody } from '../http-body.js';
import type { Transport, TransportListener } from '../transport.js';
import type { AcceptTransport, Gate } from '../upgrade.js';
import { refuseHttp } from './http-refusal.js';

/** A session's limits (`limits.maxEarlyMessages`, `limits.maxHeldMessages`). */
export interface StreamLimits {
  /** How far ahead of the next expected seq a POST may be (held until its turn); further: 400. */
  readonly maxEarlyMessages: number;
  /**
   * Messages held while the session's reading is paused (flood control). A POST to a paused
   * session on its own node is answered only once reading resumes, so a client sending one POST
   * at a time never gets here; messages forwarded from other nodes beyond this close the session
   * with 1008.
   */
  readonly maxHeldMessages: number;
}

const NEWLINE = Buffer.from('\n');

/** A session id: the node that holds it (URL-encoded), a dot, and 128 random bits. */
export function newSessionId(nodeId: string): string {
  return `${encodeURIComponent(nodeId)}.${randomBytes(16).toString('hex')}`;
}

/** The node id in a session id, or undefined if it is not one. */
export function sessionNode(sid: string): string | undefined {
  const dot = sid.lastIndexOf('.');
  if (dot <= 0 || !/^[0-9a-f]{32}$/.test(sid.slice(dot + 1))) return undefined;
  try {
    return decodeURIComponent(sid.slice(0, dot));
  } catch {
    return undefined;
  }
}

/** One streaming response plus the POSTs that feed it, as a Chorus transport. */
export class HttpStreamTransport implements Transport {
  readonly kind = 'http-stream';
  readonly canPing = false;
  readonly bidirectional = true;
  readonly codec = JSON_CODEC;
  private listener: TransportListener | undefined;
  private closed = false;
  private closeCode = 1006;
  private closeReason = '';
  private paused = false;
  /** The seq the next applied message must have. */
  private nextSeq = 0;
  private readonly early = new Map<number, Buffer>();
  private readonly held: Buffer[] = [];
  private readingWaiters: Array<() => void> = [];

  constructor(
    readonly session: string,
    private readonly res: ServerResponse,
    private readonly limits: StreamLimits,
  ) {}

  get isOpen(): boolean {
    return !this.closed && !this.res.writableEnded && !this.res.destroyed;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get bufferedAmount(): number {
    return this.res.writableLength + (this.res.socket?.writableLength ?? 0);
  }

  listen(listener: TransportListener): void {
    this.listener = listener;
    this.res.on('error', (err) => listener.error(err));
    this.res.once('close', () => {
      this.closed = true;
      this.wakeReaders();
      listener.close(this.closeCode, this.closeReason);
    });
  }

  /**
   * A message from the client with its sequence number. Returns false when it is too far ahead
   * (`maxEarlyMessages` or more past the next expected seq). Repeats are dropped.
   */
  receive(seq: number, body: Buffer): boolean {
    if (seq < this.nextSeq || this.early.has(seq)) return true;
    if (seq !== this.nextSeq) {
      if (seq >= this.nextSeq + this.limits.maxEarlyMessages) return false;
      this.early.set(seq, body);
      return true;
    }
    this.apply(body);
    this.nextSeq++;
    for (let next = this.early.get(this.nextSeq); next !== undefined; next = this.early.get(this.nextSeq)) {
      this.early.delete(this.nextSeq);
      this.apply(next);
      this.nextSeq++;
    }
    return true;
  }

  /** The client sent a message larger than `maxBytes`: close with 1009, as a WebSocket would. */
  tooBig(maxBytes: number): void {
    if (!this.isOpen) return;
    this.listener?.error(new ChorusError(ErrorCode.TOO_LARGE, `message larger than ${maxBytes} bytes`), 'message_too_big');
    this.send(JSON_CODEC.encode({ event: ServerEvent.DISCONNECT, data: disconnectData(Disconnect.messageTooBig) }));
    this.close(Disconnect.messageTooBig.code, Disconnect.messageTooBig.reason);
  }

  /** Resolves once reading is not paused (or the session closed). */
  whenReading(): Promise<void> {
    if (!this.paused || !this.isOpen) return Promise.resolve();
    return new Promise((resolve) => this.readingWaiters.push(resolve));
  }

  private apply(body: Buffer): void {
    if (!this.isOpen || !this.listener) return;
    if (!this.paused) {
      this.listener.message(body, false);
      return;
    }
    if (this.held.length >= this.limits.maxHeldMessages) {
      this.listener.error(new ChorusError(ErrorCode.RATE_LIMITED, 'messages kept coming while reading was paused'));
      this.send(JSON_CODEC.encode({ event: ServerEvent.DISCONNECT, data: disconnectData(Disconnect.abuse) }));
      this.close(Disconnect.abuse.code, Disconnect.abuse.reason);
      return;
    }
    this.held.push(body);
  }

  private wakeReaders(): void {
    const waiters = this.readingWaiters;
    this.readingWaiters = [];
    for (const resolve of waiters) resolve();
  }

  send(message: Uint8Array): void {
    if (!this.isOpen) return;
    this.res.write(message);
    this.res.write(NEWLINE);
  }

  ping(): void {}

  close(code: number, reason: string): void {
    this.closeCode = code;
    this.closeReason = reason;
    if (!this.res.writableEnded) this.res.end();
  }

  terminate(): void {
    this.res.destroy();
  }

  /** Hold the client's messages (flood control) until `resume`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    while (!this.paused && this.held.length > 0) this.listener?.message(this.held.shift()!, false);
    if (!this.paused) this.wakeReaders();
  }
}

/** Sends a POST's message to the node holding its session (through the engine's broker). */
export type HttpStreamForwarder = (node: string, session: string, seq: number, body: string) => Promise<void>;

/** The HTTP streaming endpoint: opens sessions and routes POSTs to them (here or on their node). */
export class HttpStreamEndpoint {
  private readonly sessions = new Map<string, HttpStreamTransport>();

  constructor(
    private readonly gate: Gate,
    private readonly host: {
      readonly closing: boolean;
      readonly logger: Logger;
      readonly nodeId: string;
      readonly allowedOrigins: string[] | undefined;
      readonly maxMessageBytes: number;
      readonly limits: StreamLimits;
    },
    private readonly accept: AcceptTransport,
    private readonly forward: HttpStreamForwarder,
  ) {}

  /** Sessions open on this node. */
  get size(): number {
    return this.sessions.size;
  }

  /** Answer `GET <path>` (open) or `POST <path>/<session>?seq=<n>` (send). */
  handle(req: IncomingMessage, res: ServerResponse, rest: string): void {
    const work = rest === '' ? this.open(req, res) : this.post(req, res, rest.slice(1));
    work.catch((err) => {
      const e = err instanceof ChorusError ? err : undefined;
      if (!e) this.host.logger.error({ err }, 'HTTP stream request failed');
      if (!res.headersSent) refuseHttp(req, res, httpStatus(e?.code), e?.code ?? ErrorCode.INTERNAL, e?.message ?? 'internal error');
      else res.destroy();
    });
  }

  /** A message forwarded from another node for a session here. */
  deliver(session: string, seq: number, body: string): void {
    this.sessions.get(session)?.receive(seq, Buffer.from(body));
  }

  private async open(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const admission = await this.gate.admit(req, (r) => (r.method === 'GET' ? undefined : 'open a stream with GET'));
    if (!admission.ok) return refuseHttp(req, res, admission.status, admission.code, admission.message, admission.retryAfterSec);
    if (this.host.closing || res.destroyed || req.socket.destroyed) {
      admission.release();
      if (!res.destroyed) refuseHttp(req, res, 503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
      return;
    }
    const session = newSessionId(this.host.nodeId);
    const headers: Record<string, string> = {
      'content-type': 'application/x-ndjson; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'chorus-session': session,
      'access-control-expose-headers': 'Chorus-Session',
    };
    const origin = req.headers.origin;
    if (typeof origin === 'string' && origin !== '') {
      headers['access-control-allow-origin'] = origin;
      headers.vary = 'Origin';
    }
    res.writeHead(200, headers);
    req.socket.setNoDelay(true);
    const transport = new HttpStreamTransport(session, res, this.host.limits);
    this.sessions.set(session, transport);
    res.once('close', () => this.sessions.delete(session));
    try {
      this.accept(transport, admission);
    } catch (err) {
      this.host.logger.error({ err }, 'HTTP stream setup failed');
      admission.release();
      transport.terminate();
    }
  }

  private async post(req: IncomingMessage, res: ServerResponse, session: string): Promise<void> {
    if (req.method === 'OPTIONS') return preflight(req, res, this.host.allowedOrigins);
    if (req.method !== 'POST') {
      req.resume();
      throw new ChorusError(ErrorCode.BAD_REQUEST, 'send messages with POST');
    }
    if (!originAllowed(req, this.host.allowedOrigins)) {
      req.resume();
      throw new ChorusError(ErrorCode.ORIGIN_NOT_ALLOWED, 'origin not allowed');
    }
    const seq = Number(new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('seq'));
    if (!Number.isSafeInteger(seq) || seq < 0) {
      req.resume();
      throw new ChorusError(ErrorCode.BAD_REQUEST, 'seq must be a non-negative integer');
    }
    const node = sessionNode(session);
    if (node === undefined) {
      req.resume();
      throw new ChorusError(ErrorCode.NOT_FOUND, 'no such session');
    }
    const local = node === this.host.nodeId ? this.sessions.get(session) : undefined;
    if (node === this.host.nodeId && !local) {
      req.resume();
      throw new ChorusError(ErrorCode.NOT_FOUND, 'no such session');
    }
    const max = this.host.maxMessageBytes;
    const body = await readBody(req, max, 'message').catch((err: unknown) => {
      if (err instanceof ChorusError && err.code === ErrorCode.TOO_LARGE) local?.tooBig(max);
      throw err;
    });
    const origin = req.headers.origin;
    if (typeof origin === 'string' && origin !== '') res.setHeader('access-control-allow-origin', origin);
    if (local) {
      // Flood control: a session that stopped reading answers once it reads again (TCP-like push back).
      await local.whenReading();
      if (!local.receive(seq, body)) throw new ChorusError(ErrorCode.BAD_REQUEST, `seq ${seq} is ${this.host.limits.maxEarlyMessages} or more past the next expected one`);
    } else {
      try {
        await this.forward(node, session, seq, body.toString('utf8'));
      } catch (err) {
        this.host.logger.warn({ err: { message: (err as Error).message }, node }, 'forwarding a stream message failed');
        throw new ChorusError(ErrorCode.UNAVAILABLE, 'the engine is unavailable; try again later');
      }
    }
    res.writeHead(204, { 'cache-control': 'no-store' });
    res.end();
  }
}

function preflight(req: IncomingMessage, res: ServerResponse, allowed: string[] | undefined): void {
  req.resume();
  const origin = req.headers.origin;
  if (typeof origin !== 'string' || !originAllowed(req, allowed)) {
    res.writeHead(403).end();
    return;
  }
  res.writeHead(204, {
    'access-control-allow-origin': origin,
    'access-control-allow-methods': 'POST',
    'access-control-allow-headers': 'content-type',
    'access-control-max-age': '600',
    vary: 'Origin',
  });
  res.end();
}

