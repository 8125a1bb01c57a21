import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { newEpoch, STREAM_META_TTL_MS } from '../memory/streams.js';
import { Sequencer } from '../sequencer.js';
import type { Broker, BrokerEvent, ControlCommand, HistoryStore, PublishOptions, PublishResult } from '../types.js';
import { unavailable, type Client, type RedisKeys } from './clients.js';
import type { RedisClockSync } from './clock-sync.js';
import type { RedisHistoryStore } from './history.js';
import { toPublication, type Envelope, type PublicationBody } from './envelope.js';
import type { ResolvedRedisOptions } from './options.js';

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

  constructor(private readonly context: RedisBrokerContext) {
    const { subscriber, options, logger, history } = context;
    this.publishCommand = options.shardedPubSub ? 'SPUBLISH' : 'PUBLISH';
    this.sequencer = new Sequencer(
      (channel, since, limit) => history.read(channel, { since, limit }),
      (publication, exceptClient) =>
        this.handler(exceptClient === undefined ? { type: 'publication', publication } : { type: 'publication', publication, exceptClient }),
      (channel, reason) => {
        logger?.warn({ channel, reason }, 'pub/sub gap could not be backfilled');
        this.handler({ type: 'lost', channel });
      },
      options.backfillPageSize,
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

  async publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    const { client, keys, clock, now } = this.context;
    const body: PublicationBody = { channel, data, time: now() };
    if (options.publisher) body.publisher = options.publisher;
    try {
      if (options.ephemeral) {
        body.ephemeral = true;
        const envelope: Envelope = { t: 'p', p: body };
        if (options.exceptClient) envelope.x = options.exceptClient;
        await client.call(this.publishCommand, this.key(channel), JSON.stringify(envelope));
        return {};
      }
      const idempotent = options.idempotencyKey !== undefined;
      const sentAt = now();
      const [status, offset, epoch, redisNow] = await client.chorusPublish(
        keys.channel(channel, 'm'),
        keys.channel(channel, 'h'),
        keys.channel(channel, idempotent ? `i:${options.idempotencyKey}` : 'i'),
        JSON.stringify(body),
        options.history?.size ?? 0,
        options.history?.ttlMs ?? STREAM_META_TTL_MS,
        STREAM_META_TTL_MS,
        newEpoch(),
        this.key(channel),
        idempotent ? (options.idempotencyWindowMs ?? 120000) : 0,
        options.exceptClient ?? '',
        this.publishCommand,
        clock.publishDeadline(sentAt),
      );
      clock.observe(Number(redisNow), sentAt);
      if (status === 2) throw new Error('the publish reached Redis after its deadline; nothing was applied');
      return status === 1 ? { offset: Number(offset), epoch, duplicate: true } : { offset: Number(offset), epoch };
    } catch (err) {
      this.context.logger?.warn({ err: { message: (err as Error).message }, channel }, 'redis publish failed');
      throw unavailable(err);
    }
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
    const previous = this.channelOps.get(channel) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(op);
    this.channelOps.set(channel, next);
    void next.catch(() => {}).finally(() => {
      if (this.channelOps.get(channel) === next) this.channelOps.delete(channel);
    });
    return next;
  }

  subscribe(channel: string, options: { recoverable?: boolean } = {}): Promise<void> {
    const { subscriber, history } = this.context;
    return this.serialize(channel, async () => {
      this.subscribed.add(channel);
      this.sequencer.track(channel, options.recoverable ?? true);
      try {
        if (this.context.options.shardedPubSub) await subscriber.ssubscribe(this.key(channel));
        else await subscriber.subscribe(this.key(channel));
        await this.sequencer.advanceTo(channel, await history.positionAfterSubscribe(channel));
      } catch (err) {
        this.subscribed.delete(channel);
        this.sequencer.untrack(channel);
        throw unavailable(err);
      }
    });
  }

  unsubscribe(channel: string): Promise<void> {
    const { subscriber } = this.context;
    return this.serialize(channel, async () => {
      this.subscribed.delete(channel);
      this.sequencer.untrack(channel);
      try {
        if (this.context.options.shardedPubSub) await subscriber.sunsubscribe(this.key(channel));
        else await subscriber.unsubscribe(this.key(channel));
      } catch {
        // Not subscribed server-side any more after a reconnect anyway (we resubscribe only what is tracked).
      }
    });
  }
}
