import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';

/**
 * Answer an upgrade request with a plain HTTP error and close the socket (no WebSocket is opened);
 * `retryAfterSec` adds a `Retry-After` header.
 */
export function rejectUpgrade(socket: Duplex, status: number, code: string, message: string, retryAfterSec?: number): void {
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
      (retryAfterSec !== undefined ? `Retry-After: ${retryAfterSec}\r\n` : '') +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      '\r\n' +
      body,
  );
}

/** Why an upgrade request is not a valid WebSocket handshake (checked before authentication), or undefined. */
export function invalidUpgrade(req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return 'the WebSocket handshake must be a GET request';
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return 'missing "Upgrade: websocket"';
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key)) return 'missing or invalid Sec-WebSocket-Key';
  if (req.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version must be 13';
  return undefined;
}

/**
 * Origin policy: requests without an Origin header (non-browser clients) pass; with an
 * allow-list the origin must be listed (or the list contains `*`); without one the origin's
 * host (name and port) must equal the request's Host header. The scheme is not compared: behind
 * a TLS-terminating proxy the server cannot know the scheme the browser used.
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
    // Hosts compared with default ports normalised away (URL drops :80 for http and :443 for https).
    const parsed = new URL(origin);
    const host = new URL(`${parsed.protocol}//${req.headers.host ?? ''}`).host;
    return parsed.host === host;
  } catch {
    return false;
  }
}
