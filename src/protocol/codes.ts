/**
 * Error and close codes of the Chorus wire protocol. Every value here is listed in
 * docs/PROTOCOL.md; changing one is a breaking change of the protocol.
 */

/** String codes carried by `{"event":"error","data":{"code",...}}` replies and HTTP API errors. */
export const ErrorCode = {
  /** The frame is not valid JSON, or not an object with a string `event`. */
  BAD_FRAME: 'BAD_FRAME',
  /** No handler exists for the frame's `event`. */
  UNKNOWN_EVENT: 'UNKNOWN_EVENT',
  /** The frame's `data` does not have the shape the event needs (missing field, wrong type, schema failure). */
  BAD_REQUEST: 'BAD_REQUEST',
  /** The channel name is not valid, or no namespace matches it. */
  BAD_CHANNEL: 'BAD_CHANNEL',
  /** The user may not do this on this channel. */
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  /** The connection is already subscribed to the channel. */
  ALREADY_SUBSCRIBED: 'ALREADY_SUBSCRIBED',
  /** The operation needs a subscription the connection does not have. */
  NOT_SUBSCRIBED: 'NOT_SUBSCRIBED',
  /** The connection has reached `limits.maxSubscriptionsPerConnection`. */
  TOO_MANY_SUBSCRIPTIONS: 'TOO_MANY_SUBSCRIPTIONS',
  /** The connection's token bucket is empty; `data.retryAfterMs` says when to retry. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** The feature is not enabled for this channel's namespace (history, presence). */
  NOT_AVAILABLE: 'NOT_AVAILABLE',
  /** A token sent with `refresh` is invalid, expired, or for another user. */
  TOKEN_INVALID: 'TOKEN_INVALID',
  /** Authentication is missing or wrong (HTTP API). */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** The engine (e.g. Redis) is unreachable; the operation was not applied. */
  UNAVAILABLE: 'UNAVAILABLE',
  /**
   * A publish reached the engine but its outcome could not be learned in time (the reply was
   * lost or late and the engine did not answer the follow-up lookup): it may or may not have
   * been applied. Retry with the same idempotency key (a client `publish` frame: the same `id`);
   * it will not be applied twice. HTTP 504.
   */
  OUTCOME_UNKNOWN: 'OUTCOME_UNKNOWN',
  /** The user already has `limits.maxConnectionsPerUser` connections (HTTP 429 at the handshake). */
  TOO_MANY_CONNECTIONS: 'TOO_MANY_CONNECTIONS',
  /** The Origin header is not in the allow-list (HTTP 403 at the handshake). */
  ORIGIN_NOT_ALLOWED: 'ORIGIN_NOT_ALLOWED',
  /** A `since` position cannot be used: its epoch is not the stream's current epoch. */
  UNRECOVERABLE_POSITION: 'UNRECOVERABLE_POSITION',
  /** The request was too large (HTTP API body). */
  TOO_LARGE: 'TOO_LARGE',
  /** Not found (HTTP API route). */
  NOT_FOUND: 'NOT_FOUND',
  /** The server is shutting down. */
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  /** The node is over its admission rate (HTTP 503 with `Retry-After` at the handshake): retry after that many seconds. */
  OVER_CAPACITY: 'OVER_CAPACITY',
  /** An unexpected server fault; the message never includes internals. */
  INTERNAL: 'INTERNAL',
  /** Client-side only: no reply arrived within the timeout. */
  TIMEOUT: 'TIMEOUT',
  /** Client-side only: the connection closed before a reply arrived, or the client is not connected. */
  DISCONNECTED: 'DISCONNECTED',
  /** Client-side only: the offline queue is full or the queued item became too old. */
  QUEUE_FULL: 'QUEUE_FULL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * WebSocket close codes sent by the server.
 *
 * Ranges: 4000-4499 tell the client to reconnect (with backoff); 4500-4999 tell it not to
 * (see `shouldReconnect` and the named disconnects in disconnect.ts).
 * Standard codes: 1000 normal, 1001 server going away (reconnect), 1007 invalid UTF-8,
 * 1008 policy violation (repeated abuse), 1009 message too big, 1011 internal error.
 */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  /** The token expired and was not refreshed in time. Reconnect with a fresh token. */
  TOKEN_EXPIRED: 4001,
  /** No frame or pong from the peer within the heartbeat timeout. */
  HEARTBEAT_TIMEOUT: 4002,
  /** The connection's send queue exceeded `limits.maxQueuedBytes`: the client does not read fast enough. */
  SLOW_CONSUMER: 4003,
  /** Disconnected by the server or an admin, with permission to reconnect. */
  DISCONNECT_RECONNECT: 4004,
  /** The server node lost publications it cannot backfill (e.g. its Redis pub/sub dropped): reconnect and recover by position. */
  INSUFFICIENT_STATE: 4005,
  /** Disconnected by the server or an admin; do not reconnect. */
  DISCONNECT: 4500,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** An error carrying a stable protocol `code`. Thrown by hooks and handlers to deny with that code. */
export class ChorusError extends Error {
  readonly code: string;
  /** Extra fields sent with the error reply, e.g. `retryAfterMs`. */
  readonly details: Record<string, unknown> | undefined;
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'ChorusError';
    this.code = code;
    this.details = details;
  }
}
