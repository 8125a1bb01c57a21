import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { ChorusError, ErrorCode, type PresenceMember, type StreamPosition } from '../../protocol/index.js';
import type {
  Broker,
  BrokerEvent,
  ConnectionRegistry,
  ControlCommand,
  Engine,
  HistoryReadOptions,
  HistoryReadResult,
  HistoryStore,
  PresenceEntry,
  PresenceStore,
  Publication,
  PublishOptions,
  PublishResult,
  RateLimiter,
} from '../types.js';
import { STREAM_META_TTL_MS } from '../memory/streams.js';
import * as scripts from './scripts.js';
import { Sequencer } from './sequence.js';

export interface RedisEngineOptions {
  /** `redis://[:password@]host:port[/db]` or `rediss://` for TLS. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Extra ioredis options (password, tls, db, `sentinels` + `name` for Redis Sentinel, ...). */
  redis?: RedisOptions;
  /** Redis Cluster start-up nodes; when set, `url` is ignored and ioredis' Cluster client is used. */
  cluster?: ClusterNode[];
  /** ioredis Cluster options (with `cluster`). */
  clusterOptions?: ClusterOptions;
  /** Use sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7) — with `cluster`. Default false. */
  shardedPubSub?: boolean;
  /** Prefix of every key and pub/sub channel. Default `chorus`. */
  prefix?: string;
  /** A command (publish included) not answered within this is failed with UNAVAILABLE, in ms. Default 2000. */
  commandTimeoutMs?: number;
  /** Publications read per history page when a node backfills a pub/sub gap. Default 1000. */
  backfillPageSize?: number;
  /**
   * How often a node compares its channels with their streams to backfill publications pub/sub
   * dropped silently, in ms; 0 turns it off. One read per channel with local subscribers per
   * round. Default 10000.
   */
  gapCheckIntervalMs?: number;
  /** Shown in Redis' CLIENT LIST as `chorus-<name>-commands` / `chorus-<name>-pubsub` (e.g. the node id). */
  name?: string;
  /** Logger for connection state changes. */
  logger?: Logger;
}

type Scripted = {
  chorusPublish(...args: Array<string | number>): Promise<[number, number, string, number]>;
  chorusRead(...args: Array<string | number>): Promise<Array<string | number>>;
  chorusPresenceAdd(...args: Array<string | number>): Promise<number>;
  chorusPresenceRemove(...args: Array<string | number>): Promise<[number, string]>;
  chorusPresenceList(...args: Array<string | number>): Promise<string[]>;
  chorusReserve(...args: Array<string | number>): Promise<number>;
  chorusRefresh(...args: Array<string | number>): Promise<number>;
  chorusBucket(...args: Array<string | number>): Promise<[number, number]>;
};
type Client = (Redis | Cluster) & Scripted;

interface Envelope {
  t: 'p' | 'j' | 'l' | 'c';
  /** publication: offset, epoch, history flag, excluded client, body */
  o?: number;
  e?: string;
  h?: 0 | 1;
  x?: string;
  p?: { channel: string; data: unknown; time: number; publisher?: Publication['publisher']; ephemeral?: boolean };
  /** join/leave: channel, user, info */
  c?: string;
  u?: string;
  i?: Record<string, unknown>;
  /** control */
  k?: ControlCommand;
}

function unavailable(err: unknown): ChorusError {
  if (err instanceof ChorusError) return err;
  return new ChorusError(ErrorCode.UNAVAILABLE, 'the engine (Redis) is unavailable; nothing was applied');
}

function newEpoch(): string {
  return randomBytes(6).toString('base64url');
}

/**
 * The Redis engine: many Chorus nodes share offsets, history, presence, the per-user connection
 * cap, idempotency and rate limits through one Redis (standalone, Sentinel or Cluster).
 *
 * Publishing is one Lua script per publication (offset + history + pub/sub, atomically per
 * channel). Pub/sub is at-most-once, so each node orders what it receives by offset and
 * backfills gaps from history (see Sequencer), also after its pub/sub connection reconnects.
 */
