import type { WebSocket } from 'ws';
import { FRAME_SEPARATOR, ServerEvent, type DisconnectData, type Frame } from '../protocol/index.js';
import type { ResolvedNamespace } from './options.js';
import { TokenBucket } from './rate-limiter.js';
import type { Publication } from '../engines/types.js';

/** How a queued frame is treated when the send queue is full (see `Connection.sendEncoded`). */
export type SendMode = 'live' | 'ephemeral' | 'reply';

/** Per-channel state of one connection's subscription. */
export interface SubscriptionState {
  namespace: ResolvedNamespace;
  /**
   * Frames held back while the subscription is being set up (recovery in progress), with the
   * publication they carry (absent for join/leave), so duplicates can be dropped on release.
   */
  pending: Array<{ publication?: Publication; frame: Buffer }> | undefined;
  /** Whether this connection has a presence entry in the channel. */
  presence: boolean;
}

/** What a connection needs from the server it belongs to (kept narrow for testability). */
export interface ConnectionHost {
  readonly limits: {
    maxQueuedBytes: number;
    maxMessageBytes: number;
    ratePerSecond: number;
    rateBurst: number;
    maxFaults: number;
    faultWindowMs: number;
  };
  now(): number;
  /** Ask for `connection.flush()` to be called soon (batched with other connections). */
  scheduleFlush(connection: Connection): void;
  onSlowConsumer(connection: Connection): void;
  onEphemeralDropped(connection: Connection): void;

}

const SEPARATOR = Buffer.from(FRAME_SEPARATOR);

/** Remembers the last joined batch: consecutive connections with identical queues reuse it. */
export class BatchCache {
  private frames: Buffer[] = [];
  private payload: Buffer | undefined;

  join(queue: Buffer[]): Buffer {
    const last = this.frames;
    if (this.payload && last.length === queue.length && queue.every((frame, i) => frame === last[i])) return this.payload;
    const parts: Buffer[] = [];
    for (let i = 0; i < queue.length; i++) {
      if (i > 0) parts.push(SEPARATOR);
      parts.push(queue[i]!);
    }
    this.frames = queue;
    this.payload = Buffer.concat(parts);
    return this.payload;
  }
}

