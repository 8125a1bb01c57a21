import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { ChorusError, ErrorCode } from '../../protocol/index.js';
import type { RedisEngineOptions, ResolvedRedisOptions } from './options.js';
import * as scripts from './scripts.js';

/** The engine's Lua scripts, defined as commands on the command connection. */
type Scripted = {
  chorusPublish(...args: Array<string | number>): Promise<[number, number, string, number]>;
  chorusOutcome(...args: Array<string | number>): Promise<[number, number, string, string, number]>;
  chorusRead(...args: Array<string | number>): Promise<Array<string | number>>;
  chorusPresenceAdd(...args: Array<string | number>): Promise<number>;
  chorusPresenceRemove(...args: Array<string | number>): Promise<[number, string]>;
  chorusPresenceList(...args: Array<string | number>): Promise<string[]>;
  chorusReserve(...args: Array<string | number>): Promise<number>;
  chorusRefresh(...args: Array<string | number>): Promise<number>;
  chorusBucket(...args: Array<string | number>): Promise<[number, number]>;
  /** Variable keys: the first argument is the number of keys. */
  chorusPositions(...args: Array<string | number>): Promise<Array<string | number>>;
  /** Variable keys: the first argument is the number of keys. */
  chorusReserveMany(...args: Array<string | number>): Promise<number[]>;
};

/** The command connection (standalone/Sentinel or Cluster) with the engine's scripts. */
export type Client = (Redis | Cluster) & Scripted;

/** Any failure to reach Redis becomes UNAVAILABLE; coded errors pass through. */
export function unavailable(err: unknown): ChorusError {
  if (err instanceof ChorusError) return err;
  return new ChorusError(ErrorCode.UNAVAILABLE, 'the engine (Redis) is unavailable; nothing was applied');
}

/**
 * The two connections of a node: commands (scripts defined) and pub/sub. Commands fail fast
 * (no offline queue, no retries, never re-sent on a new connection) after `commandTimeoutMs`;
 * connections retry with backoff.
 */
export function createClients(options: RedisEngineOptions, resolved: ResolvedRedisOptions): { client: Client; subscriber: Redis | Cluster } {
  const timeout = resolved.commandTimeoutMs;
  const common: RedisOptions = {
    commandTimeout: timeout,
    connectTimeout: Math.max(timeout, 2000),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Never re-send a command of a closed connection on the next one: a publish whose reply was
    // lost is resolved by looking it up (outcome.ts), not by running it again.
    autoResendUnfulfilledCommands: false,
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
        ...(role === 'pubsub' && resolved.shardedPubSub ? { shardedSubscribers: true } : {}),
        // Node connections: our defaults, then `redis`, then `clusterOptions.redisOptions` (was dropped).
        redisOptions: { ...common, ...options.clusterOptions?.redisOptions, connectionName: `chorus-${tag}${role}` },
      });
    }
    // Commands issued in the same tick (a burst of handshakes: reserve, position, presence) go out
    // as one pipeline, one write and one read, instead of one round trip each.
    // The batched scripts already carry a whole turn's requests (turn-batch.ts): a pipeline of
    // their own each would only add its cost.
    const pipelining =
      role === 'commands'
        ? {
            enableAutoPipelining: options.redis?.enableAutoPipelining ?? true,
            autoPipeliningIgnoredCommands: [...(options.redis?.autoPipeliningIgnoredCommands ?? []), 'chorusPositions', 'chorusReserveMany'],
          }
        : {};
    const opts: RedisOptions = { ...common, ...pipelining, connectionName: `chorus-${tag}${role}`, autoResubscribe: false };
    return options.url ? new Redis(options.url, opts) : new Redis(opts);
  };
  const client = make('commands') as Client;
  const subscriber = make('pubsub');
  for (const [name, lua, keys] of [
    ['chorusPublish', scripts.PUBLISH, 3],
    ['chorusOutcome', scripts.OUTCOME, 1],
    ['chorusRead', scripts.READ, 2],
    ['chorusPresenceAdd', scripts.PRESENCE_ADD, 3],
    ['chorusPresenceRemove', scripts.PRESENCE_REMOVE, 3],
    ['chorusPresenceList', scripts.PRESENCE_LIST, 3],
    ['chorusReserve', scripts.RESERVE, 1],
    ['chorusRefresh', scripts.REFRESH, 1],
    ['chorusBucket', scripts.TOKEN_BUCKET, 1],
  ] as const) {
    client.defineCommand(name, { numberOfKeys: keys, lua });
  }
  // Batched forms (turn-batch.ts), with the number of keys as the first argument.
  client.defineCommand('chorusPositions', { lua: scripts.POSITIONS });
  client.defineCommand('chorusReserveMany', { lua: scripts.RESERVE_MANY });
  return { client, subscriber };
}

/**
 * Key names. Keys of one channel share the hash tag `{<channel>}` (one Cluster slot), as do
 * the keys of one user and of one rate-limit bucket.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /**
   * A channel's key: `m` meta, `h` history, `p` pub/sub channel, `i:<key>` the caller's
   * idempotency key, `n:<id>` the node's own key for a publish without one (a separate namespace).
   */
  channel(channel: string, suffix: string): string {
    return `${this.prefix}:{${channel}}:${suffix}`;
  }

  /** Presence: clients hash, expiries sorted set, users hash. */
  presence(channel: string): [string, string, string] {
    const base = `${this.prefix}:{${channel}}`;
    return [`${base}:pc`, `${base}:pe`, `${base}:pu`];
  }

  /** One user's connection entries (sorted set by expiry). */
  connections(user: string): string {
    return `${this.prefix}:conn:{${user}}`;
  }

  rate(key: string): string {
    return `${this.prefix}:rate:{${key}}`;
  }

  /** The cluster-wide control pub/sub channel (classic PUBLISH even with sharded pub/sub). */
  get control(): string {
    return `${this.prefix}:control`;
  }
}
