/**
 * The Redis engine (`chorus/redis`): many Chorus nodes share offsets, history, presence, the
 * per-user connection cap, idempotency and rate limits through one Redis (standalone, Sentinel
 * or Cluster). This file only assembles the parts:
 *   options.ts     options, their defaults and validation
 *   clients.ts     the two ioredis connections (commands + pub/sub), key names
 *   clock-sync.ts  our estimate of Redis's clock (publish deadlines)
 *   broker.ts      publish and fan-out over pub/sub, ordered and backfilled by ../sequencer.ts
 *   outcome.ts     the truth about a publish whose reply was lost or late (looked up by its key)
 *   history.ts     streams: epoch, offsets, bounded history
 *   presence.ts    presence entries with TTL
 *   registry.ts    the per-user connection cap and token buckets
 *   nodes.ts       each node's report (figures) with a TTL
 *   scripts.ts     the Lua scripts (one atomic step each)
 */
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { StreamPosition } from '../../protocol/index.js';
import { systemClock } from '../clock.js';
import type {
  Broker,
  BrokerEvent,
  ControlCommand,
  Engine,
  HistoryReadOptions,
  HistoryReadResult,
  HistoryStore,
  PublishOptions,
  PublishResult,
} from '../types.js';
import { RedisBroker } from './broker.js';
import { createClients, RedisKeys, type Client } from './clients.js';
import { RedisClockSync } from './clock-sync.js';
import { RedisHistoryStore } from './history.js';
import { validateRedisEngineOptions, type RedisEngineOptions } from './options.js';
import { RedisNodeDirectory } from './nodes.js';
import { RedisPresenceStore } from './presence.js';
import { RedisConnectionRegistry, RedisRateLimiter } from './registry.js';

export { validateRedisEngineOptions, type RedisEngineOptions } from './options.js';
export { EngineOptionError } from '../errors.js';
export { RedisNodeDirectory } from './nodes.js';
export { RedisPresenceStore } from './presence.js';
export { RedisConnectionRegistry, RedisRateLimiter } from './registry.js';

/**
 * The Redis engine. Publishing is one Lua script per publication (offset + history + pub/sub,
 * atomically per channel). Pub/sub is at-most-once, so each node orders what it receives by
 * offset and backfills gaps from history (see Sequencer), also after its pub/sub connection
 * reconnects. The constructor validates its options (EngineOptionError, a TypeError naming the key).
 */
export class RedisEngine implements Engine, Broker, HistoryStore {
  readonly name = 'redis';
  readonly presence: RedisPresenceStore;
  readonly connections: RedisConnectionRegistry;
  readonly rateLimiter: RedisRateLimiter;
  readonly nodes: RedisNodeDirectory;
  readonly client: Client;
  readonly subscriber: Redis | Cluster;
  private readonly streams: RedisHistoryStore;
  private readonly fanout: RedisBroker;
  private readonly clock: RedisClockSync;
  private readonly logger: Logger | undefined;
  private closed = false;

  constructor(options: RedisEngineOptions = {}) {
    const resolved = validateRedisEngineOptions(options);
    const now = options.now ?? systemClock;
    this.logger = options.logger;
    ({ client: this.client, subscriber: this.subscriber } = createClients(options, resolved));
    const keys = new RedisKeys(resolved.prefix);
    this.clock = new RedisClockSync(now, resolved.commandTimeoutMs);
    this.streams = new RedisHistoryStore(this.client, keys, resolved.batchPerTurn);
    this.presence = new RedisPresenceStore(this.client, resolved.prefix);
    this.connections = new RedisConnectionRegistry(this.client, resolved.prefix, resolved.batchPerTurn);
    this.rateLimiter = new RedisRateLimiter(this.client, resolved.prefix);
    this.nodes = new RedisNodeDirectory(this.client, resolved.prefix, now);
    this.fanout = new RedisBroker({
      client: this.client,
      subscriber: this.subscriber,
      keys,
      history: this.streams,
      clock: this.clock,
      now,
      options: resolved,
      logger: this.logger,
      isOpen: () => !this.closed,
    });
    this.client.on('error', (err: Error) => this.logger?.debug({ err: { message: err.message } }, 'redis error'));
    this.subscriber.on('error', (err: Error) => this.logger?.debug({ err: { message: err.message } }, 'redis pub/sub error'));
    this.client.on('ready', () => {
      this.logger?.info('redis connected');
      void this.measureClock(now);
    });
    this.client.on('end', () => !this.closed && this.logger?.error('redis connection ended'));
    this.client.on('reconnecting', () => this.logger?.warn('redis reconnecting'));
    if (options.cluster && resolved.shardedPubSub) this.fanout.watchShardSubscribers();
  }

  get broker(): Broker {
    return this;
  }

  get history(): HistoryStore {
    return this;
  }

  /** Wait for both connections (up to the connect timeout); later outages are handled on their own. */
  async start(): Promise<void> {
    const ready = (c: Redis | Cluster) =>
      c.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 5000);
            timer.unref();
            c.once('ready', () => {
              clearTimeout(timer);
              resolve();
            });
          });
    await Promise.all([ready(this.client), ready(this.subscriber)]);
    this.fanout.start();
    if (this.client.status !== 'ready') this.logger?.error('redis is not reachable yet; operations fail with UNAVAILABLE until it is');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.fanout.close();
    await Promise.allSettled([this.client.quit(), this.subscriber.quit()]);
    this.client.disconnect();
    this.subscriber.disconnect();
  }

  /** Estimate Redis's clock against ours (also refreshed by every publish reply). */
  private async measureClock(now: () => number): Promise<void> {
    const sentAt = now();
    try {
      const [seconds, micros] = await this.client.time();
      this.clock.observe(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), sentAt);
    } catch {
      // The next publish reply measures it.
    }
  }

  setHandler(handler: (event: BrokerEvent) => void): void {
    this.fanout.setHandler(handler);
  }

  publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    return this.fanout.publish(channel, data, options);
  }

  publishPresenceEvent(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): Promise<void> {
    return this.fanout.publishPresenceEvent(event);
  }

  publishControl(command: ControlCommand): Promise<void> {
    return this.fanout.publishControl(command);
  }

  subscribe(channel: string, options: { recoverable?: boolean } = {}): Promise<void> {
    return this.fanout.subscribe(channel, options);
  }

  unsubscribe(channel: string): Promise<void> {
    return this.fanout.unsubscribe(channel);
  }

  read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult> {
    return this.streams.read(channel, options);
  }

  position(channel: string): Promise<StreamPosition> {
    return this.streams.position(channel);
  }
}
