import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { EngineOptionError } from '../errors.js';

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
  /** Prefix of every key and pub/sub channel: 1-64 characters of A-Z a-z 0-9 _ . : -. Default `chorus`. */
  prefix?: string;
  /**
   * The budget of one engine operation, in ms: each wait on Redis that one operation makes
   * (a command; a subscribe's SUBSCRIBE and position read together) shares it, so the operation
   * answers within it. A command not answered in time fails with UNAVAILABLE ("not applied"),
   * except a publish that may have been applied (see `outcomeTimeoutMs`). Default 2000.
   */
  commandTimeoutMs?: number;
  /**
   * After a publish whose reply was lost or late (timeout, connection closed after the script
   * was sent), how long the node keeps trying to learn its outcome, in ms: it looks the
   * publication's idempotency key up as soon as Redis answers again and answers the real
   * `{offset, epoch}` or UNAVAILABLE (definitely not applied); when it still cannot tell, the
   * publish fails with OUTCOME_UNKNOWN. A publish thus answers within
   * `commandTimeoutMs + outcomeTimeoutMs`; 0 answers OUTCOME_UNKNOWN at once, without a lookup.
   * Default 2000.
   */
  outcomeTimeoutMs?: number;
  /**
   * Most publications a node holds per channel while it waits to backfill a gap from history
   * that cannot be read (Redis slow or down); one more and the channel's subscribers are closed
   * with 4005 (they recover by position). Default 10000.
   */
  maxHeldPublications?: number;
  /** Publications read per history page when a node backfills a pub/sub gap. Default 1000. */
  backfillPageSize?: number;
  /**
   * How often a node compares its channels with their streams to backfill publications pub/sub
   * dropped silently, in ms; 0 turns it off. One read per channel with local subscribers per
   * round. A publication counts as dropped when it was in the stream at the previous round and
   * has still not arrived, so a dropped tail is backfilled within two intervals. Default 10000.
   */
  gapCheckIntervalMs?: number;
  /** Shown in Redis' CLIENT LIST as `chorus-<name>-commands` / `chorus-<name>-pubsub` (e.g. the node id). */
  name?: string;
  /** Logger for connection state changes. */
  logger?: Logger;
  /** Clock (ms since the Unix epoch) for publication times and the Redis clock estimate. Default the system clock. */
  now?: Clock;
}

/** The options with their defaults applied. */
export interface ResolvedRedisOptions {
  prefix: string;
  shardedPubSub: boolean;
  commandTimeoutMs: number;
  outcomeTimeoutMs: number;
  maxHeldPublications: number;
  backfillPageSize: number;
  gapCheckIntervalMs: number;
  /**
   * Whether requests made in one event-loop turn are sent as one command (turn-batch.ts): the
   * handshakes' connection reservations, stream position reads and SUBSCRIBEs. On unless in
   * Redis Cluster mode (a batch's keys span slots) or `redis.enableAutoPipelining` is false.
   */
  batchPerTurn: boolean;
}

const PREFIX = /^[A-Za-z0-9_.:-]{1,64}$/;

function fail(key: string, problem: string): never {
  throw new EngineOptionError('redis', key, problem);
}

function integer(key: string, value: unknown, min: number, what: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) fail(key, `must be a ${what}, got ${JSON.stringify(value)}`);
}

/** `shorthand`: also accept ioredis' `"host:port"` strings and bare port numbers (Cluster nodes). */
function hostPorts(key: string, value: unknown, shorthand = false): void {
  if (!Array.isArray(value) || value.length === 0) fail(key, 'must be a non-empty array of {"host","port"}');
  value.forEach((item: unknown, i) => {
    if (shorthand && ((typeof item === 'string' && item) || typeof item === 'number')) return;
    const node = item as { host?: unknown; port?: unknown } | null;
    if (typeof node !== 'object' || node === null || typeof node.host !== 'string' || !node.host) fail(`${key}[${i}].host`, 'must be a non-empty string');
    const port = node.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      fail(`${key}[${i}].port`, `must be an integer from 0 to 65535, got ${JSON.stringify(port)}`);
    }
  });
}

