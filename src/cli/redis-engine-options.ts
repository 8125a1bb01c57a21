/**
 * The standalone's Redis settings (file key `redis`, `CHORUS_REDIS_URL`) as Redis engine options.
 * The engine validates its own options; the CLI only maps an `EngineOptionError` to the name of
 * the config-file key it came from.
 */
import { EngineOptionError, validateRedisEngineOptions, type RedisEngineOptions } from '../engines/redis/index.js';

/** TLS to Redis, resolved: PEM texts read from the `*File` keys. */
export interface RedisTlsConfig {
  /** CA certificate(s) the server's certificate must chain to (default: Node's public CAs). */
  ca?: string;
  /** Client certificate and key, for a server with `tls-auth-clients yes`. */
  cert?: string;
  key?: string;
  /** Default true; false accepts any server certificate (testing only). */
  rejectUnauthorized?: boolean;
  /** The name the server's certificate is checked against (SNI), when it differs from the host. */
  servername?: string;
}

/** Serializable Redis engine settings (file key `redis`; `CHORUS_REDIS_URL` sets `url`). */
export interface RedisConfig {
  /** `redis://[:password@]host:port[/db]`, `rediss://` for TLS. */
  url?: string;
  /** Key prefix. Default `chorus`. */
  prefix?: string;
  /** One engine operation's budget: commands slower than this fail with UNAVAILABLE, in ms. Default 2000. */
  commandTimeoutMs?: number;
  /** How long a publish whose reply was lost or late is looked up before OUTCOME_UNKNOWN, in ms. Default 2000. */
  outcomeTimeoutMs?: number;
  /** Most publications held per channel while history is unreadable before the channel is reported lost (4005). Default 10000. */
  maxHeldPublications?: number;
  /** Periodic check for publications pub/sub dropped, in ms; 0 turns it off. Default 10000. */
  gapCheckIntervalMs?: number;
  /** Redis Sentinel: sentinel addresses and the master `name`. */
  sentinels?: Array<{ host: string; port: number }>;
  name?: string;
  /** Redis Cluster start-up nodes. */
  cluster?: Array<{ host: string; port: number }>;
  /** Sharded pub/sub on Redis Cluster (Redis 7). Default false. */
  shardedPubSub?: boolean;
  /** TLS to Redis (file key `redis.tls`: caFile, certFile, keyFile, rejectUnauthorized, servername). Implied by `rediss://`. */
  tls?: RedisTlsConfig;
}

/** Engine options for these settings (without a logger; the caller adds it). */
export function redisEngineOptions(config: RedisConfig, name?: string): RedisEngineOptions {
  return {
    ...(name ? { name } : {}),
    ...(config.url ? { url: config.url } : {}),
    ...(config.prefix ? { prefix: config.prefix } : {}),
    ...(config.commandTimeoutMs !== undefined ? { commandTimeoutMs: config.commandTimeoutMs } : {}),
    ...(config.gapCheckIntervalMs !== undefined ? { gapCheckIntervalMs: config.gapCheckIntervalMs } : {}),
    ...(config.outcomeTimeoutMs !== undefined ? { outcomeTimeoutMs: config.outcomeTimeoutMs } : {}),
    ...(config.maxHeldPublications !== undefined ? { maxHeldPublications: config.maxHeldPublications } : {}),
    redis: {
      ...(config.sentinels ? { sentinels: config.sentinels, ...(config.name !== undefined ? { name: config.name } : {}) } : {}),
      // TLS to the data nodes (also Cluster nodes: `redis` is every node's options). With
      // Sentinel, ioredis uses `tls` for the master only with enableTLSForSentinelMode, and
      // `sentinelTLS` for the sentinels themselves: a TLS deployment secures both.
      ...(config.tls ? { tls: { ...config.tls } } : {}),
      ...(config.tls && config.sentinels ? { enableTLSForSentinelMode: true, sentinelTLS: { ...config.tls } } : {}),
    },
    ...(config.cluster ? { cluster: config.cluster } : {}),
    ...(config.shardedPubSub ? { shardedPubSub: true } : {}),
  };
}

/** The engine's option path -> the config file's key (PEM texts come from the `*File` keys). */
function configKey(engineKey: string): string {
  if (engineKey === 'redis.tls.cert') return 'redis.tls.certFile';
  if (engineKey === 'redis.tls.key') return 'redis.tls.keyFile';
  if (engineKey.startsWith('redis.')) return engineKey; // ioredis options: sentinels, name, tls.*
  return `redis.${engineKey}`;
}

/**
 * What the Redis engine would refuse in these settings, named by config-file key, or undefined.
 * Called by `loadConfig`, so a bad setting stops the CLI before anything starts.
 */
export function redisConfigProblem(config: RedisConfig): { key: string; problem: string } | undefined {
  try {
    validateRedisEngineOptions(redisEngineOptions(config));
    return undefined;
  } catch (err) {
    if (!(err instanceof EngineOptionError)) throw err;
    return { key: configKey(err.key), problem: err.problem.replace('needs cluster', 'needs redis.cluster') };
  }
}
