/**
 * Requests awaiting a reply (`ack` or `error` with the same id), and the ones waiting for a
 * connection. Owns every request timer; `rejectAll` clears them.
 *
 * - Sent requests are "in flight" until their reply, their timeout (`TIMEOUT`) or the
 *   connection drops: then idempotent publishes wait to be re-sent with the same id (their
 *   timeout keeps running: it applies overall), every other request rejects with
 *   `DISCONNECTED`.
 * - Publishes made while not connected wait in the bounded OfflineQueue (no timeout until
 *   sent; `QUEUE_FULL` when full or too old).
 * - Other requests made while connecting wait with their timeout running.
 */
import { ErrorCode } from '../protocol/index.js';
import type { Frame } from '../protocol/index.js';
import { ChorusClientError, disconnectedError, errorFromReply, timeoutError } from './errors.js';
import { OfflineQueue } from './offline-queue.js';

export type Timer = ReturnType<typeof setTimeout>;

/** `publish`: queued offline and re-sent with the same id; `request`: waits while connecting; `volatile`: only when connected. */
export type RequestKind = 'publish' | 'request' | 'volatile';

export interface PendingRequest {
  readonly id: string;
  /** Creation order; requests are (re)sent in this order. */
  readonly seq: number;
  readonly frame: Frame & { id: string };
  readonly kind: RequestKind;
  resolve(data: unknown): void;
  reject(error: ChorusClientError): void;
  timer: Timer | undefined;
}

export interface RequestsOptions {
  timeoutMs: number;
  maxQueuedPublishes: number;
  maxQueuedAgeMs: number;
  now: () => number;
}

export class Requests {
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #inflight = new Map<string, PendingRequest>();
  /** Not sent, or sent and to be re-sent: waiting for the connection, timer running. */
  #waiting: PendingRequest[] = [];
  readonly #queue: OfflineQueue<PendingRequest>;
  #expiryTimer: Timer | undefined;
  #seq = 0;

  constructor(options: RequestsOptions) {
    this.#timeoutMs = options.timeoutMs;
    this.#now = options.now;
    this.#queue = new OfflineQueue({
      maxSize: options.maxQueuedPublishes,
      maxAgeMs: options.maxQueuedAgeMs,
      now: options.now,
    });
  }

  /** Requests in flight plus waiting plus queued. */
  get size(): number {
    return this.#inflight.size + this.#waiting.length + this.#queue.size;
  }

  /** Publishes in the offline queue. */
  get queued(): number {
    return this.#queue.size;
  }

  create(frame: Frame & { id: string }, kind: RequestKind): { request: PendingRequest; promise: Promise<unknown> } {
    let resolve!: (data: unknown) => void;
    let reject!: (error: ChorusClientError) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const request: PendingRequest = { id: frame.id, seq: this.#seq++, frame, kind, resolve, reject, timer: undefined };
    return { request, promise };
  }

  /** Record a request as sent (starts its timeout the first time). */
  sent(request: PendingRequest): void {
    this.#startTimer(request);
    this.#inflight.set(request.id, request);
  }

  /** Park a request until the connection is ready. Rejects it at once when it cannot wait. */
  wait(request: PendingRequest): void {
    if (request.kind === 'volatile') {
      request.reject(disconnectedError('not connected'));
      return;
    }
    if (request.kind === 'request') {
      this.#startTimer(request);
      this.#waiting.push(request);
      return;
    }
    const { accepted, expired } = this.#queue.push(request);
    this.#rejectExpired(expired);
    if (!accepted) {
      request.reject(
        new ChorusClientError(ErrorCode.QUEUE_FULL, `offline queue is full (${this.#queue.maxSize} publishes)`),
      );
      return;
    }
    this.#scheduleExpiry();
  }

  /** Settle the request with this id from a reply. Returns false for an unknown id (late or foreign reply). */
  reply(id: string, ok: boolean, data: unknown): boolean {
    const request = this.#inflight.get(id);
    if (request === undefined) return false;
    this.#inflight.delete(id);
    this.#clearTimer(request);
    if (ok) request.resolve(data);
    else request.reject(errorFromReply(data));
    return true;
  }

  /**
   * The connection dropped: idempotent publishes in flight wait to be re-sent, the rest
   * reject with DISCONNECTED.
   */
  connectionLost(): void {
    const inflight = [...this.#inflight.values()];
    this.#inflight.clear();
    for (const request of inflight) {
      if (request.kind === 'publish') {
        this.#waiting.push(request);
      } else {
        this.#clearTimer(request);
        request.reject(disconnectedError());
      }
    }
  }

  /** Take every waiting and queued request to send now, oldest first. */
  takeReady(): PendingRequest[] {
    const { items, expired } = this.#queue.drain();
    this.#rejectExpired(expired);
    this.#clearExpiryTimer();
    const ready = [...this.#waiting, ...items];
    this.#waiting = [];
    ready.sort((a, b) => a.seq - b.seq);
    return ready;
  }

  /** Reject everything (the client stopped) and clear every timer. */
  rejectAll(error: ChorusClientError): void {
    const all = [...this.#inflight.values(), ...this.#waiting, ...this.#queue.drain().items];
    this.#queue.expire();
    this.#inflight.clear();
    this.#waiting = [];
    this.#clearExpiryTimer();
    all.sort((a, b) => a.seq - b.seq);
    for (const request of all) {
      this.#clearTimer(request);
      request.reject(error);
    }
  }

  #startTimer(request: PendingRequest): void {
    if (request.timer !== undefined) return;
    request.timer = setTimeout(() => {
      request.timer = undefined;
      this.#inflight.delete(request.id);
      const index = this.#waiting.indexOf(request);
      if (index !== -1) this.#waiting.splice(index, 1);
      request.reject(timeoutError(request.frame.event, this.#timeoutMs));
    }, this.#timeoutMs);
  }

  #clearTimer(request: PendingRequest): void {
    if (request.timer === undefined) return;
    clearTimeout(request.timer);
    request.timer = undefined;
  }

  #rejectExpired(expired: PendingRequest[]): void {
    for (const request of expired) {
      request.reject(
        new ChorusClientError(
          ErrorCode.QUEUE_FULL,
          `publish waited ${this.#queue.maxAgeMs} ms in the offline queue without a connection`,
        ),
      );
    }
  }

  #scheduleExpiry(): void {
    this.#clearExpiryTimer();
    const at = this.#queue.nextExpiryAt();
    if (at === undefined) return;
    this.#expiryTimer = setTimeout(
      () => {
        this.#expiryTimer = undefined;
        this.#rejectExpired(this.#queue.expire());
        this.#scheduleExpiry();
      },
      Math.max(1, at - this.#now()),
    );
  }

  #clearExpiryTimer(): void {
    if (this.#expiryTimer === undefined) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
  }
}