/**
 * Check the options of a Redis engine; throws an `EngineOptionError` (a TypeError with `code`
 * `INVALID_ENGINE_OPTION`, the option's `key` and the `problem`) for the first bad one.
 * Only the keys Chorus interprets are checked; the rest of `redis`/`clusterOptions` is ioredis'.
 */
export function validateRedisEngineOptions(options: RedisEngineOptions): ResolvedRedisOptions {
  if (typeof options !== 'object' || options === null) fail('options', 'must be an object');
  if (options.url !== undefined) {
    let protocol = '';
    try {
      protocol = typeof options.url === 'string' ? new URL(options.url).protocol : '';
    } catch {
      // reported below
    }
    if (protocol !== 'redis:' && protocol !== 'rediss:') fail('url', 'must be a redis:// or rediss:// URL');
  }
  if (options.prefix !== undefined && (typeof options.prefix !== 'string' || !PREFIX.test(options.prefix))) {
    fail('prefix', 'must be 1-64 characters of A-Z a-z 0-9 _ . : -');
  }
  integer('commandTimeoutMs', options.commandTimeoutMs, 1, 'positive integer');
  integer('outcomeTimeoutMs', options.outcomeTimeoutMs, 0, 'non-negative integer');
  integer('maxHeldPublications', options.maxHeldPublications, 1, 'positive integer');
  integer('gapCheckIntervalMs', options.gapCheckIntervalMs, 0, 'non-negative integer');
  integer('backfillPageSize', options.backfillPageSize, 1, 'positive integer');
  if (options.name !== undefined && (typeof options.name !== 'string' || !options.name)) fail('name', 'must be a non-empty string');
  const redis = options.redis;
  if (redis !== undefined) {
    if (typeof redis !== 'object' || redis === null) fail('redis', 'must be an object (ioredis options)');
    if (redis.sentinels !== undefined) {
      hostPorts('redis.sentinels', redis.sentinels);
      if (typeof redis.name !== 'string' || !redis.name) fail('redis.name', 'is required with redis.sentinels (the master name)');
    }
    const tls = redis.tls;
    if (tls !== undefined && (typeof tls !== 'object' || tls === null)) fail('redis.tls', 'must be an object (Node TLS options)');
    if (tls && (tls.cert === undefined) !== (tls.key === undefined)) fail(tls.cert === undefined ? 'redis.tls.cert' : 'redis.tls.key', 'cert and key go together');
    if (tls && tls.rejectUnauthorized !== undefined && typeof tls.rejectUnauthorized !== 'boolean') fail('redis.tls.rejectUnauthorized', 'must be true or false');
    if (tls && tls.servername !== undefined && (typeof tls.servername !== 'string' || !tls.servername)) fail('redis.tls.servername', 'must be a non-empty string');
  }
  if (options.cluster !== undefined) hostPorts('cluster', options.cluster, true);
  if (options.shardedPubSub !== undefined) {
    if (typeof options.shardedPubSub !== 'boolean') fail('shardedPubSub', 'must be true or false');
    if (options.shardedPubSub && !options.cluster) fail('shardedPubSub', 'needs cluster');
  }
  return {
    prefix: options.prefix ?? 'chorus',
    shardedPubSub: options.shardedPubSub === true,
    commandTimeoutMs: options.commandTimeoutMs ?? 2000,
    outcomeTimeoutMs: options.outcomeTimeoutMs ?? 2000,
    maxHeldPublications: options.maxHeldPublications ?? 10000,
    backfillPageSize: options.backfillPageSize ?? 1000,
    gapCheckIntervalMs: options.gapCheckIntervalMs ?? 10000,
    batchPerTurn: !options.cluster && options.redis?.enableAutoPipelining !== false,
  };
}
