import type {
  Broker,
  BrokerEvent,
  ControlCommand,
  Engine,
  HistoryReadOptions,
  HistoryReadResult,
  HistoryStore,
  Publication,
  PublishOptions,
  PublishResult,
} from '../types.js';
import type { StreamPosition } from '../../protocol/index.js';
import { systemClock, type Clock } from '../clock.js';
import { MemoryNodeDirectory } from './nodes.js';
import { MemoryPresenceStore } from './presence.js';
import { MemoryConnectionRegistry, MemoryRateLimiter } from './registry.js';
import { StreamTable } from './streams.js';

export { MemoryNodeDirectory } from './nodes.js';
export { MemoryPresenceStore } from './presence.js';
export { StreamTable, STREAM_META_TTL_MS } from './streams.js';
export { MemoryConnectionRegistry, MemoryRateLimiter } from './registry.js';

export interface MemoryEngineOptions {
  /** Clock (ms since the Unix epoch), injectable for tests. Default the system clock. */
  now?: Clock;
  /** Most streams kept that were only read, never published to (the oldest are forgotten first). Default 100000. */
  maxUnpublishedStreams?: number;
  /** How often expired streams and idempotency entries are swept, in ms. Default 60000. */
  sweepIntervalMs?: number;
}

/**
 * The single-process engine: offsets, history, presence and fan-out in memory. Publishing is
 * synchronous under the hood, so offset assignment, history append and delivery are one step.
 */
export class MemoryEngine implements Engine, Broker, HistoryStore {
  readonly name = 'memory';
  readonly presence: MemoryPresenceStore;
  readonly streams: StreamTable;
  readonly connections: MemoryConnectionRegistry;
  readonly rateLimiter: MemoryRateLimiter;
  readonly nodes: MemoryNodeDirectory;
  private handler: (event: BrokerEvent) => void = () => {};
  private readonly idempotency = new Map<string, { result: PublishResult; expiresAt: number }>();
  private readonly now: Clock;
  private readonly sweepIntervalMs: number;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(options: MemoryEngineOptions = {}) {
    this.now = options.now ?? systemClock;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 60000;
    this.streams = new StreamTable(this.now, options.maxUnpublishedStreams ?? 100000);
    this.presence = new MemoryPresenceStore(this.now);
    this.connections = new MemoryConnectionRegistry(this.now);
    this.rateLimiter = new MemoryRateLimiter(this.now);
    this.nodes = new MemoryNodeDirectory(this.now);
  }

  /**
   * `position` answered at once from the stream table — absent while `position` is overridden
   * (by a subclass or on the instance, to instrument it or inject failures): then the hub calls it.
   */
  get positionNow(): ((channel: string) => StreamPosition) | undefined {
    return this.position === MemoryEngine.prototype.position ? this.positionAtOnce : undefined;
  }

  private readonly positionAtOnce = (channel: string): StreamPosition => this.streams.position(channel);

  get broker(): Broker {
    return this;
  }

  get history(): HistoryStore {
    return this;
  }

  async start(): Promise<void> {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), this.sweepIntervalMs);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Drop expired streams and idempotency entries. */
  sweep(): void {
    this.streams.sweep();
    this.rateLimiter.sweep();
    const now = this.now();
    for (const [key, entry] of this.idempotency) {
      if (entry.expiresAt <= now) this.idempotency.delete(key);
    }
  }

  setHandler(handler: (event: BrokerEvent) => void): void {
    this.handler = handler;
  }

  async publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    const time = this.now();
    const base: Publication = { channel, data, time };
    if (options.publisher) base.publisher = options.publisher;
    if (options.key !== undefined) base.key = options.key;
    if (options.ephemeral) {
      base.ephemeral = true;
      this.deliver({ type: 'publication', publication: base, ...except(options) });
      return {};
    }
    const key = options.idempotencyKey === undefined ? undefined : `${channel}\u0000${options.idempotencyKey}`;
    if (key !== undefined) {
      const seen = this.idempotency.get(key);
      if (seen && seen.expiresAt > time) return { ...seen.result, duplicate: true };
    }
    const stored = this.streams.append(base, options.history);
    const result: PublishResult = { offset: stored.offset!, epoch: stored.epoch! };
    if (key !== undefined) {
      this.idempotency.set(key, { result, expiresAt: time + (options.idempotencyWindowMs ?? 120000) });
    }
    this.deliver({ type: 'publication', publication: stored, ...except(options) });
    return result;
  }

  async publishPresenceEvent(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): Promise<void> {
    this.deliver(event);
  }

  async publishControl(command: ControlCommand): Promise<void> {
    this.deliver({ type: 'control', command });
  }

  /**
   * Publications are delivered in this process: nothing to subscribe to — unless `subscribe` is
   * overridden (by a subclass or on the instance, to instrument it or inject failures): then it
   * is called and awaited as with any engine.
   */
  get inProcess(): boolean {
    return this.subscribe === MemoryEngine.prototype.subscribe;
  }

  async subscribe(_channel: string): Promise<void> {}

  async unsubscribe(_channel: string): Promise<void> {}

  async read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult> {
    return this.streams.read(channel, options);
  }

  async position(channel: string) {
    return this.streams.position(channel);
  }

  private deliver(event: BrokerEvent): void {
    this.handler(event);
  }
}

function except(options: PublishOptions): { exceptClient?: string } {
  return options.exceptClient === undefined ? {} : { exceptClient: options.exceptClient };
}
