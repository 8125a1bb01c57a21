import type { WebSocket } from 'ws';
import { Disconnect, ServerEvent, disconnectData, type Codec, type Frame } from '../protocol/index.js';
import type { Publication } from '../engines/types.js';
import { positionsAfterRelief, publicationTag, relieve, sharedCongestionWatch, type CongestionWatch, type QueueTag } from './backpressure.js';
import { BatchCache, type FlushTotals } from './batch.js';
import { newClientId } from './client-id.js';
import { InboundQueue } from './inbound.js';
import { SmallMap } from './small-map.js';
import type { LimitReporter } from './limit-reporter.js';
import type { BackpressurePolicy, ResolvedNamespace } from './options.js';
import { TokenBucket } from './rate-limiter.js';
import type { OutgoingFrame } from './outgoing.js';
import type { FramePosition, Transport } from './transport.js';

/** How a queued frame is treated when the send queue is full (see `Connection.sendEncoded`). */
export type SendMode = 'live' | 'ephemeral' | 'reply';

/** Per-channel state of one connection's subscription. */
export interface SubscriptionState {
  namespace: ResolvedNamespace;
  /**
   * Frames held back while the subscription is being set up (recovery in progress), with the
   * publication they carry (absent for join/leave), so duplicates can be dropped on release.
   */
  pending: Array<{ publication?: Publication; frame: OutgoingFrame }> | undefined;
  /**
   * The position sent in the subscribe result (set when the subscription goes live). A live
   * publication of this epoch at or below `ackedOffset` was already recovered or predates the
   * subscription (a node whose live stream lags behind history), so it is not sent.
   */
  ackedEpoch: string | undefined;
  ackedOffset: number;
  /** Whether this connection has a presence entry in the channel. */
  presence: boolean;
}

/** Writes connections' queued frames soon, batched with other connections (see FlushLoop). */
export interface FlushScheduler {
  schedule(connection: Connection): void;
  /** Told about a message a connection wrote itself, outside a flush (for the outgoing metrics). Optional. */
  sent?(bytes: number): void;
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
    maxPendingFrames: number;
    resumePendingFrames: number;
  };
  now(): number;
  /** Asked to call `connection.flush()` soon once the queue gets its first frame. */
  readonly flushes: FlushScheduler;
  /** Told about slow consumers and dropped ephemeral frames. */
  readonly reporter: LimitReporter;
  /** Retries writes held back by congestion (backpressure policies). Default: one per process. */
  readonly congestion?: CongestionWatch;
}

/** Options of `Connection.close`. */
export interface CloseOptions {
  /** Suggested reconnect delay sent in the `disconnect` frame, in ms (graceful shutdown). */
  retryAfterMs?: number;
  /** A peer that does not complete the close handshake is terminated after this, in ms. Default 5000. */
  graceMs?: number;
  /** Send the queued frames and a `disconnect` frame first. Default true. */
  notice?: boolean;
}

/** The queue of every connection with nothing queued (never mutated: the first frame replaces it). */
const NO_FRAMES: Uint8Array[] = [];

/**
 * One client connection: identity, subscriptions, a bounded send queue that batches the frames
 * queued in one tick into one transport message, heartbeat bookkeeping, the rate bucket, the
 * fault counter and the inbound frame queue. Teardown happens once, through `close` or
 * `terminate`. It knows its transport only through the `Transport` interface.
 */
export class Connection {
  readonly id: string;
  readonly user: string;
  info: Record<string, unknown> | undefined;
  /** Token expiry, ms since the Unix epoch. */
  expiresAt: number | undefined;
  readonly connectedAt: number;
  /** Channel -> subscription state. A `Map` (a `SmallMap`: nearly always one entry, the personal channel). */
  readonly subscriptions: Map<string, SubscriptionState> = new SmallMap();
  /** The inbound queue while it has work or state (see `inbound`); none on an idle connection. */
  private inboundQueue: InboundQueue | undefined;
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

