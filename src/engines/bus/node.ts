import { ChorusError, ErrorCode, type StreamPosition } from '../../protocol/index.js';
import { Sequencer } from '../sequencer.js';
import type {
  Broker,
  BrokerEvent,
  ConnectionRegistry,
  ControlCommand,
  Engine,
  HistoryReadOptions,
  HistoryReadResult,
  HistoryStore,
  NodeDirectory,
  PresenceStore,
  PublishOptions,
  PublishResult,
  RateLimiter,
} from '../types.js';

/** What a node needs from its bus: the shared stores and fan-out. */
export interface BusHost {
  readonly broker: Broker;
  readonly history: HistoryStore;
  readonly presence: PresenceStore;
  readonly connections: ConnectionRegistry;
  readonly rateLimiter: RateLimiter;
  readonly nodes: NodeDirectory;
}

export interface BusNodeOptions {
  /** Publications read per history page when the node backfills a gap. Default 1000. */
  backfillPageSize?: number;
  /** Most publications held per channel while history is unreadable before the channel is reported lost. Default 10000. */
  maxHeldPublications?: number;
}

function unavailable(): ChorusError {
  return new ChorusError(ErrorCode.UNAVAILABLE, 'the engine (test bus) is unavailable to this node; nothing was applied');
}

/** Every method of `target` fails with UNAVAILABLE while `down()` (a lost node cannot reach the shared state). */
function guarded<T extends object>(target: T, down: () => boolean): T {
  return new Proxy(target, {
    get(object, property) {
      const value = Reflect.get(object, property, object) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => (down() ? Promise.reject(unavailable()) : (value as (...a: unknown[]) => unknown).apply(object, args));
    },
  });
}

/**
 * One node on a TestBus: an Engine for one ChorusServer. Its stores are the bus's shared ones;
 * publications reach it over the bus (at most once, subject to the bus's fault switches) and
 * go through the same Sequencer as the Redis engine's, so a node orders them by offset,
 * backfills gaps from the shared history and reports `lost` when history cannot cover a gap.
 */
export class BusNode implements Engine, Broker, HistoryStore {
  readonly name = 'bus';
  readonly presence: PresenceStore;
  readonly connections: ConnectionRegistry;
  readonly rateLimiter: RateLimiter;
  readonly nodes: NodeDirectory;
  private handler: (event: BrokerEvent) => void = () => {};
  private readonly sequencer: Sequencer;
  private readonly subscribed = new Set<string>();
  /** Cut off from the bus (like a dropped pub/sub connection): receives nothing until `reconnect`. */
  private partitioned = false;
  /** Lost for good: receives nothing and every operation fails with UNAVAILABLE. */
  private gone = false;
  /** Publishes still to be applied and then failed with OUTCOME_UNKNOWN (`loseReplies`). */
  private repliesToLose = 0;
  /** History reads still to fail with UNAVAILABLE (`failHistoryReads`). */
  private readsToFail = 0;

  constructor(
    /** The node's name on the bus (fault switches address nodes by it). */
    readonly id: string,
    private readonly bus: BusHost,
    options: BusNodeOptions = {},
  ) {
    const down = () => this.gone;
    this.presence = guarded(bus.presence, down);
    this.connections = guarded(bus.connections, down);
    this.rateLimiter = guarded(bus.rateLimiter, down);
    this.nodes = guarded(bus.nodes, down);
    this.sequencer = new Sequencer(
      (channel, since, limit) => this.read(channel, { since, limit }),
      (publication, exceptClient) =>
        this.handler(exceptClient === undefined ? { type: 'publication', publication } : { type: 'publication', publication, exceptClient }),
      (channel) => this.handler({ type: 'lost', channel }),
      { backfillPageSize: options.backfillPageSize ?? 1000, maxHeldPublications: options.maxHeldPublications ?? 10000 },
    );
  }

  get broker(): Broker {
    return this;
  }

  get history(): HistoryStore {
    return this;
  }

  /** Whether the node was lost (`TestBus.lose`). */
  get lost(): boolean {
    return this.gone;
  }

  async start(): Promise<void> {}

  /** Nothing to release: the bus owns the shared state (close the bus). */
  async close(): Promise<void> {}

  setHandler(handler: (event: BrokerEvent) => void): void {
    this.handler = handler;
  }

  /** Whether an event for `channel` reaches this node (it subscribed and is connected). */
  listens(channel: string): boolean {
    return !this.gone && !this.partitioned && this.subscribed.has(channel);
  }

  /** An event from the bus (after its fault switches). */
  receive(event: BrokerEvent): void {
    if (this.gone || this.partitioned) return;
    if (event.type === 'publication') this.sequencer.push(event.publication, event.exceptClient);
    else if (event.type === 'control') this.handler(event);
    else if (event.type !== 'lost' && this.subscribed.has(event.channel)) this.handler(event);
  }

  /** Stop receiving (publications, presence events, control commands are missed) until `reconnect`. */
  disconnect(): void {
    this.partitioned = true;
  }

  /** Receive again and catch up what was missed, as a Redis node does when its pub/sub connection is back. */
  async reconnect(): Promise<void> {
    this.partitioned = false;
    await this.sequencer.resync((channel) => this.position(channel));
  }

  /** One round of the gap check (the Redis engine runs it every `gapCheckIntervalMs`). */
  checkGaps(): Promise<void> {
    return this.sequencer.audit((channel) => this.position(channel));
  }

  /**
   * The next `count` publishes through this node are applied (stored, fanned out) but answered
   * with OUTCOME_UNKNOWN, as the Redis engine does when a publish's reply is lost and it cannot
   * learn the outcome in time.
   */
  loseReplies(count = 1): void {
    this.repliesToLose += count;
  }

  /** History reads still to fail (see failHistoryReads). */
  get pendingReadFailures(): number {
    return this.readsToFail;
  }

  /** The next `count` history reads of this node (backfills, recovery) fail with UNAVAILABLE, as when Redis is slow. */
  failHistoryReads(count = 1): void {
    this.readsToFail += count;
  }

  /** Lose the node for good (see TestBus.lose). */
  markLost(): void {
    this.gone = true;
  }

  private check(): void {
    if (this.gone) throw unavailable();
  }

  async publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    this.check();
    const result = await this.bus.broker.publish(channel, data, options);
    if (this.repliesToLose > 0) {
      this.repliesToLose--;
      throw new ChorusError(ErrorCode.OUTCOME_UNKNOWN, 'the publish was sent but its reply was lost (test bus); retry with the same idempotency key');
    }
    return result;
  }

  async publishPresenceEvent(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): Promise<void> {
    this.check();
    return this.bus.broker.publishPresenceEvent(event);
  }

  async publishControl(command: ControlCommand): Promise<void> {
    this.check();
    return this.bus.broker.publishControl(command);
  }

  async subscribe(channel: string, options: { recoverable?: boolean } = {}): Promise<void> {
    this.check();
    this.subscribed.add(channel);
    this.sequencer.track(channel, options.recoverable ?? true);
    await this.sequencer.advanceTo(channel, await this.position(channel));
  }

  async unsubscribe(channel: string): Promise<void> {
    this.subscribed.delete(channel);
    this.sequencer.untrack(channel);
  }

  async read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult> {
    this.check();
    if (this.readsToFail > 0) {
      this.readsToFail--;
      throw unavailable();
    }
    return this.bus.history.read(channel, options);
  }

  async position(channel: string): Promise<StreamPosition> {
    this.check();
    return this.bus.history.position(channel);
  }
}
