/** Webhook events, the outbox that holds them once for the cluster, and a target's queue. */
import type { WebhookEventName } from '../options.js';

/** One event as sent in a webhook body's `events` array. */
export interface WebhookEvent {
  /** Unique per event (stable across retries and redeliveries): receivers de-duplicate by it. */
  id: string;
  type: WebhookEventName;
  /** When it happened, ms since the Unix epoch. */
  time: number;
  channel: string;
  /** presence.join / presence.leave: the user, and their info if any. */
  user?: string;
  info?: Record<string, unknown>;
}

/** An event taken from a target's queue, with the handle to acknowledge it. */
export interface QueuedEvent {
  handle: string;
  event: WebhookEvent;
}

/** One webhook target's view of the outbox: what it has not delivered yet. */
export interface WebhookQueue {
  /** Up to `max` undelivered events, waiting up to about a second for the first; [] when none or closed. */
  take(max: number): Promise<QueuedEvent[]>;
  /** Still working on these (a retry): keep other nodes from taking them over. */
  keep(items: readonly QueuedEvent[]): Promise<void>;
  /** Delivered (or given up): remove them. */
  ack(items: readonly QueuedEvent[]): Promise<void>;
  close(): void;
}

/**
 * Where events wait for delivery, once for the whole cluster: the memory outbox for one process,
 * the Redis outbox for nodes sharing Redis.
 */
export interface Outbox {
  /** Queue an event that happened once in the cluster (presence join/leave). */
  publish(event: WebhookEvent): Promise<void>;
  /**
   * A channel got its first (`occupied`) or lost its last subscriber ON THIS NODE. Queues
   * `channel.occupied` / `channel.vacated` only when that flips the channel cluster-wide.
   */
  localChannel(channel: string, occupied: boolean, now: number): Promise<void>;
  /** Periodic upkeep: keep this node's channels counted, and vacate the channels of nodes that died. */
  maintain(localChannels: readonly string[], now: number): Promise<void>;
  /** The queue of one target (`id` stays the same across restarts and nodes: e.g. from its URL). */
  queue(id: string): WebhookQueue;
  close(): Promise<void>;
}