export class RedisEngine implements Engine, Broker, HistoryStore {
  readonly name = 'redis';
  readonly presence: RedisPresenceStore;
  readonly connections: RedisConnectionRegistry;
  readonly rateLimiter: RedisRateLimiter;
  readonly client: Client;
  readonly subscriber: Redis | Cluster;
  private readonly prefix: string;
  private readonly sharded: boolean;
  private readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  private readonly sequencer: Sequencer;
  private handler: (event: BrokerEvent) => void = () => {};
  private readonly logger: Logger | undefined;
  /** Pending subscribe/unsubscribe per channel, so they apply in call order. */
  private readonly channelOps = new Map<string, Promise<void>>();
  private readonly subscribed = new Set<string>();
  private everReady = false;
  private closed = false;
  private readonly commandTimeoutMs: number;
  /** Redis's clock minus ours, in ms: publish deadlines are given to the script in Redis time. */
  private clockOffsetMs = 0;
  /** Half the round trip of the sample behind `clockOffsetMs` (how wrong it may be), in ms. */
  private clockUncertaintyMs = Number.POSITIVE_INFINITY;
  private clockSampledAt = 0;
  /** Consecutive failed pub/sub resubscriptions (drives the backoff before reconnecting again). */
  private resubscribeFailures = 0;
  private resubscribeTimer: NodeJS.Timeout | undefined;
  private readonly gapCheckIntervalMs: number;
  private gapCheckTimer: NodeJS.Timeout | undefined;
  private auditing = false;