let counter = 0;
/** A connection id unique across nodes (time, counter and randomness). */
export function newClientId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `c_${Date.now().toString(36)}${counter.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * One client connection: identity, subscriptions, a bounded send queue that batches the frames
 * queued in one tick into one WebSocket message, heartbeat bookkeeping, the rate bucket and the
 * fault counter. Teardown happens once, through `close` or `terminate`.
 */
export class Connection {
  readonly id: string;
  readonly user: string;
  info: Record<string, unknown> | undefined;
  /** Token expiry, ms since the Unix epoch. */
  expiresAt: number | undefined;
  readonly connectedAt: number;
  readonly subscriptions = new Map<string, SubscriptionState>();
  /** Last time anything (frame or pong) arrived from the peer. */
  lastSeen: number;
  /** Last time the server pinged the peer. */
  lastPing: number;
  /** Set once the connection is closing; nothing more is sent. */
  closing = false;
  /** When each limit was last logged for this connection (limit hits are logged at most every 10 s). */
  limitLoggedAt: Map<string, number> | undefined;
  /** Close code and reason recorded for logs and metrics. */
  closeCode: number | undefined;
  closeReason = '';

  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private readonly bucket: TokenBucket;
  private faultWindowStart = 0;
  private faults = 0;
  private terminateTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly ws: WebSocket,
    identity: { user: string; info?: Record<string, unknown>; expiresAt?: number },
    private readonly host: ConnectionHost,
    id: string = newClientId(),
  ) {
    this.id = id;
    this.user = identity.user;
    this.info = identity.info;
    this.expiresAt = identity.expiresAt;
    const now = host.now();
    this.connectedAt = now;
    this.lastSeen = now;
    this.lastPing = now;
    this.bucket = new TokenBucket(host.limits.ratePerSecond, host.limits.rateBurst, now);
  }

  /** Bytes waiting to reach the peer: our queue plus what ws and the socket hold. */
  get pendingBytes(): number {
    return this.queuedBytes + this.ws.bufferedAmount;
  }

  /** Take one frame's worth from the rate bucket. */
  consumeRate() {
    return this.bucket.consume(this.host.now());
  }

  /** Record a faulty frame; returns true when the connection has now exceeded `maxFaults`. */
  addFault(): boolean {
    const now = this.host.now();
    if (now - this.faultWindowStart > this.host.limits.faultWindowMs) {
      this.faultWindowStart = now;
      this.faults = 0;
    }
    this.faults++;
    return this.faults >= this.host.limits.maxFaults;
  }

  /**
   * Queue an encoded frame.
   * - `live` (publications, server events): past `maxQueuedBytes` unsent, the client is a slow
   *   consumer and is disconnected (4003).
   * - `ephemeral`: dropped once the queue is half full; never disconnects.
   * - `reply` (acks, errors, recovered publications, protocol events): something the client
   *   asked for, so its size does not count against it; only a queue that was already over the
   *   limit before it (a client that stopped reading) makes it a slow consumer. Callers bound
   *   the size of what they reply (history pages and recovery are capped by bytes).
   */
  sendEncoded(frame: Buffer, mode: SendMode = 'live'): void {
    if (this.closing) return;
    const max = this.host.limits.maxQueuedBytes;
    const before = this.pendingBytes;
    if (mode === 'ephemeral' && before + frame.length > max / 2) {
      this.host.onEphemeralDropped(this);
      return;
    }
    if ((mode === 'reply' ? before : before + frame.length) > max) {
      this.host.onSlowConsumer(this);
      return;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    if (this.queue.length === 1) this.host.scheduleFlush(this);
  }

  /** Encode and queue one frame (a reply unless told otherwise). */
  send(frame: Frame, mode: SendMode = 'reply'): void {
    this.sendEncoded(Buffer.from(JSON.stringify(frame)), mode);
  }

  /**
   * Write everything queued, joining frames with newlines into WebSocket messages of at most
   * `maxMessageBytes` (a larger single frame goes alone). `batches` shares joined payloads
   * between connections whose queues hold the very same frames (the usual case in fan-out), so
   * each distinct batch is built once per flush, not per subscriber. Adds to `totals`.
   */
  flush(batches: BatchCache = new BatchCache(), totals?: { bytes: number; frames: number; messages: number }): void {
    const queue = this.queue;
    if (queue.length === 0) return;
    this.queue = [];
    this.queuedBytes = 0;
    if (this.ws.readyState !== this.ws.OPEN) return;
    const limit = this.host.limits.maxMessageBytes;
    let start = 0;
    let size = 0;
    for (let i = 0; i <= queue.length; i++) {
      const frame = queue[i];
      if (i === queue.length || (i > start && size + 1 + frame!.length > limit)) {
        const chunk = start === 0 && i === queue.length ? queue : queue.slice(start, i);
        const payload = chunk.length === 1 ? chunk[0]! : batches.join(chunk);
        this.ws.send(payload, { binary: false });
        if (totals) {
          totals.bytes += payload.length;
          totals.frames += chunk.length;
          totals.messages++;
        }
        start = i;
        size = 0;
      }
      if (frame) size += (size === 0 ? 0 : 1) + frame.length;
    }
  }

  /** Send an application event to this client (counts against the send queue like a publication). */
  emit(event: string, data?: unknown): void {
    this.send(data === undefined ? { event } : { event, data }, 'live');
  }

  /**
   * Close on purpose: flush what is queued, send a `disconnect` frame, then the close frame.
   * A peer that does not complete the close handshake is terminated after `graceMs`.
   */
  close(
    code: number,
    reason: string,
    options: { reconnect?: boolean; retryAfterMs?: number; graceMs?: number; notice?: boolean } = {},
  ): void {
    if (this.closing) return;
    if (options.notice === false) {
      this.queue = [];
      this.queuedBytes = 0;
    } else {
      const data: DisconnectData = { code, reason, reconnect: options.reconnect ?? false };
      if (options.retryAfterMs !== undefined) data.retryAfterMs = options.retryAfterMs;
      this.send({ event: ServerEvent.DISCONNECT, data });
      if (this.closing) return; // the notice itself overflowed the queue: closed as a slow consumer
      this.flush();
    }
    this.closing = true;
    this.closeCode = code;
    this.closeReason = reason;
    // Reading may have been paused (flood control): the peer's close frame must be read.
    if (this.ws.isPaused) this.ws.resume();
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    this.terminateTimer = setTimeout(() => this.ws.terminate(), options.graceMs ?? 5000);
    this.terminateTimer.unref();
  }

  /** Drop the connection at once (dead peer, slow consumer): the close frame may not arrive. */
  terminate(code: number, reason: string): void {
    if (!this.closing) {
      this.closing = true;
      this.closeCode = code;
      this.closeReason = reason;
    }
    this.queue = [];
    this.queuedBytes = 0;
    this.ws.terminate();
  }

  /** Called by the server once the socket has closed: release timers. */
  disposed(): void {
    if (this.terminateTimer) clearTimeout(this.terminateTimer);
    this.terminateTimer = undefined;
    this.queue = [];
    this.queuedBytes = 0;
    this.closing = true;
  }
}