  /** Frames waiting for the next flush; NO_FRAMES (shared) while empty. */
  private queue: Uint8Array[] = NO_FRAMES;
  /** Positions of the queued frames, kept only for transports that take frames one by one (SSE). */
  private positions: Array<FramePosition | undefined> | undefined;
  private queuedBytes = 0;
  /**
   * What each queued frame carries, parallel to `queue`; set once a publication of a namespace
   * with a backpressure policy was queued (see `sendPublication` and backpressure.ts).
   */
  private tags: QueueTag[] | undefined;
  /** Made on the first frame from the client (an idle connection never needs one). */
  private bucket: TokenBucket | undefined;
  private faultWindowStart = 0;
  private faults = 0;
  private terminateTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private closedWaiters: Array<() => void> | undefined;

  constructor(
    readonly transport: Transport,
    identity: { user: string; info?: Record<string, unknown>; expiresAt?: number },
    private readonly host: ConnectionHost,
    id: string = newClientId(host.now()),
  ) {
    this.id = id;
    this.user = identity.user;
    this.info = identity.info;
    this.expiresAt = identity.expiresAt;
    const now = host.now();
    this.connectedAt = now;
    this.lastSeen = now;
    this.lastPing = now;
    if (transport.sendFrames) this.positions = [];
  }

  /**
   * Frames from the client, handled one at a time in order. Created for the first task and
   * dropped again when it has drained (an idle connection keeps none), unless it holds state:
   * paused reading, or reading stopped for abuse.
   */
  get inbound(): InboundQueue {
    return (this.inboundQueue ??= new InboundQueue(this.transport, this.host.limits, this));
  }

  /** Whether reading stopped for good (too many faults; a 1008 close is queued). */
  get abusive(): boolean {
    return this.inboundQueue?.abusive === true;
  }

  /** @internal The inbound queue's last pending task has finished: drop the queue if idle. */
  inboundDrained(queue: InboundQueue): void {
    if (this.inboundQueue === queue && queue.idle) this.inboundQueue = undefined;
  }

  /** The codec of this connection's transport. */
  get codec(): Codec {
    return this.transport.codec;
  }

  /**
   * @deprecated The underlying `ws` WebSocket when the transport is a WebSocket, else undefined;
   * use `transport` (or `close`/`terminate`) instead.
   */
  get ws(): WebSocket | undefined {
    return (this.transport as { socket?: WebSocket }).socket;
  }

  /** Bytes waiting to reach the peer: our queue plus what the transport holds. */
  get pendingBytes(): number {
    return this.queuedBytes + this.transport.bufferedAmount;
  }

