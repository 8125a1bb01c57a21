import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ChorusError, ErrorCode } from '../../protocol/index.js';
import type { Clock } from '../clock.js';
import { Deadline } from '../deadline.js';
import { newEpoch, STREAM_META_TTL_MS } from '../memory/streams.js';
import { Sequencer } from '../sequencer.js';
import type { Broker, BrokerEvent, ControlCommand, HistoryStore, PublishOptions, PublishResult } from '../types.js';
import { unavailable, type Client, type RedisKeys } from './clients.js';
import type { RedisClockSync } from './clock-sync.js';
import type { RedisHistoryStore } from './history.js';
import { toPublication, type Envelope, type PublicationBody } from './envelope.js';
import type { ResolvedRedisOptions } from './options.js';
import { classifySendFailure, outcomeUnknown, PublishOutcomes } from './outcome.js';
import { TurnBatch } from './turn-batch.js';

/** What the broker needs from its engine. */
export interface RedisBrokerContext {
  client: Client;
  subscriber: Redis | Cluster;
  keys: RedisKeys;
  history: HistoryStore & Pick<RedisHistoryStore, 'positionAfterSubscribe'>;
  clock: RedisClockSync;
  now: Clock;
  options: ResolvedRedisOptions;
  logger: Logger | undefined;
  /** False once the engine is closing: no reconnect attempts, no audits. */
  isOpen(): boolean;
}

/**
 * Fan-out through Redis pub/sub. Publishing is one Lua script per publication (offset +
 * history + pub/sub, atomically per channel). Pub/sub is at-most-once, so each node orders what
 * it receives by offset and backfills gaps from history (see Sequencer): on a gap, after its
 * pub/sub connection reconnects, and in a periodic gap check.
 */
export class RedisBroker implements Broker {
  private handler: (event: BrokerEvent) => void = () => {};
  private readonly sequencer: Sequencer;
  private readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  /** Pending subscribe/unsubscribe per channel, so they apply in call order. */
  private readonly channelOps = new Map<string, Promise<void>>();
  private readonly subscribed = new Set<string>();
  private everReady = false;
  /** Consecutive failed pub/sub resubscriptions (drives the backoff before reconnecting again). */
  private resubscribeFailures = 0;
  private resubscribeTimer: NodeJS.Timeout | undefined;
  private gapCheckTimer: NodeJS.Timeout | undefined;
  private auditing = false;
  private readonly outcomes: PublishOutcomes;
  /**
   * How long the node's own idempotency key of a publish without a caller key lives, in ms:
   * long enough that a lookup within the publish's time budget always finds it if it ran.
   */
  private readonly ownKeyWindowMs: number;
  /** The SUBSCRIBEs of one event-loop turn as one command (classic pub/sub, batching per turn). */
  private readonly subscribes: TurnBatch<string, undefined> | undefined;

  constructor(private readonly context: RedisBrokerContext) {
    const { subscriber, options, logger, history } = context;
    if (options.batchPerTurn && !options.shardedPubSub) {
      this.subscribes = new TurnBatch((keys) => subscriber.subscribe(...keys).then(() => keys.map(() => undefined)));
    }
    this.outcomes = new PublishOutcomes(context.client, options.outcomeTimeoutMs, context.now);
    this.ownKeyWindowMs = 2 * (options.commandTimeoutMs + options.outcomeTimeoutMs) + 5000;
    this.publishCommand = options.shardedPubSub ? 'SPUBLISH' : 'PUBLISH';
    this.sequencer = new Sequencer(
      (channel, since, limit) => history.read(channel, { since, limit }),
      (publication, exceptClient) =>
        this.handler(exceptClient === undefined ? { type: 'publication', publication } : { type: 'publication', publication, exceptClient }),
      (channel, reason) => {
        logger?.warn({ channel, reason }, 'pub/sub gap could not be backfilled');
        this.handler({ type: 'lost', channel });
      },
      { backfillPageSize: options.backfillPageSize, maxHeldPublications: options.maxHeldPublications },
    );
    // Both kinds: with sharded pub/sub, channels arrive as `smessage` but the control channel
    // (classic SUBSCRIBE, cluster-wide) still arrives as `message`.
    subscriber.on('message', (_channel: string, message: string) => this.onMessage(message));
    if (options.shardedPubSub) subscriber.on('smessage', (_channel: string, message: string) => this.onMessage(message));
    subscriber.on('ready', () => void this.onSubscriberReady());
  }