  constructor(options: RedisEngineOptions = {}) {
    this.prefix = options.prefix ?? 'chorus';
    this.sharded = options.shardedPubSub === true;
    this.publishCommand = this.sharded ? 'SPUBLISH' : 'PUBLISH';
    this.logger = options.logger;
    const timeout = options.commandTimeoutMs ?? 2000;
    this.commandTimeoutMs = timeout;
    this.gapCheckIntervalMs = options.gapCheckIntervalMs ?? 10000;
    const common: RedisOptions = {
      commandTimeout: timeout,
      connectTimeout: Math.max(timeout, 2000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
      // Sentinel: drop the connection as soon as a sentinel announces +switch-master. Without it
      // the old master keeps accepting our writes until Sentinel demotes it (about 8-10 s later),
      // and those publications are lost with its data set.
      ...(options.redis?.sentinels ? { failoverDetector: true } : {}),
      ...options.redis,
    };
    const tag = options.name ? `${options.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-` : '';
    const make = (role: string): Redis | Cluster => {
      if (options.cluster) {
        return new Cluster(options.cluster, {
          enableOfflineQueue: false,
          clusterRetryStrategy: (times: number) => Math.min(100 * times, 2000),
          ...options.clusterOptions,
          // SSUBSCRIBE must reach the master that owns the channel's slot. ioredis routes it there
          // only with `shardedSubscribers` (one subscriber connection per master); otherwise every
          // SSUBSCRIBE goes to its one classic subscriber node and fails (MOVED) for other slots.
          ...(role === 'pubsub' && this.sharded ? { shardedSubscribers: true } : {}),
          // Node connections: our defaults, then `redis`, then `clusterOptions.redisOptions` (was dropped).
          redisOptions: { ...common, ...options.clusterOptions?.redisOptions, connectionName: `chorus-${tag}${role}` },
        });
      }
      const opts: RedisOptions = { ...common, connectionName: `chorus-${tag}${role}`, autoResubscribe: false };
      return options.url ? new Redis(options.url, opts) : new Redis(opts);
    };
    this.client = make('commands') as Client;
    this.subscriber = make('pubsub');
    for (const [name, lua, keys] of [
      ['chorusPublish', scripts.PUBLISH, 3],
      ['chorusRead', scripts.READ, 2],
      ['chorusPresenceAdd', scripts.PRESENCE_ADD, 3],
      ['chorusPresenceRemove', scripts.PRESENCE_REMOVE, 3],
      ['chorusPresenceList', scripts.PRESENCE_LIST, 3],
      ['chorusReserve', scripts.RESERVE, 1],
      ['chorusRefresh', scripts.REFRESH, 1],
      ['chorusBucket', scripts.TOKEN_BUCKET, 1],
    ] as const) {
      this.client.defineCommand(name, { numberOfKeys: keys, lua });
    }
    this.presence = new RedisPresenceStore(this.client, this.prefix);
    this.connections = new RedisConnectionRegistry(this.client, this.prefix);
    this.rateLimiter = new RedisRateLimiter(this.client, this.prefix);
    this.sequencer = new Sequencer(
      (channel, since, limit) => this.read(channel, { since, limit }),
      (publication, exceptClient) =>
        this.handler(exceptClient === undefined ? { type: 'publication', publication } : { type: 'publication', publication, exceptClient }),
      (channel, reason) => {
        this.logger?.warn({ channel, reason }, 'pub/sub gap could not be backfilled');
        this.handler({ type: 'lost', channel });
      },
      options.backfillPageSize ?? 1000,
    );
    this.client.on('error', (err: Error) => this.logger?.debug({ err: { message: err.message } }, 'redis error'));
    this.subscriber.on('error', (err: Error) => this.logger?.debug({ err: { message: err.message } }, 'redis pub/sub error'));
    this.client.on('ready', () => {
      this.logger?.info('redis connected');
      void this.measureClock();
    });
    this.client.on('end', () => !this.closed && this.logger?.error('redis connection ended'));
    this.client.on('reconnecting', () => this.logger?.warn('redis reconnecting'));
    // Both kinds: with sharded pub/sub, channels arrive as `smessage` but the control channel
    // (classic SUBSCRIBE, cluster-wide) still arrives as `message`.
    this.subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    if (this.sharded) this.subscriber.on('smessage', (channel: string, message: string) => this.onMessage(channel, message));
    this.subscriber.on('ready', () => void this.onSubscriberReady());
    // Cluster + sharded pub/sub: a shard's subscriber connection is replaced (node restart, slot
    // move) without a `ready` of the Cluster; ioredis resubscribes it and then emits this. Our
    // handler resubscribes too (idempotent) and backfills what was published meanwhile.
    if (options.cluster && this.sharded) this.subscriber.on('subscribersReady', () => this.everReady && void this.onSubscriberReady());
  }

  get broker(): Broker {
    return this;
  }

  get history(): HistoryStore {
    return this;
  }

  private key(channel: string, suffix: string): string {
    return `${this.prefix}:{${channel}}:${suffix}`;
  }

  private get controlChannel(): string {
    return `${this.prefix}:control`;
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
    if (this.gapCheckIntervalMs > 0 && !this.gapCheckTimer) {
      this.gapCheckTimer = setInterval(() => void this.auditGaps(), this.gapCheckIntervalMs);
      this.gapCheckTimer.unref();
    }
    if (this.client.status !== 'ready') this.logger?.error('redis is not reachable yet; operations fail with UNAVAILABLE until it is');
  }

  /** One round of the periodic gap check (skipped while the previous one runs). */
  private async auditGaps(): Promise<void> {
    if (this.auditing || this.closed || this.client.status !== 'ready') return;
    this.auditing = true;
    try {
      await this.sequencer.audit((channel) => this.position(channel));
    } finally {
      this.auditing = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.gapCheckTimer) clearInterval(this.gapCheckTimer);
    if (this.resubscribeTimer) clearTimeout(this.resubscribeTimer);
    await Promise.allSettled([this.client.quit(), this.subscriber.quit()]);
    this.client.disconnect();
    this.subscriber.disconnect();
  }

  /** (Re)subscribe the pub/sub connection to everything this node needs, then backfill gaps. */
  private async onSubscriberReady(): Promise<void> {
    const first = !this.everReady;
    this.everReady = true;
    try {
      const channels = [this.controlChannel, ...[...this.subscribed].map((c) => this.key(c, 'p'))];
      if (this.sharded) {
        await this.subscriber.subscribe(this.controlChannel);
        // One SSUBSCRIBE per channel: on Cluster, channels of one SSUBSCRIBE must share a slot.
        await Promise.all(channels.slice(1).map((c) => this.subscriber.ssubscribe(c)));
      } else {
        await this.subscriber.subscribe(...channels);
      }
      this.resubscribeFailures = 0;
      if (!first) {
        this.logger?.warn({ channels: this.subscribed.size }, 'redis pub/sub reconnected; backfilling');
        await this.sequencer.resync((channel) => this.position(channel));
      }
    } catch (err) {
      // Without its subscriptions the node would receive nothing: reconnect and try again, with
      // our own exponential backoff (ioredis restarts its retry count at every 'ready').
      this.resubscribeFailures++;
      const delay = Math.min(100 * 2 ** Math.min(this.resubscribeFailures - 1, 6), 5000);
      this.logger?.error(
        { err: { message: (err as Error).message }, attempt: this.resubscribeFailures, retryInMs: delay },
        'redis pub/sub resubscribe failed; reconnecting',
      );
      if (this.closed || this.resubscribeTimer) return;
      this.resubscribeTimer = setTimeout(() => {
        this.resubscribeTimer = undefined;
        if (!this.closed) this.subscriber.disconnect(true);
      }, delay);
      this.resubscribeTimer.unref();
    }
  }

  private onMessage(_redisChannel: string, message: string): void {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(message) as Envelope;
    } catch {
      this.logger?.warn('unreadable pub/sub message ignored');
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

  setHandler(handler: (event: BrokerEvent) => void): void {
    this.handler = handler;
  }

  /** Estimate Redis's clock against ours (also refreshed by every publish reply). */
  private async measureClock(): Promise<void> {
    const sentAt = Date.now();
    try {
      const [seconds, micros] = await this.client.time();
      this.observeClock(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), sentAt);
    } catch {
      // The next publish reply measures it.
    }
  }

  /**
   * Take a sample of Redis's clock. The reply's time lies somewhere in the round trip, so a
   * sample is only as good as half its round trip: a sample from a slow round trip (Redis
   * stalled, queued commands) is ignored unless it beats the one we have or ours is old.
   */
  private observeClock(redisNowMs: number, sentAt: number): void {
    if (!Number.isFinite(redisNowMs)) return;
    const now = Date.now();
    const uncertainty = (now - sentAt) / 2;
    const stale = now - this.clockSampledAt > 60000;
    if (uncertainty <= this.clockUncertaintyMs || (stale && uncertainty <= 25)) {
      this.clockOffsetMs = redisNowMs - (sentAt + now) / 2;
      this.clockUncertaintyMs = uncertainty;
      this.clockSampledAt = now;
    }
  }

  /**
   * The Redis time after which a publish sent now must not be applied: by then the command has
   * timed out here and the caller was told UNAVAILABLE ("nothing was applied"). A margin before
   * the timeout leaves room for the reply of a script that ran just in time.
   */
  private publishDeadline(sentAt: number): number {
    if (!Number.isFinite(this.clockUncertaintyMs)) return 0; // no clock sample yet: no deadline
    const margin = Math.min(250, Math.floor(this.commandTimeoutMs / 4));
    return Math.max(1, Math.round(sentAt + this.clockOffsetMs + this.commandTimeoutMs - margin - this.clockUncertaintyMs));
  }

  async publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    const body: NonNullable<Envelope['p']> = { channel, data, time: Date.now() };
    if (options.publisher) body.publisher = options.publisher;
    try {
      if (options.ephemeral) {
        body.ephemeral = true;
        const envelope: Envelope = { t: 'p', p: body };
        if (options.exceptClient) envelope.x = options.exceptClient;
        await this.client.call(this.publishCommand, this.key(channel, 'p'), JSON.stringify(envelope));
        return {};
      }
      const idempotent = options.idempotencyKey !== undefined;
      const sentAt = Date.now();
      const [status, offset, epoch, redisNow] = await this.client.chorusPublish(
        this.key(channel, 'm'),
        this.key(channel, 'h'),
        this.key(channel, idempotent ? `i:${options.idempotencyKey}` : 'i'),
        JSON.stringify(body),
        options.history?.size ?? 0,
        options.history?.ttlMs ?? STREAM_META_TTL_MS,
        STREAM_META_TTL_MS,
        newEpoch(),
        this.key(channel, 'p'),
        idempotent ? (options.idempotencyWindowMs ?? 120000) : 0,
        options.exceptClient ?? '',
        this.publishCommand,
        this.publishDeadline(sentAt),
      );
      this.observeClock(Number(redisNow), sentAt);
      if (status === 2) throw new Error('the publish reached Redis after its deadline; nothing was applied');
      return status === 1 ? { offset: Number(offset), epoch, duplicate: true } : { offset: Number(offset), epoch };
    } catch (err) {
      this.logger?.warn({ err: { message: (err as Error).message }, channel }, 'redis publish failed');
      throw unavailable(err);
    }
  }

