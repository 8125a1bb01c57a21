/**
 * Unidirectional Server-Sent Events: `GET /sse?channel=<name>` (repeatable). Admission is the
 * WebSocket's (`Gate.admit`: Origin, token from `?token=` or `Authorization: Bearer`, per-user
 * cap, hooks); the stream is a connection like any other, on a transport that cannot read.
 * Each event's `data:` is one JSON frame exactly as on the WebSocket; frames that move a
 * channel's position (publications, `subscribed`) carry an `id:` holding the positions of all
 * the stream's channels (sse-id.ts), which a reconnecting EventSource sends back as
 * `Last-Event-ID`. Keep-alive is a comment line every heartbeat interval.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ErrorCode, JSON_CODEC, isValidChannelName, type StreamPosition } from '../../protocol/index.js';
import type { FramePosition, Transport, TransportListener } from '../transport.js';
import type { Admitted, Gate } from '../upgrade.js';
import { channelListHash, decodeEventId, encodeEventId } from './sse-id.js';
import { refuseHttp } from './http-refusal.js';

/** Most `channel` parameters one stream may carry (keeps event ids bounded). */
export const SSE_MAX_CHANNELS = 64;
/** The `retry:` an EventSource waits before reconnecting, in ms. */
export const SSE_RETRY_MS = 2000;

/** What a stream asks for: its channels, and where to resume them. */
export interface StreamRequest {
  channels: string[];
  /** Positions from `Last-Event-ID` (empty without one). */
  since: Map<string, StreamPosition>;
  /** A `Last-Event-ID` was sent: every channel's `subscribed` says whether it was recovered. */
  resumed: boolean;
}

/** Called with each admitted stream; throwing terminates it. */
export type AcceptStream = (transport: Transport, admitted: Admitted, request: StreamRequest) => void;

const ENCODER = new TextEncoder();
const DATA = Buffer.from('data: ');
const END = Buffer.from('\n\n');
const PING = Buffer.from(': ping\n\n');

/** One SSE response as a Chorus transport (write-only). */
export class SseTransport implements Transport {
  readonly kind = 'sse';
  readonly canPing = false;
  readonly bidirectional = false;
  readonly codec = JSON_CODEC;
  readonly isPaused = false;
  private closed = false;
  private closeCode = 1006;
  private closeReason = '';
  private readonly listHash: string;
  private readonly positions: Map<string, StreamPosition>;

  constructor(
    private readonly res: ServerResponse,
    private readonly channels: readonly string[],
    since: ReadonlyMap<string, StreamPosition>,
  ) {
    this.listHash = channelListHash(channels);
    this.positions = new Map(since);
  }

  get isOpen(): boolean {
    return !this.closed && !this.res.writableEnded && !this.res.destroyed;
  }

  get bufferedAmount(): number {
    return this.res.writableLength + (this.res.socket?.writableLength ?? 0);
  }

  listen(listener: TransportListener): void {
    this.res.on('error', (err) => listener.error(err));
    this.res.once('close', () => {
      this.closed = true;
      listener.close(this.closeCode, this.closeReason);
    });
  }

  sendFrames(frames: Uint8Array[], positions: Array<FramePosition | undefined>): void {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < frames.length; i++) {
      const position = positions[i];
      if (position) {
        this.positions.set(position.channel, { offset: position.offset, epoch: position.epoch });
        parts.push(ENCODER.encode(`id: ${encodeEventId(this.listHash, this.channels, this.positions)}\n`));
      }
      parts.push(DATA, frames[i]!, END);
    }
    this.write(Buffer.concat(parts));
  }

  /** A batch of newline-joined JSON frames, one event each, without ids. */
  send(message: Uint8Array): void {
    const text = Buffer.from(message.buffer, message.byteOffset, message.byteLength).toString('utf8');
    this.write(Buffer.from(text.split('\n').map((frame) => `data: ${frame}\n\n`).join('')));
  }

  /** The keep-alive comment. */
  ping(): void {
    this.write(PING);
  }

  close(code: number, reason: string): void {
    this.closeCode = code;
    this.closeReason = reason;
    if (!this.res.writableEnded) this.res.end();
  }

  terminate(): void {
    this.res.destroy();
  }

  pause(): void {}
  resume(): void {}

  private write(bytes: Uint8Array): void {
    if (!this.isOpen) return;
    this.res.write(bytes);
  }
}

/** Parse the stream's query and `Last-Event-ID` (header, else `?lastEventId=`), or say what is wrong. */
export function parseStreamRequest(req: IncomingMessage): { request: StreamRequest } | { error: string } {
  if (req.method !== 'GET') return { error: 'the SSE endpoint takes GET requests' };
  const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
  const channels = query.getAll('channel');
  if (channels.length === 0) return { error: 'at least one channel parameter is required' };
  if (channels.length > SSE_MAX_CHANNELS) return { error: `at most ${SSE_MAX_CHANNELS} channel parameters` };
  const bad = channels.find((c) => !isValidChannelName(c));
  if (bad !== undefined) return { error: `invalid channel name ${JSON.stringify(String(bad).slice(0, 300))}` };
  if (new Set(channels).size !== channels.length) return { error: 'a channel is repeated' };
  const header = req.headers['last-event-id'];
  const lastEventId = typeof header === 'string' ? header : query.get('lastEventId') ?? undefined;
  const resumed = lastEventId !== undefined && lastEventId !== '';
  const since = (resumed ? decodeEventId(lastEventId, channels) : undefined) ?? new Map<string, StreamPosition>();
  return { request: { channels, since, resumed } };
}

/** The SSE endpoint: admission, then the response handed to an SSE transport. */
export class SseEndpoint {
  constructor(
    private readonly gate: Gate,
    private readonly host: { readonly closing: boolean; readonly logger: Logger },
    private readonly accept: AcceptStream,
  ) {}

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.open(req, res).catch((err) => {
      this.host.logger.error({ err }, 'SSE stream failed to open');
      if (!res.headersSent) refuseHttp(req, res, 500, ErrorCode.INTERNAL, 'internal error');
      else res.destroy();
    });
  }

  private async open(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parsed = parseStreamRequest(req);
    const admission = await this.gate.admit(req, () => ('error' in parsed ? parsed.error : undefined));
    if (!admission.ok) return refuseHttp(req, res, admission.status, admission.code, admission.message, admission.retryAfterSec);
    if (!('request' in parsed)) throw new Error('unreachable: a bad request is refused by admission');
    if (this.host.closing || res.destroyed || req.socket.destroyed) {
      admission.release();
      if (!res.destroyed) refuseHttp(req, res, 503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // nginx: do not buffer the stream
      'x-accel-buffering': 'no',
    };
    const origin = req.headers.origin;
    if (typeof origin === 'string' && origin !== '') {
      // Admission checked the Origin already.
      headers['access-control-allow-origin'] = origin;
      headers.vary = 'Origin';
    }
    res.writeHead(200, headers);
    res.write(`retry: ${SSE_RETRY_MS}\n\n`);
    req.socket.setNoDelay(true);
    const transport = new SseTransport(res, parsed.request.channels, parsed.request.since);
    try {
      this.accept(transport, admission, parsed.request);
    } catch (err) {
      this.host.logger.error({ err }, 'SSE connection setup failed');
      admission.release();
      transport.terminate();
    }
  }
}

