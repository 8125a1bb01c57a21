import { Redis } from 'ioredis';
import type { DocumentStore, DocumentVersion, StoredDocument, StoreOptions } from './store.js';

export interface RedisDocumentStoreOptions {
  /** An ioredis client to use (not closed by the store), or a `redis://` URL to connect to. */
  redis: Redis | string;
  /** Key prefix. Default `chorus`; keys are `<prefix>:doc:{<name>}:<part>` (one hash slot per document). */
  prefix?: string;
}

// Take or renew the lease: KEYS[1] lease, ARGV owner, ttl.
const ACQUIRE = `
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

// Store the state only while the owner holds the lease (or without an owner): KEYS[1] state, KEYS[2] lease.
const STORE = `
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'o', ARGV[3], 'e', ARGV[4])
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`;

// Add a version and keep the newest ARGV[3]: KEYS[1] sequence, KEYS[2] list (zset id->id), KEYS[3] data hash, KEYS[4] meta hash.
const ADD_VERSION = `
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, id)
redis.call('HSET', KEYS[3], id, ARGV[1])
redis.call('HSET', KEYS[4], id, ARGV[2] .. ':' .. ARGV[4])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  for _, o in ipairs(old) do
    redis.call('ZREM', KEYS[2], o)
    redis.call('HDEL', KEYS[3], o)
    redis.call('HDEL', KEYS[4], o)
  end
end
return id`;

/** Documents in Redis, shared by every node; the lease (SET NX PX, renewed) picks the one node that stores. */
export class RedisDocumentStore implements DocumentStore {
  readonly name = 'redis';
  private readonly client: Redis;
  private readonly ownsClient: boolean;
  private readonly prefix: string;

  constructor(options: RedisDocumentStoreOptions) {
    this.ownsClient = typeof options.redis === 'string';
    this.client = typeof options.redis === 'string' ? new Redis(options.redis, { lazyConnect: false, maxRetriesPerRequest: 2 }) : options.redis;
    this.prefix = options.prefix ?? 'chorus';
  }

  private key(name: string, part: string): string {
    return `${this.prefix}:doc:{${name}}:${part}`;
  }

  async load(name: string): Promise<StoredDocument | undefined> {
    const [update, offset, epoch] = await this.client.hmgetBuffer(this.key(name, 'state'), 'u', 'o', 'e');
    if (!update) return undefined;
    const position = offset && epoch && offset.length > 0 ? { offset: Number(offset.toString()), epoch: epoch.toString() } : undefined;
    return { update: new Uint8Array(update), ...(position ? { position } : {}) };
  }

  async store(name: string, update: Uint8Array, options: StoreOptions = {}): Promise<boolean> {
    const result = await this.client.eval(
      STORE,
      2,
      this.key(name, 'state'),
      this.key(name, 'lease'),
      options.owner ?? '',
      Buffer.from(update),
      options.position ? String(options.position.offset) : '',
      options.position?.epoch ?? '',
    );
    return result === 1;
  }

  async addVersion(name: string, update: Uint8Array, time: number, keep: number): Promise<DocumentVersion> {
    const id = await this.client.eval(
      ADD_VERSION,
      4,
      this.key(name, 'vseq'),
      this.key(name, 'vlist'),
      this.key(name, 'vdata'),
      this.key(name, 'vmeta'),
      Buffer.from(update),
      String(time),
      String(keep),
      String(update.length),
    );
    return { id: String(id), time, bytes: update.length };
  }

  async versions(name: string): Promise<DocumentVersion[]> {
    const meta = await this.client.hgetall(this.key(name, 'vmeta'));
    return Object.entries(meta)
      .map(([id, value]) => {
        const [time, bytes] = value.split(':');
        return { id, time: Number(time), bytes: Number(bytes) };
      })
      .sort((a, b) => Number(b.id) - Number(a.id));
  }

  async version(name: string, id: string): Promise<Uint8Array | undefined> {
    const data = await this.client.hgetBuffer(this.key(name, 'vdata'), id);
    return data ? new Uint8Array(data) : undefined;
  }

  async acquireLease(name: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.client.eval(ACQUIRE, 1, this.key(name, 'lease'), owner, String(ttlMs))) === 1;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.client.eval(RELEASE, 1, this.key(name, 'lease'), owner);
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.disconnect();
  }
}
