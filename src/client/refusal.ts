import type { WebSocketLike } from './types.js';

/** How the server refused a WebSocket handshake, when the WebSocket implementation shows it. */
export interface Refusal {
  /** The HTTP status of the refusal. */
  status: number;
  /** From a 503's `Retry-After` header (server-paced admission, docs/PROTOCOL.md 1.2), in ms. */
  retryAfterMs?: number;
}

type EventSource = {
  on?: (event: string, listener: (...args: any[]) => void) => unknown;
  terminate?: () => void;
};

/**
 * Watch a socket for a refused handshake. Only Node's `ws` exposes the HTTP response (its
 * `unexpected-response` event); browsers show scripts nothing but a failed socket, so there this
 * does nothing and the client backs off as after any failure. `ws` leaves a response it reported
 * to the listener, so the socket is terminated here (an `error` and close 1006 follow, as before).
 */
export function watchRefusal(socket: WebSocketLike, refused: (refusal: Refusal) => void): void {
  const source = socket as unknown as EventSource;
  if (typeof source.on !== 'function' || typeof source.terminate !== 'function') return;
  source.on('unexpected-response', (_req: unknown, res: { statusCode?: number; headers?: Record<string, string | string[] | undefined> }) => {
    const refusal: Refusal = { status: res?.statusCode ?? 0 };
    const header = res?.headers?.['retry-after'];
    const seconds = Number(Array.isArray(header) ? header[0] : header);
    if (refusal.status === 503 && header !== undefined && Number.isFinite(seconds) && seconds >= 0) refusal.retryAfterMs = seconds * 1000;
    refused(refusal);
    source.terminate!();
  });
}
