import type { StreamPosition } from './position.js';

/** Reserved client-to-server events. Any other event name is an application event. */
export const ClientEvent = {
  SUBSCRIBE: 'subscribe',
  UNSUBSCRIBE: 'unsubscribe',
  PUBLISH: 'publish',
  HISTORY: 'history',
  PRESENCE: 'presence',
  REFRESH: 'refresh',
  PING: 'ping',
} as const;

/** Reserved server-to-client events. */
export const ServerEvent = {
  CONNECTED: 'connected',
  ACK: 'ack',
  ERROR: 'error',
  MESSAGE: 'message',
  JOIN: 'join',
  LEAVE: 'leave',
  SUBSCRIBED: 'subscribed',
  UNSUBSCRIBED: 'unsubscribed',
  PING: 'ping',
  PONG: 'pong',
  DISCONNECT: 'disconnect',
  SKIPPED: 'skipped',
} as const;

export const RESERVED_EVENTS: ReadonlySet<string> = new Set([
  ...Object.values(ClientEvent),
  ...Object.values(ServerEvent),
]);

/**
 * Events of shared documents (docs/PROTOCOL.md, documents over the Chorus protocol): `doc.open`
 * and `doc.close` are requests; `doc.update` and `doc.awareness` go both ways. A server serves
 * them when it runs documents; an application handler can never take these names.
 */
export const DocumentEvent = {
  OPEN: 'doc.open',
  UPDATE: 'doc.update',
  AWARENESS: 'doc.awareness',
  CLOSE: 'doc.close',
} as const;

export const DOCUMENT_EVENTS: ReadonlySet<string> = new Set(Object.values(DocumentEvent));

/** `subscribe` request data. */
export interface SubscribeRequest {
  channel: string;
  /** Recover every publication after this position before live ones. */
  since?: StreamPosition;
  /** Deliver the channel's latest publication first (dashboards). */
  snapshot?: boolean;
}

/** `subscribe` ack data (also the data of a server-side `subscribed` event). */
export interface SubscribeResult {
  channel: string;
  /** Position of the stream after everything this subscription was sent before the ack. */
  offset: number;
  epoch: string;
  /** Present when `since` was sent: whether every missed publication was delivered. */
  recovered?: boolean;
  /** Whether the channel keeps history (so positions can be recovered). */
  history: boolean;
  /** Whether the channel has presence. */
  presence: boolean;
}

/** `publish` request data. */
export interface PublishRequest {
  channel: string;
  data: unknown;
  /** Not stored, no offset, may be dropped under pressure (typing, cursors). */
  ephemeral?: boolean;
  /**
   * Key of what the publication updates (1-128 characters), e.g. a sensor or node id. On a
   * `latest-per-key` namespace a slow subscriber keeps only the newest queued publication per key.
   */
  key?: string;
}

/** `publish` ack data. Ephemeral publications have no offset. */
export interface PublishResult {
  offset?: number;
  epoch?: string;
}

/** Who published, as seen by subscribers. Absent for publications made through the HTTP API. */
export interface PublisherInfo {
  user: string;
  client?: string;
  info?: Record<string, unknown>;
}

/** `message` event data: one publication delivered to a subscriber. */
export interface MessageData<D = unknown> {
  channel: string;
  data: D;
  /** Absent on ephemeral publications. */
  offset?: number;
  epoch?: string;
  /** Milliseconds since the Unix epoch when the server accepted the publication. */
  time: number;
  publisher?: PublisherInfo;
  ephemeral?: true;
  /** The publication's key, when it was published with one. */
  key?: string;
}

/**
 * `skipped` event data: the server did not deliver offsets `from`..`to` (inclusive) of a channel
 * to this subscriber (a `latest-per-key` or `drop-oldest` namespace, the subscriber being slow).
 * It arrives exactly where those publications would have been: a client whose position is
 * `from - 1` (same epoch) moves its position to `to` without treating it as a gap.
 */
export interface SkippedData {
  channel: string;
  epoch: string;
  from: number;
  to: number;
}

/** One member in a presence list: one entry per user, however many connections. */
export interface PresenceMember {
  user: string;
  /** Number of this user's connections subscribed to the channel. */
  connections: number;
  info?: Record<string, unknown>;
}

/** `join` / `leave` event data. */
export interface PresenceEventData {
  channel: string;
  user: string;
  info?: Record<string, unknown>;
}

/** `history` request data. */
export interface HistoryRequest {
  channel: string;
  /** Return publications after this position; the epoch must match the stream's. */
  since?: StreamPosition;
  /** Maximum publications to return (server caps it). */
  limit?: number;
  /** Newest first instead of oldest first. */
  reverse?: boolean;
}

/** `history` ack data. */
export interface HistoryResult {
  channel: string;
  publications: MessageData[];
  /** The stream's current top position. */
  offset: number;
  epoch: string;
}

/** `connected` event data, the first frame a server sends. */
export interface ConnectedData {
  client: string;
  user: string;
  /** The server sends a `ping` frame at least this often (ms). */
  pingIntervalMs: number;
  /** The server closes connections that send nothing (not even a pong) for this long (ms). */
  pingTimeoutMs: number;
  /** Token expiry in ms since the Unix epoch, if the token expires. */
  expiresAt?: number;
  /** Server-side subscriptions made at connect time. */
  subscriptions: SubscribeResult[];
  /** Server node id (useful in clusters and logs). */
  node: string;
}

/** `disconnect` event data, sent just before the server closes the socket on purpose. */
export interface DisconnectData {
  code: number;
  reason: string;
  reconnect: boolean;
  /** Suggested delay before reconnecting, in ms (graceful shutdown). */
  retryAfterMs?: number;
}

/** Valid channel names: 1-255 characters of letters, digits and `_-:.@=/#!~+`. */
export const CHANNEL_NAME_PATTERN = /^[A-Za-z0-9_\-:.@=/#!~+]{1,255}$/;

export function isValidChannelName(name: unknown): name is string {
  return typeof name === 'string' && CHANNEL_NAME_PATTERN.test(name);
}