  async publishPresenceEvent(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): Promise<void> {
    const envelope: Envelope = { t: event.type === 'join' ? 'j' : 'l', c: event.channel, u: event.user };
    if (event.info) envelope.i = event.info;
    try {
      await this.client.call(this.publishCommand, this.key(event.channel, 'p'), JSON.stringify(envelope));
    } catch (err) {
      throw unavailable(err);
    }
  }

  async publishControl(command: ControlCommand): Promise<void> {
    try {
      await this.client.publish(this.controlChannel, JSON.stringify({ t: 'c', k: command } satisfies Envelope));
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
    return this.serialize(channel, async () => {
      this.subscribed.add(channel);
      this.sequencer.track(channel, options.recoverable ?? true);
      try {
        if (this.sharded) await this.subscriber.ssubscribe(this.key(channel, 'p'));
        else await this.subscriber.subscribe(this.key(channel, 'p'));
        await this.sequencer.advanceTo(channel, await this.position(channel));
      } catch (err) {
        this.subscribed.delete(channel);
        this.sequencer.untrack(channel);
        throw unavailable(err);
      }
    });
  }

  unsubscribe(channel: string): Promise<void> {
    return this.serialize(channel, async () => {
      this.subscribed.delete(channel);
      this.sequencer.untrack(channel);
      try {
        if (this.sharded) await this.subscriber.sunsubscribe(this.key(channel, 'p'));
        else await this.subscriber.unsubscribe(this.key(channel, 'p'));
      } catch {
        // Not subscribed server-side any more after a reconnect anyway (we resubscribe only what is tracked).
      }
    });
  }

  async read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult> {
    let reply: Array<string | number>;
    try {
      reply = await this.client.chorusRead(
        this.key(channel, 'm'),
        this.key(channel, 'h'),
        newEpoch(),
        STREAM_META_TTL_MS,
        options.since?.offset ?? 0,
        options.limit,
        options.reverse ? 1 : 0,
      );
    } catch (err) {
      throw unavailable(err);
    }
    const epoch = String(reply[0]);
    const top = Number(reply[1]);
    const firstOffset = Number(reply[2]);
    if (options.since && options.since.epoch !== epoch) {
      throw new ChorusError(ErrorCode.UNRECOVERABLE_POSITION, 'the position belongs to an earlier epoch of this channel; its history is gone');
    }
    const publications: Publication[] = [];
    for (let i = 3; i < reply.length; i++) {
      const stored = JSON.parse(String(reply[i])) as Envelope;
      publications.push(toPublication(stored));
    }
    if (options.reverse) publications.reverse();
    return { publications, position: { offset: top, epoch }, firstOffset };
  }

  async position(channel: string): Promise<StreamPosition> {
    const read = await this.read(channel, { limit: 0 });
    return read.position;
  }
}

function toPublication(envelope: Envelope): Publication {
  const body = envelope.p!;
  const publication: Publication = { channel: body.channel, data: body.data, time: body.time };
  if (envelope.o !== undefined) {
    publication.offset = envelope.o;
    publication.epoch = envelope.e!;
  }
  if (body.publisher) publication.publisher = body.publisher;
  if (body.ephemeral) publication.ephemeral = true;
  return publication;
}

/** Presence in Redis: per-connection entries with TTL, aggregated per user; a dead node's entries expire. */
export class RedisPresenceStore implements PresenceStore {
  constructor(
    private readonly client: Client,
    private readonly prefix: string,
  ) {}

