/**
 * An in-process test bus: several engine nodes in one process share one in-memory state
 * (streams and history, presence, the connection registry, rate limits: a MemoryEngine) and a
 * bus that carries publications, presence events and control commands between them, like Redis
 * pub/sub does between Chorus nodes. Fault switches drop, delay, reorder or duplicate a
 * publication on its way to a node, or hold a node's whole backlog back and release it; a node
 * can lose publish replies (applied, answered OUTCOME_UNKNOWN) or fail history reads; a node can be disconnected from the bus and reconnected
 * (its pub/sub connection dropped) or lost for good (a crash: its presence entries and
 * connection slots expire by TTL because nobody refreshes them). Multi-node behaviour is
 * tested in milliseconds, without Redis.
 */
import { systemClock, type Clock } from '../clock.js';
import { MemoryEngine } from '../memory/index.js';
import type { BrokerEvent } from '../types.js';
import { FaultSwitches, type FaultTarget } from './faults.js';
import { BusNode, type BusNodeOptions } from './node.js';

export { BusNode, type BusNodeOptions } from './node.js';
export { FaultSwitches, type FaultAction, type FaultKind, type FaultTarget } from './faults.js';

export interface TestBusOptions {
  /** Clock of the shared state (TTLs, publication times). Default the system clock. */
  now?: Clock;
}

export class TestBus {
  /** The shared state: every node's history, presence, registry and rate limits. */
  readonly store: MemoryEngine;
  readonly faults = new FaultSwitches();
  private readonly nodes = new Map<string, BusNode>();
  /** Publications held back by `holdBacklog`, per node id, in arrival order. */
  private readonly backlogs = new Map<string, Array<Extract<BrokerEvent, { type: 'publication' }>>>();
  /** Publications held back by `reorder`, per node and channel. */
  private readonly held = new Map<string, BrokerEvent[]>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(options: TestBusOptions = {}) {
    this.store = new MemoryEngine({ now: options.now ?? systemClock });
    this.store.setHandler((event) => this.fanOut(event));
  }

  /** A new node (an Engine for one server); `id` names it for fault switches. */
  node(id: string, options: BusNodeOptions = {}): BusNode {
    if (this.nodes.has(id)) throw new TypeError(`bus node ${id} exists already`);
    const node = new BusNode(id, this.store, options);
    this.nodes.set(id, node);
    return node;
  }

  /** Drop the next `count` publications matching the target (default: the next one to any node). */
  drop(target: FaultTarget = {}): void {
    this.faults.add('drop', target);
  }

  /** Deliver the next `count` matching publications twice. */
  duplicate(target: FaultTarget = {}): void {
    this.faults.add('duplicate', target);
  }

  /** Deliver the next `count` matching publications `ms` later (later ones may overtake them). */
  delay(target: FaultTarget & { ms: number }): void {
    this.faults.add('delay', target);
  }

  /** Hold each of the next `count` matching publications until the next publication of its channel to that node has been delivered. */
  reorder(target: FaultTarget = {}): void {
    this.faults.add('reorder', target);
  }

  /**
   * Hold back every publication on its way to `node` (a stalled pub/sub link: nothing is lost,
   * nothing arrives) until `releaseBacklog`, while the node's commands (history reads, publishes)
   * still work.
   */
  holdBacklog(node: BusNode): void {
    if (!this.backlogs.has(node.id)) this.backlogs.set(node.id, []);
  }

  /** Deliver everything held back for `node`, in order, at once (the link resumed). Returns how many. */
  releaseBacklog(node: BusNode): number {
    const backlog = this.backlogs.get(node.id) ?? [];
    this.backlogs.delete(node.id);
    for (const event of backlog) node.receive(event);
    return backlog.length;
  }

  /**
   * Lose a node for good, as if its process died: it receives nothing more and every operation
   * it tries fails with UNAVAILABLE, so its presence entries and connection slots are no longer
   * refreshed and expire by their TTL (another node's presence sweep then sends their `leave`).
   */
  lose(node: BusNode): void {
    node.markLost();
  }

  /** True when no publication is in flight: none delayed, none held back by `reorder`. */
  get settled(): boolean {
    return this.timers.size === 0 && this.held.size === 0;
  }

  /** Start the shared state's sweeper. */
  async start(): Promise<void> {
    await this.store.start();
  }

  /** Clear pending delays and the sweeper. */
  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.held.clear();
    this.backlogs.clear();
    await this.store.close();
  }

  /** One event from the shared broker to every node it concerns, asynchronously (like pub/sub). */
  private fanOut(event: BrokerEvent): void {
    for (const node of this.nodes.values()) {
      if (event.type === 'control') {
        queueMicrotask(() => node.receive(event));
      } else if (event.type === 'publication') {
        if (node.listens(event.publication.channel)) this.route(node, event);
      } else if (event.type !== 'lost' && node.listens(event.channel)) {
        queueMicrotask(() => node.receive(event));
      }
    }
  }

  /** A publication on its way to one node, through the fault switches. */
  private route(node: BusNode, event: Extract<BrokerEvent, { type: 'publication' }>): void {
    const backlog = this.backlogs.get(node.id);
    if (backlog) {
      backlog.push(event);
      return;
    }
    const action = this.faults.next(node.id, event.publication);
    const key = `${node.id}\u0000${event.publication.channel}`;
    const deliver = () => {
      node.receive(event);
      const held = this.held.get(key);
      if (held) {
        this.held.delete(key);
        for (const h of held) node.receive(h);
      }
    };
    switch (action.kind) {
      case 'drop':
        return;
      case 'duplicate':
        queueMicrotask(() => {
          deliver();
          node.receive(event);
        });
        return;
      case 'delay': {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          deliver();
        }, action.ms);
        timer.unref();
        this.timers.add(timer);
        return;
      }
      case 'reorder': {
        const held = this.held.get(key) ?? [];
        held.push(event);
        this.held.set(key, held);
        return;
      }
      case 'deliver':
        queueMicrotask(deliver);
    }
  }
}
