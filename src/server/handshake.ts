import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';

/** Answer an upgrade request with a plain HTTP error and close the socket (no WebSocket is opened). */
export function rejectUpgrade(socket: Duplex, status: number, code: string, message: string): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      '\r\n' +
      body,
  );
}

/**
 * Origin policy: requests without an Origin header (non-browser clients) pass; with an
 * allow-list the origin must be listed (or the list contains `*`); without one the origin's
 * host must equal the request's Host header (same origin).
 */
export function originAllowed(req: IncomingMessage, allowed: string[] | undefined): boolean {
  const origin = req.headers.origin;
  if (origin === undefined || origin === '') return true;
  if (allowed) {
    if (allowed.includes('*')) return true;
    const normalized = origin.toLowerCase().replace(/\/+$/, '');
    return allowed.some((a) => a.toLowerCase().replace(/\/+$/, '') === normalized);
  }
  try {
    return new URL(origin).host === (req.headers.host ?? '').toLowerCase();
  } catch {
    return false;
  }
}