  private keys(channel: string): [string, string, string] {
    const base = `${this.prefix}:{${channel}}`;
    return [`${base}:pc`, `${base}:pe`, `${base}:pu`];
  }

  async add(channel: string, clientId: string, entry: PresenceEntry, ttlMs: number): Promise<{ firstForUser: boolean }> {
    try {
      const first = await this.client.chorusPresenceAdd(...this.keys(channel), clientId, JSON.stringify(entry), entry.user, ttlMs);
      return { firstForUser: first === 1 };
    } catch (err) {
      throw unavailable(err);
    }
  }

  async remove(channel: string, clientId: string): Promise<{ lastForUser: boolean; user?: string }> {
    try {
      const [last, user] = await this.client.chorusPresenceRemove(...this.keys(channel), clientId);
      return user ? { lastForUser: last === 1, user } : { lastForUser: false };
    } catch (err) {
      throw unavailable(err);
    }
  }

  private async listRaw(channel: string, sweep: boolean): Promise<{ gone: PresenceEntry[]; live: PresenceEntry[] }> {
    let reply: string[];
    try {
      reply = await this.client.chorusPresenceList(...this.keys(channel), sweep ? 1 : 0);
    } catch (err) {
      throw unavailable(err);
    }
    const split = reply.indexOf('--');
    const parse = (items: string[]) => items.map((s) => JSON.parse(s) as PresenceEntry);
    return { gone: parse(reply.slice(0, split)), live: parse(reply.slice(split + 1)) };
  }

