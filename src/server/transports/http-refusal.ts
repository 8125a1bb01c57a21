import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Refuse a request to an HTTP transport (`/stream`, `/sse`): `{"error":{"code","message"}}` as
 * JSON, `Retry-After` when given (server-paced admission, docs/PROTOCOL.md 1.2) and, for a page
 * on another origin, the CORS headers that let its script read the status, the body and
 * `Retry-After` (the browser client paces its retry by it). The answer says nothing the page
 * could not learn by asking again.
 */
export function refuseHttp(req: IncomingMessage, res: ServerResponse, status: number, code: string, message: string, retryAfterSec?: number): void {
  const body = JSON.stringify({ error: { code, message } });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (retryAfterSec !== undefined) headers['retry-after'] = String(retryAfterSec);
  const origin = req.headers.origin;
  if (typeof origin === 'string' && origin !== '') {
    headers['access-control-allow-origin'] = origin;
    headers['access-control-expose-headers'] = 'Retry-After';
    headers.vary = 'Origin';
  }
  res.writeHead(status, headers);
  res.end(body);
}
