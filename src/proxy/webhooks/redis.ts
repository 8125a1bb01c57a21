/**
 * The outbox of nodes sharing Redis: events are sent once for the whole cluster.
 *
 * - Events wait in one Redis stream; each webhook target is a consumer group on it, each node a
 *   consumer, so an event goes to one node per target. A node acknowledges a batch after the
 *   target accepted it (or its tries ran out); a batch left unacknowledged by a node that died is
 *   taken over by another after `claimIdleMs`. The stream is capped (`maxStreamLength`).
 * - Cluster-wide occupancy: per channel a sorted set of the nodes that have local subscribers,
 *   scored by when the entry expires (nodes refresh theirs every `ttlMs / 3`). A Lua script adds
 *   or removes this node's entry and, only when that flips the set between empty and non-empty,
 *   appends `channel.occupied` / `channel.vacated` to the stream in the same atomic step, so
 *   exactly one node reports each flip. A node that dies stops refreshing; a periodic sweep
 *   (any node, atomically) drops expired entries and reports the channels it empties.
 * All keys share the hash tag `{webhooks}`, so the scripts also run on Redis Cluster.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Outbox, QueuedEvent, WebhookEvent, WebhookQueue } from './types.js';

export type RedisClient = Redis | Cluster;

export interface RedisOutboxOptions {
  /** Commands (shared, non-blocking). */
  redis: RedisClient;
  /** Makes a connection for one target's blocking reads (closed by the outbox). */
  connect: () => RedisClient;
  /** This node's id (a consumer name, and its entry in occupancy sets). */
  node: string;
  /** Key prefix. Default `chorus`. */
  prefix?: string;
  /** Lifetime of a node's occupancy entries unless refreshed, in ms. Default 60000. */
  ttlMs?: number;
  /** An unacknowledged batch is taken over by another node after this long, in ms. Default 60000. */
  claimIdleMs?: number;
  /** Events kept in the stream at most (approximately). Default 100000. */
  maxStreamLength?: number;
  logger: Logger;
}

// KEYS[1] channel set, KEYS[2] index, KEYS[3] stream; ARGV: node, now, expiry, channel, id, time, maxlen
const OPEN = `
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local before = redis.call('ZCARD', KEYS[1])
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[4])
if before == 0 and not known then
  if expired > 0 then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'e', cjson.encode({id = ARGV[5] .. '-v', type = 'channel.vacated', time = tonumber(ARGV[6]), channel = ARGV[4]}))
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'e', cjson.encode({id = ARGV[5], type = 'channel.occupied', time = tonumber(ARGV[6]), channel = ARGV[4]}))
  return 1
end
return 0`;

// KEYS as OPEN; ARGV: node, now, channel, id, time, maxlen
const CLOSE = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
if removed + expired == 0 then return 0 end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'e', cjson.encode({id = ARGV[4], type = 'channel.vacated', time = tonumber(ARGV[5]), channel = ARGV[3]}))
return 1`;

// KEYS[1] index, KEYS[2] stream; ARGV: now, channel key prefix, limit, id prefix, maxlen
const SWEEP = `
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local n = 0
for i, channel in ipairs(stale) do
  local key = ARGV[2] .. channel
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], channel)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', cjson.encode({id = ARGV[4] .. '-' .. i, type = 'channel.vacated', time = tonumber(ARGV[1]), channel = channel}))
    n = n + 1
  else
    redis.call('ZADD', KEYS[1], last[2], channel)
  end