  /** Take one frame's worth from the rate bucket. */
  consumeRate() {
    // Created full at connect time, exactly as if it had existed since then.
    this.bucket ??= new TokenBucket(this.host.limits.ratePerSecond, this.host.limits.rateBurst, this.connectedAt);
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
  sendEncoded(frame: Uint8Array, mode: SendMode = 'live', position?: FramePosition): void {
    if (this.closing) return;
    const max = this.host.limits.maxQueuedBytes;
    const before = this.pendingBytes;
    if (mode === 'ephemeral' && before + frame.length > max / 2) {
      this.host.reporter.ephemeralDropped(this);
      return;
    }
    if ((mode === 'reply' ? before : before + frame.length) > max) {
      this.host.reporter.slowConsumer(this);
      this.close(Disconnect.slowConsumer, { notice: false, graceMs: 1000 });
      return;
    }
    if (this.queue === NO_FRAMES) this.queue = [frame];
    else this.queue.push(frame);
    this.positions?.push(position);
    this.tags?.push(undefined);
    this.queuedBytes += frame.length;
    if (this.queue.length === 1) this.host.flushes.schedule(this);
  }

  /** Encode (in this connection's codec) and queue one frame (a reply unless told otherwise). */
  send(frame: Frame, mode: SendMode = 'reply', position?: FramePosition): void {
    this.sendEncoded(this.transport.codec.encode(frame), mode, position);
  }

  /**
   * Send a frame at once when nothing is queued before it and the transport takes text as it is
   * (a JSON WebSocket): the handshake's `connected` frame, written without being turned into
   * bytes first or waiting for the flush. Otherwise the same as `send`.
   */
  sendNow(frame: Frame): void {
    const transport = this.transport;
    const encodeText = transport.codec.encodeText;
    if (this.queue.length > 0 || this.closing || !transport.sendText || !encodeText || !transport.isOpen) {
      this.send(frame);
      return;
    }
    const text = encodeText(frame);
    transport.sendText(text);
    this.host.flushes.sent?.(Buffer.byteLength(text));
  }

  /** Queue a frame shared with other connections (encoded once per codec). */
  sendShared(frame: OutgoingFrame, mode: SendMode = 'live', position?: FramePosition): void {
    this.sendEncoded(frame.encode(this.transport.codec), mode, position);
  }

  /**
   * Queue a live publication under its namespace's `backpressure` policy. `'disconnect'` (and
   * publications without an offset) behave like `sendEncoded`. The other policies keep this
   * connection's own queue within half of `maxQueuedBytes` by skipping queued publications and
   * queueing `skipped` notices in their place (backpressure.ts); writes are held while the
   * transport holds the other half. What cannot be relieved is a slow consumer (4003).
   */
  sendPublication(frame: Uint8Array, publication: Publication, policy: BackpressurePolicy, position?: FramePosition): void {
    if (policy === 'disconnect' || publication.offset === undefined) {
      this.sendEncoded(frame, publication.ephemeral === true ? 'ephemeral' : 'live', position);
      return;
    }
    if (this.closing) return;
    const tags = (this.tags ??= this.queue.map(() => undefined));
    const tag = publicationTag(publication, policy);
    const budget = this.host.limits.maxQueuedBytes / 2;
    if (this.queuedBytes + frame.length <= budget) {
      if (this.queue === NO_FRAMES) this.queue = [frame];
      else this.queue.push(frame);
      tags.push(tag);
      this.positions?.push(position);
      this.queuedBytes += frame.length;
      if (this.queue.length === 1) this.host.flushes.schedule(this);
      return;
    }
    const codec = this.transport.codec;
    const relieved = relieve(this.queue, tags, { frame, tag }, budget, (data) => codec.encode({ event: ServerEvent.SKIPPED, data }));
    if (!relieved) {
      this.host.reporter.slowConsumer(this);
      this.close(Disconnect.slowConsumer, { notice: false, graceMs: 1000 });
      return;
    }
    this.host.reporter.limitHit('backpressure_skipped', this, { channel: publication.channel, policy, skipped: relieved.skipped });
    const wasEmpty = this.queue.length === 0;
    if (this.positions) this.positions = positionsAfterRelief(this.queue, this.positions, frame, position, relieved);
    this.queue = relieved.frames;
    this.tags = relieved.tags;
    this.queuedBytes = relieved.bytes;
    if (wasEmpty && this.queue.length > 0) this.host.flushes.schedule(this);
  }

  /** Called by the congestion watch: try writing the held frames again. */
  retryFlush(): void {
    if (!this.closing && this.queue.length > 0) this.host.flushes.schedule(this);
  }

  /**
   * Write everything queued, joining frames (codec's separator) into transport messages of at most
   * `maxMessageBytes` (a larger single frame goes alone). `batches` shares joined payloads
   * between connections whose queues hold the very same frames (the usual case in fan-out), so
   * each distinct batch is built once per flush, not per subscriber. Adds to `totals`.
   */
  flush(batches: BatchCache = new BatchCache(), totals?: FlushTotals): void {
    const queue = this.queue;
    if (queue.length === 0) return;
    if (this.tags) {
      // Backpressure policies: while the transport holds half the budget, frames wait here,
      // where they can still be skipped.
      if (!this.closing && this.transport.isOpen && this.transport.bufferedAmount >= this.host.limits.maxQueuedBytes / 2) {
        (this.host.congestion ?? sharedCongestionWatch).hold(this);
        return;
      }
      this.tags = [];
    }
    const positions = this.positions;
    this.queue = NO_FRAMES;
    if (positions) this.positions = [];
    this.queuedBytes = 0;
    if (!this.transport.isOpen) return;
    const codec = this.transport.codec;
    if (this.transport.sendFrames && positions) {
      this.transport.sendFrames(queue, positions);
      if (totals) {
        for (const frame of queue) totals.bytes += frame.length;
        totals.frames += queue.length;
        totals.messages++;
      }
      return;
    }
    const separatorBytes = codec.separator.length;
    const limit = this.host.limits.maxMessageBytes;
    let start = 0;
    let size = 0;
    for (let i = 0; i <= queue.length; i++) {
      const frame = queue[i];
      if (i === queue.length || (i > start && size + separatorBytes + frame!.length > limit)) {
        const chunk = start === 0 && i === queue.length ? queue : queue.slice(start, i);
        const payload = chunk.length === 1 ? chunk[0]! : batches.join(chunk, codec);
        this.transport.send(payload, codec.binary);
        if (totals) {
          totals.bytes += payload.length;
          totals.frames += chunk.length;
          totals.messages++;
        }
        start = i;
        size = 0;
      }
      if (frame) size += (size === 0 ? 0 : separatorBytes) + frame.length;
    }
  }

  /** Send an application event to this client (counts against the send queue like a publication). */
  emit(event: string, data?: unknown): void {
    this.send(data === undefined ? { event } : { event, data }, 'live');
  }

  /**
   * Close on purpose: flush what is queued, send a `disconnect` frame (whose `reconnect` follows
   * from the code), then close the transport. A peer that does not complete the close handshake
   * is terminated after `graceMs`. The `(code, reason, options)` form is kept for compatibility.
   */
  close(disconnect: Disconnect, options?: CloseOptions): void;
  close(code: number, reason: string, options?: CloseOptions): void;
  close(what: Disconnect | number, reasonOrOptions?: string | CloseOptions, legacyOptions?: CloseOptions): void {
    const disconnect = typeof what === 'number' ? { code: what, reason: String(reasonOrOptions ?? '') } : what;
    const options = (typeof what === 'number' ? legacyOptions : (reasonOrOptions as CloseOptions | undefined)) ?? {};
    if (this.closing) return;
    if (options.notice === false) {
      this.clearQueue();
    } else {
      this.send({ event: ServerEvent.DISCONNECT, data: disconnectData(disconnect, options.retryAfterMs) });
      if (this.closing) return; // the notice itself overflowed the queue: closed as a slow consumer
      this.tags = undefined; // write what is held, congested or not
      this.flush();
    }
    this.markClosing(disconnect);
    // Reading may have been paused (flood control): the peer's close frame must be read.
    if (this.transport.isPaused) this.transport.resume();
    this.transport.close(disconnect.code, disconnect.reason);
    this.terminateTimer = setTimeout(() => this.transport.terminate(), options.graceMs ?? 5000);
    this.terminateTimer.unref();
  }

  /** Drop the connection at once (dead peer, failed write): the close frame may not arrive. */
  terminate(disconnect: Disconnect): void;
  terminate(code: number, reason: string): void;
  terminate(what: Disconnect | number, reason?: string): void {
    if (!this.closing) this.markClosing(typeof what === 'number' ? { code: what, reason: reason ?? '' } : what);
    this.clearQueue();
    this.transport.terminate();
  }

  private clearQueue(): void {
    this.queue = NO_FRAMES;
    if (this.positions) this.positions = [];
    if (this.tags) this.tags = [];
    this.queuedBytes = 0;
  }

  /** Record the code and reason for logs and metrics, unless a transport fault came first. */
  recordClose(disconnect: Disconnect): void {
    this.closeCode ??= disconnect.code;
    this.closeReason ||= disconnect.reason;
  }

  private markClosing(disconnect: Disconnect): void {
    this.closing = true;
    this.closeCode = disconnect.code;
    this.closeReason = disconnect.reason;
  }

  /** Resolves once the transport has closed and `disposed` ran. */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => (this.closedWaiters ??= []).push(resolve));
  }

  /** Called by the server once the transport has closed: release timers. */
  disposed(): void {
    if (this.terminateTimer) clearTimeout(this.terminateTimer);
    this.terminateTimer = undefined;
    this.clearQueue();
    (this.host.congestion ?? sharedCongestionWatch).release(this);
    this.closing = true;
    this.closed = true;
    const waiters = this.closedWaiters ?? [];
    this.closedWaiters = undefined;
    for (const resolve of waiters) resolve();
  }
}
