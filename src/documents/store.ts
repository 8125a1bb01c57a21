import type { StreamPosition } from '../protocol/index.js';
import { systemClock, type Clock } from '../engines/clock.js';

/** A document's stored state: one Yjs update holding everything, and the stream position it covers. */
export interface StoredDocument {
  update: Uint8Array;
  /**
   * The position of the document's channel up to which every update is in `update`; updates after
   * it are read back from the channel's history when the document is loaded.
   */
  position?: StreamPosition;
}

/** One entry of a document's version history. */
export interface DocumentVersion {
  /** Increasing per document (a decimal string). */
  id: string;
  /** When it was taken, ms since the Unix epoch. */
  time: number;
  /** Size of its Yjs update, in bytes. */
  bytes: number;
}

export interface StoreOptions {
  position?: StreamPosition;
  /** Store only while this node holds the document's lease; `store` resolves false otherwise. */
  owner?: string;
}

/**
 * Where documents are persisted. Implementations: `MemoryDocumentStore` (tests, one process),
 * `SqliteDocumentStore` (one node, a file), `RedisDocumentStore` (a cluster).
 */
export interface DocumentStore {
  /** Shown in logs and metrics. */
  readonly name: string;
  /** The stored state, or undefined for a document never stored. */
  load(name: string): Promise<StoredDocument | undefined>;
  /** Replace the stored state. False when `options.owner` is given and does not hold the lease. */
  store(name: string, update: Uint8Array, options?: StoreOptions): Promise<boolean>;
  /** Record a version; only the newest `keep` versions are retained. */
  addVersion(name: string, update: Uint8Array, time: number, keep: number): Promise<DocumentVersion>;
  /** Versions of a document, newest first. */
  versions(name: string): Promise<DocumentVersion[]>;
  /** The Yjs update of one version, or undefined. */
  version(name: string, id: string): Promise<Uint8Array | undefined>;
  /**
   * Take or renew the lease that makes `owner` the one node storing the document, for `ttlMs`.
   * False when another owner holds it. Single-node stores always grant it.
   */
  acquireLease(name: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Give the lease up if `owner` holds it. */
  releaseLease(name: string, owner: string): Promise<void>;
  /** Release connections and file handles. */
  close(): Promise<void>;
}

/** Documents in process memory: lost on exit. For tests and embedding without persistence. */
export class MemoryDocumentStore implements DocumentStore {
  readonly name = 'memory';
  private readonly documents = new Map<string, StoredDocument>();
  private readonly history = new Map<string, Array<DocumentVersion & { update: Uint8Array }>>();
  private readonly leases = new Map<string, { owner: string; until: number }>();
  private sequence = 0;

  /** @param now the clock, injectable for tests */
  constructor(private readonly now: Clock = systemClock) {}

  async load(name: string): Promise<StoredDocument | undefined> {
    const stored = this.documents.get(name);
    return stored ? { ...stored, update: stored.update.slice() } : undefined;
  }

  async store(name: string, update: Uint8Array, options: StoreOptions = {}): Promise<boolean> {
    if (options.owner !== undefined && !this.holds(name, options.owner)) return false;
    this.documents.set(name, { update: update.slice(), ...(options.position ? { position: { ...options.position } } : {}) });
    return true;
  }

  async addVersion(name: string, update: Uint8Array, time: number, keep: number): Promise<DocumentVersion> {
    const list = this.history.get(name) ?? [];
    const version = { id: String(++this.sequence), time, bytes: update.length, update: update.slice() };
    list.push(version);
    while (list.length > keep) list.shift();
    this.history.set(name, list);
    return { id: version.id, time, bytes: version.bytes };
  }

  async versions(name: string): Promise<DocumentVersion[]> {
    return (this.history.get(name) ?? []).map(({ id, time, bytes }) => ({ id, time, bytes })).reverse();
  }

  async version(name: string, id: string): Promise<Uint8Array | undefined> {
    return this.history.get(name)?.find((v) => v.id === id)?.update.slice();
  }

  private holds(name: string, owner: string): boolean {
    const lease = this.leases.get(name);
    return !lease || lease.until <= this.now() || lease.owner === owner;
  }

  async acquireLease(name: string, owner: string, ttlMs: number): Promise<boolean> {
    if (!this.holds(name, owner)) return false;
    this.leases.set(name, { owner, until: this.now() + ttlMs });
    return true;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    if (this.leases.get(name)?.owner === owner) this.leases.delete(name);
  }

  async close(): Promise<void> {}
}
