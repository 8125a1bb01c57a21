/**
 * Close codes of the `/yjs/<document>` endpoint (listed in docs/PROTOCOL.md). The y-websocket
 * binary protocol has no error message, so a refused update closes the socket with one of these.
 * They follow y-websocket's convention (its `WebsocketProvider` default `shouldReconnect`, 3.1):
 * 4400-4499 is permanent, like HTTP 4xx (the provider stops reconnecting); every other code is
 * transient (it reconnects with backoff and re-sends its unacknowledged state).
 */
export const DocumentCloseCode = {
  /** Server shutting down, or the document was unloaded under the connection. Reconnect. */
  GOING_AWAY: 1001,
  /** A message larger than `documents.limits.maxUpdateBytes` (closed by the WebSocket layer). */
  MESSAGE_TOO_BIG: 1009,
  /** The token expired (the provider's `params.token` must be replaced before it reconnects). */
  TOKEN_EXPIRED: 4001,
  /** No pong or message within the heartbeat timeout. */
  HEARTBEAT_TIMEOUT: 4002,
  /** More than `limits.updatesPerSecond` (burst `limits.updatesBurst`) messages: reconnect after a backoff. */
  RATE_LIMITED: 4529,
  /** The document could not be loaded or an update could not be applied (store or engine down): reconnect. */
  UNAVAILABLE: 4503,
  /** Applying the update would make the document larger than `limits.maxDocumentBytes`. Do not reconnect. */
  DOCUMENT_TOO_LARGE: 4413,
  /** A message that is not valid y-websocket protocol (unknown type, truncated, not a Yjs update). Do not reconnect. */
  BAD_MESSAGE: 4400,
} as const;
export type DocumentCloseCode = (typeof DocumentCloseCode)[keyof typeof DocumentCloseCode];

/** Error codes of document operations (Chorus-protocol replies and HTTP API errors). */
export const DocumentErrorCode = {
  /** The user may only read this document (update refused). */
  READ_ONLY: 'READ_ONLY',
  /** See DocumentCloseCode.DOCUMENT_TOO_LARGE. */
  DOCUMENT_TOO_LARGE: 'DOCUMENT_TOO_LARGE',
  /** See DocumentCloseCode.BAD_MESSAGE. */
  BAD_UPDATE: 'BAD_UPDATE',
  /** `doc.update`/`doc.awareness` for a document the connection has not opened. */
  NOT_OPEN: 'NOT_OPEN',
  /** The connection already has `limits.maxDocumentsPerConnection` documents open. */
  TOO_MANY_DOCUMENTS: 'TOO_MANY_DOCUMENTS',
} as const;

/** A document operation refused with a stable `code` and the close code that goes with it on `/yjs/`. */
export class DocumentError extends Error {
  readonly code: string;
  readonly closeCode: number;
  constructor(code: string, closeCode: number, message: string) {
    super(message);
    this.name = 'DocumentError';
    this.code = code;
    this.closeCode = closeCode;
  }
}