  /**
   * Cluster + sharded pub/sub: a shard's subscriber connection is replaced (node restart, slot
   * move) without a `ready` of the Cluster; ioredis resubscribes it and then emits
   * `subscribersReady`. Our handler resubscribes too (idempotent) and backfills what was
   * published meanwhile.
   */
  watchShardSubscribers(): void {
    this.context.subscriber.on('subscribersReady', () => this.everReady && void this.onSubscriberReady());
  }

  /** Start the periodic gap check. */
  start(): void {
    const interval = this.context.options.gapCheckIntervalMs;
    if (interval > 0 && !this.gapCheckTimer) {
      this.gapCheckTimer = setInterval(() => void this.auditGaps(), interval);
      this.gapCheckTimer.unref();
    }
  }

  close(): void {
    if (this.gapCheckTimer) clearInterval(this.gapCheckTimer);
    if (this.resubscribeTimer) clearTimeout(this.resubscribeTimer);
    this.gapCheckTimer = undefined;
    this.resubscribeTimer = undefined;
  }

  setHandler(handler: (event: BrokerEvent) => void): void {
    this.handler = handler;
  }

  private key(channel: string): string {
    return this.context.keys.channel(channel, 'p');
  }

  /** One round of the periodic gap check (skipped while the previous one runs). */
  private async auditGaps(): Promise<void> {
    if (this.auditing || !this.context.isOpen() || this.context.client.status !== 'ready') return;
    this.auditing = true;
    try {
      await this.sequencer.audit((channel) => this.context.history.position(channel));
    } finally {
      this.auditing = false;
    }
  }

  /** (Re)subscribe the pub/sub connection to everything this node needs, then backfill gaps. */
  private async onSubscriberReady(): Promise<void> {
    const { subscriber, keys, logger } = this.context;
    const first = !this.everReady;
    this.everReady = true;
    try {
      const channels = [keys.control, ...[...this.subscribed].map((c) => this.key(c))];
      if (this.context.options.shardedPubSub) {
        await subscriber.subscribe(keys.control);
        // One SSUBSCRIBE per channel: on Cluster, channels of one SSUBSCRIBE must share a slot.
        await Promise.all(channels.slice(1).map((c) => subscriber.ssubscribe(c)));
      } else {
        await subscriber.subscribe(...channels);
      }
      this.resubscribeFailures = 0;
      if (!first) {
        logger?.warn({ channels: this.subscribed.size }, 'redis pub/sub reconnected; backfilling');
        await this.sequencer.resync((channel) => this.context.history.position(channel));
      }
    } catch (err) {
      // Without its subscriptions the node would receive nothing: reconnect and try again, with
      // our own exponential backoff (ioredis restarts its retry count at every 'ready').
      this.resubscribeFailures++;
      const delay = Math.min(100 * 2 ** Math.min(this.resubscribeFailures - 1, 6), 5000);
      logger?.error(
        { err: { message: (err as Error).message }, attempt: this.resubscribeFailures, retryInMs: delay },
        'redis pub/sub resubscribe failed; reconnecting',
      );
      if (!this.context.isOpen() || this.resubscribeTimer) return;
      this.resubscribeTimer = setTimeout(() => {
        this.resubscribeTimer = undefined;
        if (this.context.isOpen()) subscriber.disconnect(true);
      }, delay);
      this.resubscribeTimer.unref();
    }
  }

