/**
 * One channel subscription: its state machine, position tracking with gap recovery, and the
 * typing helper. Created by `ChorusClient.subscribe` (client-side) or by the client when the
 * server subscribes the connection itself (server-side: `connected.subscriptions` and
 * `subscribed` events).
 */
import { ErrorCode } from '../protocol/index.js';
import type {
  HistoryResult,
  MessageData,
  PresenceEventData,
  PublishResult,
  SkippedData,
  StreamPosition,
  SubscribeResult,
} from '../protocol/index.js';
import type { Backoff } from './backoff.js';
import { Emitter } from './emitter.js';
import type { ChorusClientError } from './errors.js';
import { HISTORY_PAGE_LIMIT, PositionTracker } from './position.js';
import type { Step } from './position.js';
import type { RequestKind, Timer } from './requests.js';
import type { StateChange } from './types.js';
import type { HistoryOptions, PresenceResult } from './types.js';

export const SubscriptionState = {
  /** Not subscribed, and not trying to be. */
  UNSUBSCRIBED: 'unsubscribed',
  /** Wants to be subscribed: waiting for a connection, or for the subscribe ack. */
  SUBSCRIBING: 'subscribing',
  /** The server acknowledged the subscription; messages flow. */
  SUBSCRIBED: 'subscribed',
} as const;
export type SubscriptionState = (typeof SubscriptionState)[keyof typeof SubscriptionState];

/** Options of `ChorusClient.subscribe`. */
export interface SubscribeOptions {
  /** Start from this position: the server first sends every publication after it (recovery). Default: none (live only). */
  since?: StreamPosition;
  /** Receive the channel's latest publication first (dashboards). Default false. */
  snapshot?: boolean;
  /** `startTyping` sends at most one start event per this interval, in ms. Default 3000. */
  typingIntervalMs?: number;
  /** After this long without `startTyping`, a stop event is sent automatically, in ms. Default 5000. */
  typingTimeoutMs?: number;
}

/** Payload of the typing events sent by `startTyping` / `stopTyping` as ephemeral publications. */
export interface TypingPayload {
  type: 'typing';
  typing: boolean;
}

/** Data of a subscription's 'unsubscribed' event. */
export interface UnsubscribedData {
  channel: string;
  /** `client` (unsubscribe() was called), the server's reason, or the error code that ended it. */
  reason: string;
}

/** Data of a subscription's 'recovery-failed' event. */
export interface RecoveryFailedData {
  channel: string;
  /** The position the subscription jumped to. */
  position: StreamPosition | undefined;
}

/** Events of a Subscription. */
export interface SubscriptionEvents<D = unknown> {
  /** Every state change. */
  state: StateChange<SubscriptionState>;
  /** A publication, in offset order, without duplicates (ephemeral ones have no offset). */
  message: MessageData<D>;
  /** A user's first connection subscribed (presence with joinLeave). */
  join: PresenceEventData;
  /** A user's last connection left. */
  leave: PresenceEventData;
  /** The subscribe ack (or the server's `subscribed` data). */
  subscribed: SubscribeResult;
  /** The subscription ended. */
  unsubscribed: UnsubscribedData;
  /** A failed subscribe, history fetch or typing publish. */
  error: ChorusClientError;
  /** Publications were lost for good (recovered:false, epoch change, unfillable gap): reload the app's state. */
  'recovery-failed': RecoveryFailedData;
  /** The server left offsets `from`..`to` out (a `backpressure` policy, this client being slow): not a gap. */
  skipped: SkippedData;
}

/** What a subscription needs from its client (ChorusClient implements it). */
export interface SubscriptionHost {
  /** Whether frames can be sent now (socket open and `connected` received). */
  readonly ready: boolean;
  now(): number;
  request(event: string, data: unknown, kind: RequestKind): Promise<unknown>;
  newBackoff(): Backoff;
}

/** Errors after which a subscribe is retried with backoff; any other error ends the subscription. */
const TRANSIENT_SUBSCRIBE_ERRORS: ReadonlySet<string> = new Set([
  ErrorCode.TIMEOUT,
  ErrorCode.UNAVAILABLE,
  ErrorCode.RATE_LIMITED,
  ErrorCode.INTERNAL,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.ALREADY_SUBSCRIBED,
]);

