/**
 * Named disconnects: every close the server decides on is one of these `{code, reason}` values,
 * so no call site picks a code and a reason by hand. Whether the client reconnects follows from
 * the code alone (`shouldReconnect`); the `reconnect` flag of the `disconnect` frame is derived
 * from it. The table in docs/PROTOCOL.md ("Named disconnects") lists the same values.
 */
import { CloseCode } from './codes.js';
import type { DisconnectData } from './messages.js';

/** A close the server decides on: the WebSocket close code and a human-readable reason. */
export interface Disconnect {
  readonly code: number;
  readonly reason: string;
}

export const Disconnect = {
  /** Graceful shutdown: reconnect after the `retryAfterMs` the frame carries. */
  shutdown: { code: CloseCode.GOING_AWAY, reason: 'server shutting down' },
  /** A text message was not valid UTF-8 (detected by the transport). */
  invalidPayload: { code: CloseCode.INVALID_PAYLOAD, reason: 'invalid UTF-8' },
  /** Too many faulty frames within `limits.faultWindowMs`. */
  abuse: { code: CloseCode.POLICY_VIOLATION, reason: 'too many faulty frames' },
  /** A message exceeded `limits.maxMessageBytes` (detected by the transport). */
  messageTooBig: { code: CloseCode.MESSAGE_TOO_BIG, reason: 'message too big' },
  /** Writing to the transport failed. */
  writeFailed: { code: CloseCode.INTERNAL_ERROR, reason: 'write failed' },
  /** The token expired and was not refreshed in time. */
  tokenExpired: { code: CloseCode.TOKEN_EXPIRED, reason: 'token expired' },
  /** Nothing arrived from the peer within `heartbeat.timeoutMs`. */
  heartbeatTimeout: { code: CloseCode.HEARTBEAT_TIMEOUT, reason: 'heartbeat timeout' },
  /** The send queue exceeded `limits.maxQueuedBytes`. */
  slowConsumer: { code: CloseCode.SLOW_CONSUMER, reason: 'slow consumer' },
  /** The personal channel could not be set up (engine failure): reconnect and try again. */
  personalChannelUnavailable: { code: CloseCode.DISCONNECT_RECONNECT, reason: 'personal channel unavailable; reconnect' },
  /** The node lost publications it cannot backfill: reconnect and recover by position. */
  insufficientState: { code: CloseCode.INSUFFICIENT_STATE, reason: 'insufficient state' },
  /** Disconnected by the server or an admin, may reconnect. */
  reconnectByServer: { code: CloseCode.DISCONNECT_RECONNECT, reason: 'disconnected by the server' },
  /** Disconnected by the server or an admin; do not reconnect. */
  disconnectedByServer: { code: CloseCode.DISCONNECT, reason: 'disconnected by the server' },
} as const satisfies Record<string, Disconnect>;

/** The same disconnect with another reason (e.g. the message of a hook's error). */
export function withReason(disconnect: Disconnect, reason: string): Disconnect {
  return { code: disconnect.code, reason };
}

/** The admin disconnect (`disconnectUser`, `POST /api/disconnect`): 4004 with `reconnect`, else 4500. */
export function disconnectByServer(reconnect: boolean, reason?: string): Disconnect {
  const base = reconnect ? Disconnect.reconnectByServer : Disconnect.disconnectedByServer;
  return reason === undefined ? base : withReason(base, reason);
}

/**
 * Whether a client should reconnect after a close with this code: not after 1000 (normal),
 * 1008 (policy violation: the client keeps sending bad frames) or 4500-4999; after every other
 * code, with backoff.
 */
export function shouldReconnect(code: number): boolean {
  if (code >= 4500 && code <= 4999) return false;
  if (code === CloseCode.NORMAL || code === CloseCode.POLICY_VIOLATION) return false;
  return true;
}

/** The `disconnect` frame's data for a named disconnect; `reconnect` follows from the code. */
export function disconnectData(disconnect: Disconnect, retryAfterMs?: number): DisconnectData {
  const data: DisconnectData = { code: disconnect.code, reason: disconnect.reason, reconnect: shouldReconnect(disconnect.code) };
  if (retryAfterMs !== undefined) data.retryAfterMs = retryAfterMs;
  return data;
}