  private onMessage(message: string): void {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(message) as Envelope;
    } catch {
      this.context.logger?.warn('unreadable pub/sub message ignored');
      return;
    }
    if (envelope.t === 'p' && envelope.p) {
      this.sequencer.push(toPublication(envelope), envelope.x);
    } else if ((envelope.t === 'j' || envelope.t === 'l') && envelope.c && envelope.u) {
      const event: BrokerEvent = { type: envelope.t === 'j' ? 'join' : 'leave', channel: envelope.c, user: envelope.u };
      if (envelope.i) event.info = envelope.i;
      this.handler(event);
    } else if (envelope.t === 'c' && envelope.k) {
      this.handler({ type: 'control', command: envelope.k });
    }
  }

  /**
   * One Lua script per publication. What the caller is told is always true:
   * - `{offset, epoch}`: applied (also when learned by looking the publish up after its reply
   *   was lost or late);
   * - UNAVAILABLE: definitely not applied (never sent, refused by Redis, or past its deadline);
   * - OUTCOME_UNKNOWN: it may have been applied; a retry with the same idempotency key is
   *   applied at most once. Every publish is recorded under an idempotency key (the caller's, or
   *   the node's own for a short window), so a lost reply can be looked up.
   * An ephemeral publish (no history, no key) cannot be looked up: a lost reply gives OUTCOME_UNKNOWN
   * at once (it may have been delivered; retrying it may deliver it twice).
   */
  async publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    const { client, keys, clock, now } = this.context;
    const body: PublicationBody = { channel, data, time: now() };
    if (options.publisher) body.publisher = options.publisher;
    if (options.key !== undefined) body.key = options.key;
    if (options.ephemeral) {
      body.ephemeral = true;
      const envelope: Envelope = { t: 'p', p: body };
      if (options.exceptClient) envelope.x = options.exceptClient;
      try {
        await client.call(this.publishCommand, this.key(channel), JSON.stringify(envelope));
        return {};
      } catch (err) {
        throw this.publishFailed(err, channel);
      }
    }
    const attempt = randomBytes(9).toString('base64url');
    const callerKey = options.idempotencyKey;
    const key = keys.channel(channel, callerKey !== undefined ? `i:${callerKey}` : `n:${attempt}`);
    const windowMs = callerKey !== undefined ? (options.idempotencyWindowMs ?? 120000) : this.ownKeyWindowMs;
    const sentAt = now();
    const deadline = clock.publishDeadline(sentAt);
    let reply: [number, number, string, number];
    try {
      reply = await client.chorusPublish(
        keys.channel(channel, 'm'),
        keys.channel(channel, 'h'),
        key,
        JSON.stringify(body),
        options.history?.size ?? 0,
        options.history?.ttlMs ?? STREAM_META_TTL_MS,
        STREAM_META_TTL_MS,
        newEpoch(),
        this.key(channel),
        windowMs,
        options.exceptClient ?? '',
        this.publishCommand,
        deadline,
        attempt,
      );
    } catch (err) {
      if (classifySendFailure(err) !== 'unknown') throw this.publishFailed(err, channel);
      this.context.logger?.warn({ err: { message: (err as Error).message }, channel }, 'redis publish reply lost or late; looking it up');
      // The key of a publish that ran (at the latest at its deadline, at the earliest when sent)
      // lives `windowMs` from then on: absent before that proves it did not run.
      const keyAliveUntil = deadline === 0 ? 0 : deadline - this.context.options.commandTimeoutMs + windowMs - 1000;
      return this.outcomes.resolve({ channel, key, attempt, deadline, keyAliveUntil });
    }
    const [status, offset, epoch, redisNow] = reply;
    clock.observe(Number(redisNow), sentAt);
    if (status === 2) throw new ChorusError(ErrorCode.UNAVAILABLE, 'the publish reached Redis after its deadline; nothing was applied');
    return status === 1 ? { offset: Number(offset), epoch, duplicate: true } : { offset: Number(offset), epoch };
  }

  /** The error for a publish that failed: UNAVAILABLE when surely not applied, else OUTCOME_UNKNOWN. */
  private publishFailed(err: unknown, channel: string): ChorusError {
    this.context.logger?.warn({ err: { message: (err as Error).message }, channel }, 'redis publish failed');
    return classifySendFailure(err) === 'unknown' ? outcomeUnknown(channel) : unavailable(err);
  }

  async publishPresenceEvent(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): Promise<void> {
    const envelope: Envelope = { t: event.type === 'join' ? 'j' : 'l', c: event.channel, u: event.user };
    if (event.info) envelope.i = event.info;
    try {
      await this.context.client.call(this.publishCommand, this.key(event.channel), JSON.stringify(envelope));
    } catch (err) {
      throw unavailable(err);
    }
  }

  async publishControl(command: ControlCommand): Promise<void> {
    try {
      await this.context.client.publish(this.context.keys.control, JSON.stringify({ t: 'c', k: command } satisfies Envelope));
    } catch (err) {
      throw unavailable(err);
    }
  }

  private serialize(channel: string, op: () => Promise<void>): Promise<void> {
    const previous = this.channelOps.get(channel);
    // Nothing pending for the channel (nearly always): start at once, no chain to wait on.
    const next = previous ? previous.catch(() => {}).then(op) : op();
    this.channelOps.set(channel, next);
    const done = () => {
      if (this.channelOps.get(channel) === next) this.channelOps.delete(channel);
    };
    next.then(done, done);
    return next;
  }

  /** SUBSCRIBE one channel key: batched with the others of this event-loop turn when batching per turn. */
  private subscribeKey(key: string): Promise<unknown> {
    const { subscriber, options } = this.context;
    if (options.shardedPubSub) return subscriber.ssubscribe(key);
    return this.subscribes ? this.subscribes.add(key) : subscriber.subscribe(key);
  }

  /**
   * SUBSCRIBE, then read the stream's position (anything published between the two is
   * backfilled). Both waits share one budget of `commandTimeoutMs`, counted from the call.
   */
  subscribe(channel: string, options: { recoverable?: boolean } = {}): Promise<void> {
    const { history, now } = this.context;
    const deadline = new Deadline(this.context.options.commandTimeoutMs, now);
    const op = this.serialize(channel, async () => {
      // Waited behind this channel's earlier operations for the whole budget: give up untouched.
      if (deadline.expired) throw unavailable(new Error('subscribe: no time left'));
      this.subscribed.add(channel);
      this.sequencer.track(channel, options.recoverable ?? true);
      try {
        const key = this.key(channel);
        await deadline.race(this.subscribeKey(key), 'SUBSCRIBE');
        const position = await deadline.race(history.positionAfterSubscribe(channel), 'stream position');
        await deadline.race(this.sequencer.advanceTo(channel, position), 'backfill after subscribe');
      } catch (err) {
        this.subscribed.delete(channel);
        this.sequencer.untrack(channel);
        throw unavailable(err);
      }
    });
    return deadline.race(op, 'subscribe').catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  /**
   * Stop receiving the channel. The UNSUBSCRIBE is sent in order with this channel's other
   * operations but not waited for: nothing depends on its reply, and during a Redis stall the
   * caller (e.g. a failed subscribe's cleanup) would wait for nothing.
   */
  unsubscribe(channel: string): Promise<void> {
    const { subscriber } = this.context;
    void this.serialize(channel, async () => {
      this.subscribed.delete(channel);
      this.sequencer.untrack(channel);
      try {
        if (this.context.options.shardedPubSub) await subscriber.sunsubscribe(this.key(channel));
        else await subscriber.unsubscribe(this.key(channel));
      } catch {
        // Not subscribed server-side any more after a reconnect anyway (we resubscribe only what is tracked).
      }
    }).catch(() => {});
    return Promise.resolve();
  }
}