export class Subscription<D = unknown> extends Emitter<SubscriptionEvents<D>> {
  readonly channel: string;
  #state: SubscriptionState = SubscriptionState.UNSUBSCRIBED;
  readonly #host: SubscriptionHost;
  readonly #options: SubscribeOptions;
  readonly #tracker: PositionTracker;
  #serverSide = false;
  #result: SubscribeResult | undefined;
  /** Changes whenever in-flight work (subscribe, history) must be ignored when it completes. */
  #generation = 0;
  /** Messages received before the subscribe ack: delivered when it arrives. */
  #early: Array<MessageData | { skipped: SkippedData }> = [];
  /** Whether the server may consider us subscribed (a subscribe was sent on this connection). */
  #sent = false;
  #retryTimer: Timer | undefined;
  #backoff: Backoff;
  #typing = false;
  #typingSentAt = 0;
  #typingTimer: Timer | undefined;

  /** @internal Use `ChorusClient.subscribe`. */
  constructor(host: SubscriptionHost, channel: string, options: SubscribeOptions = {}) {
    super();
    this.#host = host;
    this.channel = channel;
    this.#options = options;
    this.#tracker = new PositionTracker(options.since);
    this.#backoff = host.newBackoff();
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  /** The position after the last delivered publication (resubscribes continue from it). */
  get position(): StreamPosition | undefined {
    return this.#tracker.position;
  }

  /** Whether the server subscribed the connection itself (not resubscribed by the client). */
  get serverSide(): boolean {
    return this.#serverSide;
  }

  /** The last subscribe ack (channel features: `history`, `presence`). */
  get result(): SubscribeResult | undefined {
    return this.#result;
  }

  /** Subscribe again after `unsubscribe()` (or after the server ended it). No-op if already subscribing or subscribed. */
  subscribe(): void {
    if (this.#state !== SubscriptionState.UNSUBSCRIBED) return;
    this.#setState(SubscriptionState.SUBSCRIBING);
    this.#backoff.reset();
    if (this.#host.ready) this.#sendSubscribe();
  }

  /** Stop the subscription (tells the server when connected). Resolves once the server acknowledged, or at once offline. */
  async unsubscribe(): Promise<void> {
    if (this.#state === SubscriptionState.UNSUBSCRIBED) return;
    const tell = this.#host.ready && (this.#sent || this.#serverSide);
    this.#end('client');
    if (!tell) return;
    try {
      await this.#host.request('unsubscribe', { channel: this.channel }, 'volatile');
    } catch (err) {
      const code = (err as ChorusClientError).code;
      if (code !== ErrorCode.NOT_SUBSCRIBED && code !== ErrorCode.DISCONNECTED) throw err;
    }
  }

  /** Publish to this channel (see `ChorusClient.publish`). */
  publish(data: unknown, options: { ephemeral?: boolean } = {}): Promise<PublishResult> {
    return this.#host.request(
      'publish',
      options.ephemeral === true ? { channel: this.channel, data, ephemeral: true } : { channel: this.channel, data },
      options.ephemeral === true ? 'volatile' : 'publish',
    ) as Promise<PublishResult>;
  }

  /** Read the channel's retained publications (see `ChorusClient.history`). */
  history(options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.#host.request('history', { channel: this.channel, ...options }, 'request') as Promise<HistoryResult>;
  }

  /** The channel's members, one entry per user. */
  presence(): Promise<PresenceResult> {
    return this.#host.request('presence', { channel: this.channel }, 'request') as Promise<PresenceResult>;
  }

  /**
   * Say the user is typing: sends the ephemeral publication `{"type":"typing","typing":true}`
   * at most once per `typingIntervalMs` (default 3000), and `{"type":"typing","typing":false}`
   * automatically after `typingTimeoutMs` (default 5000) without another call. Call it on every
   * keystroke. Dropped silently while offline.
   */
  startTyping(): void {
    const now = this.#host.now();
    const interval = this.#options.typingIntervalMs ?? 3000;
    if (!this.#typing || now - this.#typingSentAt >= interval) {
      this.#typing = true;
      this.#typingSentAt = now;
      this.#sendTyping(true);
    }
    this.#clearTypingTimer();
    this.#typingTimer = setTimeout(() => {
      this.#typingTimer = undefined;
      this.stopTyping();
    }, this.#options.typingTimeoutMs ?? 5000);
  }

  /** Say the user stopped typing: sends `{"type":"typing","typing":false}` now (if a start was sent). */
  stopTyping(): void {
    this.#clearTypingTimer();
    if (!this.#typing) return;
    this.#typing = false;
    this.#sendTyping(false);
  }

  // ---- called by the client ----

  /** @internal The connection is ready: (re)send the subscribe of a client-side subscription. */
  _connected(): void {
    if (this.#serverSide || this.#state === SubscriptionState.UNSUBSCRIBED) return;
    this.#sendSubscribe();
  }

  /** @internal The connection dropped (or the client closed): wait for the next connection. */
  _connectionLost(): void {
    this.#generation++;
    this.#sent = false;
    this.#early = [];
    this.#tracker.abortRecovery();
    this.#clearRetryTimer();
    this.#typing = false;
    this.#clearTypingTimer();
    if (this.#state === SubscriptionState.SUBSCRIBED) this.#setState(SubscriptionState.SUBSCRIBING);
  }

  /** @internal The server subscribed this connection (connected.subscriptions or a `subscribed` event). */
  _serverSubscribed(result: SubscribeResult): void {
    this.#serverSide = true;
    this.#generation++;
    this.#clearRetryTimer();
    const previous = this.#tracker.position;
    const wasUnsubscribed = this.#state === SubscriptionState.UNSUBSCRIBED;
    this.#result = result;
    const target = { offset: result.offset, epoch: result.epoch };
    this.#setState(SubscriptionState.SUBSCRIBED);
    this.emitEvent('subscribed', result);
    if (previous === undefined || wasUnsubscribed) {
      this.#tracker.reset(target);
      return;
    }
    // After a reconnect: recover what was published meanwhile from history.
    this.#apply(this.#tracker.recoverTo(target));
  }

  /** @internal The server-side subscription was not renewed after a reconnect, or the server unsubscribed us. */
  _serverUnsubscribed(reason: string): void {
    if (this.#state === SubscriptionState.UNSUBSCRIBED) return;
    this.#end(reason);
  }

  /** @internal A `message` frame for this channel. */
  _message(message: MessageData): void {
    if (this.#state === SubscriptionState.UNSUBSCRIBED) return;
    if (this.#state === SubscriptionState.SUBSCRIBING) {
      this.#early.push(message);
      return;
    }
    this.#apply(this.#tracker.receive(message));
  }

  /** @internal A `skipped` frame for this channel. */
  _skipped(data: SkippedData): void {
    if (this.#state === SubscriptionState.UNSUBSCRIBED) return;
    if (this.#state === SubscriptionState.SUBSCRIBING) this.#early.push({ skipped: data });
    else this.#applySkip(data);
  }

  #applySkip(data: SkippedData): void {
    this.#apply(this.#tracker.skip(data));
    if (this.#state === SubscriptionState.SUBSCRIBED) this.emitEvent('skipped', data);
  }

  /** @internal A `join` or `leave` frame for this channel. */
  _presence(event: 'join' | 'leave', data: PresenceEventData): void {
    if (this.#state === SubscriptionState.SUBSCRIBED) this.emitEvent(event, data);
  }

  /** @internal The client stops for good: clear every timer. */
  _dispose(): void {
    this._connectionLost();
  }

  // ---- internals ----

  #setState(newState: SubscriptionState): void {
    const oldState = this.#state;
    if (oldState === newState) return;
    this.#state = newState;
    this.emitEvent('state', { oldState, newState });
  }

  #end(reason: string): void {
    this.#generation++;
    this.#sent = false;
    this.#serverSide = false;
    this.#early = [];
    this.#tracker.abortRecovery();
    this.#clearRetryTimer();
    this.stopTyping();
    this.#setState(SubscriptionState.UNSUBSCRIBED);
    this.emitEvent('unsubscribed', { channel: this.channel, reason });
  }

  #sendSubscribe(): void {
    const generation = ++this.#generation;
    this.#early = [];
    this.#tracker.abortRecovery();
    const since = this.#tracker.position;
    const request: Record<string, unknown> = { channel: this.channel };
    if (since !== undefined) request.since = since;
    if (this.#options.snapshot === true) request.snapshot = true;
    this.#sent = true;
    this.#host.request('subscribe', request, 'volatile').then(
      (data) => {
        if (generation === this.#generation) this.#subscribed(data as SubscribeResult);
      },
      (err: ChorusClientError) => {
        if (generation === this.#generation) this.#subscribeFailed(err);
      },
    );
  }

  #subscribed(result: SubscribeResult): void {
    this.#backoff.reset();
    this.#result = result;
    const previous = this.#tracker.position;
    const early = this.#early;
    this.#early = [];
    this.#tracker.reset({ offset: result.offset, epoch: result.epoch });
    this.#setState(SubscriptionState.SUBSCRIBED);
    this.emitEvent('subscribed', result);
    if (result.recovered === false) this.#recoveryFailed();
    // Recovered publications (or the snapshot) came before the ack; drop what was delivered already.
    // `early` may also hold live publications the server sent right AFTER the ack: the ack is
    // handled a microtask later, so frames read in the same chunk land here first. They follow
    // the ack's position and must move the tracker like any live message.
    let last = previous;
    for (const message of early) {
      if (this.#state !== SubscriptionState.SUBSCRIBED) return;
      if ('skipped' in message) {
        if (message.skipped.epoch === result.epoch && message.skipped.to > result.offset) this.#applySkip(message.skipped);
        continue;
      }
      if (message.offset !== undefined && message.epoch === result.epoch && message.offset > result.offset) {
        this.#apply(this.#tracker.receive(message));
        continue;
      }
      if (message.offset !== undefined && message.epoch !== undefined) {
        if (last !== undefined && last.epoch === message.epoch && message.offset <= last.offset) continue;
        last = { offset: message.offset, epoch: message.epoch };
      }
      this.emitEvent('message', message as MessageData<D>);
    }
  }

  #subscribeFailed(err: ChorusClientError): void {
    this.#sent = false;
    if (err.code === ErrorCode.DISCONNECTED) return; // resubscribed on the next connection
    this.emitEvent('error', err);
    if (this.#state === SubscriptionState.UNSUBSCRIBED) return;
    if (!TRANSIENT_SUBSCRIBE_ERRORS.has(err.code)) {
      this.#end(err.code);
      return;
    }
    if (err.code === ErrorCode.ALREADY_SUBSCRIBED || err.code === ErrorCode.TIMEOUT) {
      // The server may hold a subscription we do not know the position of: drop it first.
      this.#host.request('unsubscribe', { channel: this.channel }, 'volatile').catch(() => {});
    }
    const generation = this.#generation;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (generation === this.#generation && this.#host.ready) this.#sendSubscribe();
    }, this.#backoff.next());
  }

  #apply(step: Step): void {
    if (step.recoveryFailed) this.#recoveryFailed();
    for (const message of step.deliver) {
      if (this.#state !== SubscriptionState.SUBSCRIBED) return;
      this.emitEvent('message', message as MessageData<D>);
    }
    if (step.fetchSince !== undefined) this.#fetchGap(step.fetchSince);
  }

  #fetchGap(since: StreamPosition): void {
    const generation = this.#generation;
    this.#host.request('history', { channel: this.channel, since, limit: HISTORY_PAGE_LIMIT }, 'volatile').then(
      (data) => {
        if (generation !== this.#generation || this.#state !== SubscriptionState.SUBSCRIBED) return;
        this.#apply(this.#tracker.applyHistory(data as HistoryResult));
      },
      (err: ChorusClientError) => {
        if (generation !== this.#generation || this.#state !== SubscriptionState.SUBSCRIBED) return;
        if (err.code === ErrorCode.DISCONNECTED) return; // the resubscribe recovers with `since`
        this.emitEvent('error', err);
        this.#apply(this.#tracker.failRecovery());
      },
    );
  }

  #recoveryFailed(): void {
    this.emitEvent('recovery-failed', { channel: this.channel, position: this.#tracker.position });
  }

  #sendTyping(typing: boolean): void {
    if (!this.#host.ready) return;
    const payload: TypingPayload = { type: 'typing', typing };
    this.#host
      .request('publish', { channel: this.channel, data: payload, ephemeral: true }, 'volatile')
      .catch((err: ChorusClientError) => {
        if (err.code !== ErrorCode.DISCONNECTED) this.emitEvent('error', err);
      });
  }

  #clearRetryTimer(): void {
    if (this.#retryTimer === undefined) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #clearTypingTimer(): void {
    if (this.#typingTimer === undefined) return;
    clearTimeout(this.#typingTimer);
    this.#typingTimer = undefined;
  }
}
