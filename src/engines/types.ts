import type { PresenceMember, PublisherInfo, StreamPosition } from '../protocol/index.js';

/** A publication as stored and fanned out by an engine. */
export interface Publication {
  channel: string;
  data: unknown;
  /** Milliseconds since the Unix epoch when it was accepted. */
  time: number;
  /** Absent on ephemeral publications. */
  offset?: number;
  epoch?: string;
  publisher?: PublisherInfo;
  ephemeral?: boolean;
  /** What the publication updates (see `PublishOptions.key`). */
  key?: string;
}

export interface HistoryPolicy {
  /** Publications retained per channel. */
  size: number;
  /** Retention after the last publication, in ms. */
  ttlMs: number;
}

export interface PublishOptions {
  /** Keep the publication in the channel's history. Without it only an offset is assigned. */
  history?: HistoryPolicy;
  /** Idempotency key (already scoped by the caller, e.g. user + frame id); a repeat within the window returns the first result. */
  idempotencyKey?: string;
  /** Dedupe window for `idempotencyKey`, in ms. */
  idempotencyWindowMs?: number;
  publisher?: PublisherInfo;
  /** Not stored, no offset. */
  ephemeral?: boolean;
  /** Key of what the publication updates; carried with it (and in history) for `latest-per-key` queues. */
  key?: string;
  /** Client id that must not receive this publication (exclude the sender). */
  exceptClient?: string;
}

export interface PublishResult {
  offset?: number;
  epoch?: string;
  /** True when this was a retry inside the idempotency window (nothing new was published). */
  duplicate?: boolean;
}

/** Set on a command whose sender wants every node's answer (a `reply` with the connections it affected). */
export interface CommandRequest {
  /** Request id, unique to the sender. */
  request?: string;
  /** The sending node's id. */
  from?: string;
}

/** Cluster-wide commands delivered to every node (a single node delivers them to itself). */
export type ControlCommand =
  | ({ type: 'disconnect'; user: string; code: number; reason: string } & CommandRequest)
  | ({ type: 'subscribe'; user: string; channel: string } & CommandRequest)
  | ({ type: 'unsubscribe'; user: string; channel: string } & CommandRequest)
  /** A node's answer to a request: `count` of its connections were affected. */
  | { type: 'reply'; request: string; to: string; node: string; count: number };

/** What a broker delivers to its node. */
export type BrokerEvent =
  | { type: 'publication'; publication: Publication; exceptClient?: string }
  | { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }
  | { type: 'control'; command: ControlCommand }
  /**
   * The node may have missed publications of this channel that it cannot backfill (pub/sub
   * dropped and history could not cover the gap): its local subscribers must resynchronise.
   */
  | { type: 'lost'; channel: string };

/**
 * Fan-out. When history is on, appending to history and publishing are one atomic step per
 * channel, so no node observes offsets out of order or a publication missing from history.
 */