  async list(channel: string): Promise<PresenceMember[]> {
    const { live } = await this.listRaw(channel, false);
    const members = new Map<string, PresenceMember>();
    for (const entry of live) {
      const member = members.get(entry.user);
      if (member) member.connections++;
      else members.set(entry.user, entry.info ? { user: entry.user, connections: 1, info: entry.info } : { user: entry.user, connections: 1 });
    }
    return [...members.values()];
  }

  async stats(channel: string): Promise<{ users: number; connections: number }> {
    const [clients, , users] = this.keys(channel);
    try {
      const [connections, userCount] = await Promise.all([this.client.hlen(clients), this.client.hlen(users)]);
      return { users: userCount, connections };
    } catch (err) {
      throw unavailable(err);
    }
  }

  async sweep(channel: string): Promise<PresenceEntry[]> {
    return (await this.listRaw(channel, true)).gone;
  }
}

/** The per-user connection cap across nodes: one sorted set of connection ids by expiry per user. */
export class RedisConnectionRegistry implements ConnectionRegistry {
  constructor(
    private readonly client: Client,
    private readonly prefix: string,
  ) {}

  private key(user: string): string {
    return `${this.prefix}:conn:{${user}}`;
  }

  async reserve(user: string, clientId: string, max: number, ttlMs: number): Promise<boolean> {
    try {
      return (await this.client.chorusReserve(this.key(user), clientId, max, ttlMs)) === 1;
    } catch (err) {
      throw unavailable(err);
    }
  }

  async release(user: string, clientId: string): Promise<void> {
    try {
      await this.client.zrem(this.key(user), clientId);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async refresh(entries: Array<{ user: string; clientId: string }>, ttlMs: number): Promise<void> {
    try {
      await Promise.all(entries.map(({ user, clientId }) => this.client.chorusRefresh(this.key(user), ttlMs, clientId)));
    } catch (err) {
      throw unavailable(err);
    }
  }
}

/** Token buckets in Redis, shared by every node (e.g. the per-user ephemeral throttle). */
export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly client: Client,
    private readonly prefix: string,
  ) {}

  async consume(key: string, ratePerSecond: number, burst: number, cost = 1): Promise<{ ok: boolean; retryAfterMs: number }> {
    try {
      const [ok, retryAfterMs] = await this.client.chorusBucket(`${this.prefix}:rate:{${key}}`, ratePerSecond, burst, cost);
      return { ok: ok === 1, retryAfterMs: Number(retryAfterMs) };
    } catch (err) {
      throw unavailable(err);
    }
  }
}
