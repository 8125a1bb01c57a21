import type { WebSocketLike } from './types.js';

/** How the server refused a WebSocket handshake, when the WebSocket implementation shows it. */
export interface Refusal {
  /** The HTTP status of the refusal. */
  status: number;
  /** From a 503's `Retry-After` header (server-paced admission, docs/PROTOCOL.md 1.2), in ms. */
  retryAfterMs?: number;
  /** The start of the response body, where the transport could read it (the HTTP-streaming fallback). */
  detail?: string;
}

/** A refusal from an HTTP status and its `Retry-After` header value (seconds; read only on a 503). */
export function refusalFrom(status: number, retryAfter: string | null | undefined): Refusal {
  const refusal: Refusal = { status };
  const seconds = Number(retryAfter);
  if (status === 503 && retryAfter !== undefined && retryAfter !== null && retryAfter.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) refusal.retryAfterMs = seconds * 1000;
  return refusal;
}

/** A socket that reports its own refused handshake (the HTTP-streaming fallback, which sees the response). */
export interface ReportsRefusal {
  onrefused: ((refusal: Refusal) => void) | null;
}

type EventSource = {
  on?: (event: string, listener: (...args: any[]) => void) => unknown;
  terminate?: () => void;
};

/**
 * Watch a socket for a refused handshake. The HTTP-streaming fallback reads its response itself
 * (in browsers too: the server exposes `Retry-After` to cross-origin pages). Of WebSockets, only
 * Node's `ws` exposes the HTTP response (its `unexpected-response` event); browsers show scripts
 * nothing but a failed socket, so there this does nothing and the client backs off as after any
 * failure. `ws` leaves a response it reported to the listener, so the socket is terminated here
 * (an `error` and close 1006 follow, as before).
 */
export function watchRefusal(socket: WebSocketLike, refused: (refusal: Refusal) => void): void {
  if ('onrefused' in socket) {
    (socket as WebSocketLike & ReportsRefusal).onrefused = refused;
    return;
  }
  const source = socket as unknown as EventSource;
  if (typeof source.on !== 'function' || typeof source.terminate !== 'function') return;
  source.on('unexpected-response', (_req: unknown, res: { statusCode?: number; headers?: Record<string, string | string[] | undefined> }) => {
    const header = res?.headers?.['retry-after'];
    refused(refusalFrom(res?.statusCode ?? 0, Array.isArray(header) ? header[0] : header));
    source.terminate!();
  });
}