end
return n`;

/** Channels swept per maintenance round at most. */
const SWEEP_LIMIT = 100;

type Entries = Array<[id: string, fields: string[]]>;

function toQueued(entries: Entries | null | undefined): QueuedEvent[] {
  const out: QueuedEvent[] = [];
  for (const [id, fields] of entries ?? []) {
    const i = fields.indexOf('e');
    if (i < 0 || fields[i + 1] === undefined) continue;
    try {
      out.push({ handle: id, event: JSON.parse(fields[i + 1]!) as WebhookEvent });
    } catch {
      // Not an event: no target wants its type, so it is acknowledged and never sent.
      out.push({ handle: id, event: { id, type: 'invalid' as WebhookEvent['type'], time: 0, channel: '' } });
    }
  }
  return out;
}

class RedisQueue implements WebhookQueue {
  private ready: Promise<unknown> | undefined;
  private lastClaim = 0;
  private closed = false;

  constructor(
    private readonly outbox: RedisOutbox,
    private readonly group: string,
    private readonly reader: RedisClient,
  ) {}

  private ensureGroup(): Promise<unknown> {
    this.ready ??= this.outbox.redis.xgroup('CREATE', this.outbox.stream, this.group, '$', 'MKSTREAM').catch((err: Error) => {
      if (!/BUSYGROUP/.test(err.message)) {
        this.ready = undefined;
        throw err;
      }
    });
    return this.ready;
  }

  async take(max: number): Promise<QueuedEvent[]> {
    if (this.closed) return [];
    await this.ensureGroup();
    const { stream, node, claimIdleMs } = this.outbox;
    const now = Date.now();
    if (now - this.lastClaim >= Math.min(claimIdleMs, 5000)) {
      this.lastClaim = now;
      // Batches a node left unacknowledged for claimIdleMs (it died): this node takes them over.
      const claimed = (await this.outbox.redis.xautoclaim(stream, this.group, node, claimIdleMs, '0-0', 'COUNT', max)) as [string, Entries];
      const items = toQueued(claimed[1]);
      if (items.length > 0) return items;
    }
    const read = (await this.reader.xreadgroup('GROUP', this.group, node, 'COUNT', max, 'BLOCK', 1000, 'STREAMS', stream, '>')) as
      | Array<[string, Entries]>
      | null;
    return toQueued(read?.[0]?.[1]);
  }

  async keep(items: readonly QueuedEvent[]): Promise<void> {
    if (items.length === 0) return;
    await this.outbox.redis.call('XCLAIM', this.outbox.stream, this.group, this.outbox.node, 0, ...items.map((i) => i.handle), 'JUSTID');
  }

  async ack(items: readonly QueuedEvent[]): Promise<void> {
    if (items.length === 0) return;
    await this.outbox.redis.xack(this.outbox.stream, this.group, ...items.map((i) => i.handle));
  }

  close(): void {
    this.closed = true;
    this.reader.disconnect();
  }
}

export class RedisOutbox implements Outbox {
  readonly redis: RedisClient;
  readonly node: string;
  readonly stream: string;
  readonly claimIdleMs: number;
  private readonly base: string;
  private readonly index: string;
  private readonly ttlMs: number;
  private readonly maxStreamLength: number;
  private readonly queues: RedisQueue[] = [];

  constructor(private readonly options: RedisOutboxOptions) {
    this.redis = options.redis;
    this.node = options.node;
    this.base = `${options.prefix ?? 'chorus'}:{webhooks}`;
    this.stream = `${this.base}:events`;
    this.index = `${this.base}:occupied`;
    this.ttlMs = options.ttlMs ?? 60_000;
    this.claimIdleMs = options.claimIdleMs ?? 60_000;
    this.maxStreamLength = options.maxStreamLength ?? 100_000;
  }

  private channelKey(channel: string): string {
    return `${this.base}:occ:${channel}`;
  }

  async publish(event: WebhookEvent): Promise<void> {
    await this.redis.xadd(this.stream, 'MAXLEN', '~', this.maxStreamLength, '*', 'e', JSON.stringify(event));
  }

  async localChannel(channel: string, occupied: boolean, now: number): Promise<void> {
    const keys = [this.channelKey(channel), this.index, this.stream];
    if (occupied) {
      await this.redis.eval(OPEN, 3, ...keys, this.node, now, now + this.ttlMs, channel, randomUUID(), now, this.maxStreamLength);
    } else {
      await this.redis.eval(CLOSE, 3, ...keys, this.node, now, channel, randomUUID(), now, this.maxStreamLength);
    }
  }

  async maintain(localChannels: readonly string[], now: number): Promise<void> {
    for (const channel of localChannels) await this.localChannel(channel, true, now);
    await this.redis.eval(SWEEP, 2, this.index, this.stream, now, `${this.base}:occ:`, SWEEP_LIMIT, randomUUID(), this.maxStreamLength);
  }

  queue(id: string): WebhookQueue {
    const queue = new RedisQueue(this, `webhook:${id}`, this.options.connect());
    this.queues.push(queue);
    return queue;
  }

  async close(): Promise<void> {
    for (const queue of this.queues) queue.close();
  }
}
