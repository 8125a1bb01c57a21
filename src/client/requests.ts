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
 * - A publish answered `OUTCOME_UNKNOWN` (the server could not learn whether it was applied)
 *   is re-sent with the same id after a short pause (200 ms, doubling, at most 2000 ms) until a
 *   definite answer or its timeout; the server applies it at most once. After that, an
 *   `UNAVAILABLE` reply only says the retry was not applied, so it is retried too, and if time
 *   runs out the publish rejects with `OUTCOME_UNKNOWN`, never with "not applied".
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
  /** Set once a publish was answered OUTCOME_UNKNOWN: it may have been applied. */
  outcomeUnknown?: ChorusClientError;
  /** Re-sends after OUTCOME_UNKNOWN so far. */
  retries?: number;
  /** The pause before the next re-send. */
  retryTimer?: Timer | undefined;
}

export interface RequestsOptions {
  timeoutMs: number;
  maxQueuedPublishes: number;
  maxQueuedAgeMs: number;
  now: () => number;
  /** Send a request again (same frame, same id) on the current connection. */
  resend?: (request: PendingRequest) => void;
}

export class Requests {
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #resend: ((request: PendingRequest) => void) | undefined;
  readonly #inflight = new Map<string, PendingRequest>();
  /** Not sent, or sent and to be re-sent: waiting for the connection, timer running. */
  #waiting: PendingRequest[] = [];
  readonly #queue: OfflineQueue<PendingRequest>;
  #expiryTimer: Timer | undefined;
  #seq = 0;

  constructor(options: RequestsOptions) {
    this.#timeoutMs = options.timeoutMs;
    this.#now = options.now;
    this.#resend = options.resend;
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
    if (!ok && request.kind === 'publish' && this.#resend !== undefined) {
      const error = errorFromReply(data);
      if (error.code === ErrorCode.OUTCOME_UNKNOWN) request.outcomeUnknown = error;
      if (error.code === ErrorCode.OUTCOME_UNKNOWN || (request.outcomeUnknown && error.code === ErrorCode.UNAVAILABLE)) {
        this.#scheduleRetry(request);
        return true;
      }
    }
    this.#inflight.delete(id);
    this.#clearTimer(request);
    if (ok) request.resolve(data);
    else request.reject(errorFromReply(data));
    return true;
  }

  /** Re-send a publish whose outcome is unknown, with the same id, after a pause (its timeout keeps running). */
  #scheduleRetry(request: PendingRequest): void {
    const retries = (request.retries = (request.retries ?? 0) + 1);
    const pause = Math.min(200 * 2 ** (retries - 1), 2000);
    request.retryTimer = setTimeout(() => {
      request.retryTimer = undefined;
      // Only if still waiting for this connection's reply (a reconnect re-sends it anyway).
      if (this.#inflight.get(request.id) === request) this.#resend?.(request);
    }, pause);
  }

  /**
   * The connection dropped: idempotent publishes in flight wait to be re-sent, the rest
   * reject with DISCONNECTED.
   */
  connectionLost(): void {
    const inflight = [...this.#inflight.values()];
    this.#inflight.clear();
    for (const request of inflight) {
      this.#clearRetry(request);
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
      this.#clearRetry(request);
      request.reject(error);
    }
  }

  #startTimer(request: PendingRequest): void {
    if (request.timer !== undefined) return;
    request.timer = setTimeout(() => {
      request.timer = undefined;
      this.#clearRetry(request);
      this.#inflight.delete(request.id);
      const index = this.#waiting.indexOf(request);
      if (index !== -1) this.#waiting.splice(index, 1);
      // Once the server said it may have been applied, time running out does not make it "not applied".
      request.reject(request.outcomeUnknown ?? timeoutError(request.frame.event, this.#timeoutMs));
    }, this.#timeoutMs);
  }

  #clearRetry(request: PendingRequest): void {
    if (request.retryTimer === undefined) return;
    clearTimeout(request.retryTimer);
    request.retryTimer = undefined;
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