export interface Broker {
  /** Set the one handler that receives every event for channels this node subscribed to, and every control command. */
  setHandler(handler: (event: BrokerEvent) => void): void;
  publish(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult>;
  /** Fan out a join/leave event to every node with subscribers of the channel. */
  publishPresenceEvent(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): Promise<void>;
  /** Deliver a control command to every node, this one included. */
  publishControl(command: ControlCommand): Promise<void>;
  /**
   * Start receiving events for a channel (called when the node gets its first local subscriber).
   * `recoverable`: the channel keeps history, so the broker may backfill publications it missed.
   */
  subscribe(channel: string, options?: { recoverable?: boolean }): Promise<void>;
  /** Stop receiving events for a channel (called when the node's last local subscriber leaves). */
  unsubscribe(channel: string): Promise<void>;
  /**
   * True when every publication reaches this node's handler without a subscription to set up
   * (one process: the memory engine). Subscribers then need not wait for `subscribe`. Optional.
   */
  readonly inProcess?: boolean;
}

export interface HistoryReadOptions {
  /** Only publications after this offset; the epoch must be the stream's or the read fails. */
  since?: StreamPosition;
  /** At most this many publications. */
  limit: number;
  /** Newest first. */
  reverse?: boolean;
}

export interface HistoryReadResult {
  publications: Publication[];
  /** The stream's top position (offset of the newest publication, 0 if none) and epoch. */
  position: StreamPosition;
  /** The oldest retained offset (top + 1 when nothing is retained). */
  firstOffset: number;
}

export interface HistoryStore {
  /** Read retained publications. Throws ChorusError(UNRECOVERABLE_POSITION) if `since.epoch` is not the stream's. */
  read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult>;
  /** The stream's top position (creates the stream, and its epoch, if it does not exist). */
  position(channel: string): Promise<StreamPosition>;
  /** `position` answered at once, where the store holds streams in this process (the memory engine). Optional. */
  positionNow?(channel: string): StreamPosition;
}

export interface PresenceEntry {
  user: string;
  info?: Record<string, unknown>;
}

export interface PresenceStore {
  /** Add or refresh one connection's entry. `firstForUser` is true when the user had no entry in the channel before. */
  add(channel: string, clientId: string, entry: PresenceEntry, ttlMs: number): Promise<{ firstForUser: boolean }>;
  /** Remove one connection's entry. `lastForUser` is true when it was the user's last connection in the channel. */
  remove(channel: string, clientId: string): Promise<{ lastForUser: boolean; user?: string }>;
  /** One entry per user with the number of their connections. */
  list(channel: string): Promise<PresenceMember[]>;
  stats(channel: string): Promise<{ users: number; connections: number }>;
  /** Drop expired entries (e.g. of a node that died); returns the users who left the channel with them. */
  sweep(channel: string): Promise<PresenceEntry[]>;
}

/**
 * Open connections per user, for the per-user cap. Entries expire by TTL unless refreshed by
 * the node that owns them, so a dead node's connections stop counting.
 */
export interface ConnectionRegistry {
  /** Reserve a slot for `clientId`; false when the user already has `max` live entries. */
  reserve(user: string, clientId: string, max: number, ttlMs: number): Promise<boolean>;
  release(user: string, clientId: string): Promise<void>;
  /** Extend the TTL of these (live, local) entries. */
  refresh(entries: Array<{ user: string; clientId: string }>, ttlMs: number): Promise<void>;
}

/** Token buckets by key, shared by every node using the engine. */
export interface RateLimiter {
  consume(key: string, ratePerSecond: number, burst: number, cost?: number): Promise<{ ok: boolean; retryAfterMs: number }>;
}

/** One node's last report in the node directory. */
export interface NodeReport {
  node: string;
  /** When it was reported, ms since the Unix epoch (the reporting node's clock). */
  time: number;
  /** What the node reported (the server's `NodeStats`); JSON. */
  data: unknown;
}

/**
 * Which nodes are alive and what each last reported (its connections, channels, rates), so any
 * node can answer for the cluster. A report expires `ttlMs` after it was written unless the
 * node writes again, so a dead node drops out.
 */
export interface NodeDirectory {
  /** Write (or replace) this node's report, expiring after `ttlMs`. */
  report(node: string, data: unknown, ttlMs: number): Promise<void>;
  /** Every unexpired report, sorted by node. */
  list(): Promise<NodeReport[]>;
  /** Remove this node's report (graceful shutdown). */
  remove(node: string): Promise<void>;
}

/** An engine bundles the three stores; the memory engine is one process, Redis many. */
export interface Engine {
  readonly name: string;
  readonly broker: Broker;
  readonly history: HistoryStore;
  readonly presence: PresenceStore;
  readonly connections: ConnectionRegistry;
  readonly rateLimiter: RateLimiter;
  readonly nodes: NodeDirectory;
  /** Called by the server when it starts using the engine. */
  start(): Promise<void>;
  /** Release timers and connections. */
  close(): Promise<void>;
}
