/**
 * The connect proxy's request body and the checks of its answer: who the user is, their info,
 * when the connection expires, and the channels it joins at once.
 */
import type { IncomingMessage } from 'node:http';

/** Largest `info` accepted from the backend, in bytes of JSON (as for JWT claims). */
export const MAX_INFO_BYTES = 1024;
/** Most `channels` a connect answer may list. */
export const MAX_CONNECT_CHANNELS = 100;

/** `a=1; b=2` -> `{a: '1', b: '2'}` (first occurrence wins; values are not decoded). */
export function parseCookies(header: string | undefined): Record<string, string> {
  const cookies: Record<string, string> = {};
  if (!header) return cookies;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (name && !Object.hasOwn(cookies, name)) cookies[name] = value;
  }
  return cookies;
}

/** The body of a connect call for an upgrade request (or a `refresh` frame, without one). */
export function connectBody(req: IncomingMessage | undefined, token: string | undefined, headerNames: readonly string[]): Record<string, unknown> {
  const body: Record<string, unknown> = { transport: 'websocket' };
  if (req) {
    body.cookies = parseCookies(typeof req.headers.cookie === 'string' ? req.headers.cookie : undefined);
    const headers: Record<string, string> = {};
    for (const name of headerNames) {
      const value = req.headers[name.toLowerCase()];
      if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
    }
    body.headers = headers;
    if (req.socket.remoteAddress) body.remoteAddr = req.socket.remoteAddress;
  }
  if (token !== undefined) body.token = token;
  return body;
}

export interface ProxyIdentity {
  user: string;
  info?: Record<string, unknown>;
  expiresAt?: number;
  channels?: string[];
}

/** Checks a connect (or refresh) `result`; returns the identity or the problem, for the log. */
export function identityFromResult(result: Record<string, unknown>, needUser: boolean): ProxyIdentity | string {
  const { user, info, expiresAt, channels } = result;
  const identity: Partial<ProxyIdentity> = {};
  if (needUser || user !== undefined) {
    if (typeof user !== 'string' || user.length === 0 || user.length > 255) return '"result.user" must be a string of 1 to 255 characters';
    identity.user = user;
  }
  if (info !== undefined) {
    if (typeof info !== 'object' || info === null || Array.isArray(info)) return '"result.info" must be an object';
    if (JSON.stringify(info).length > MAX_INFO_BYTES) return `"result.info" must be at most ${MAX_INFO_BYTES} bytes of JSON`;
    identity.info = info as Record<string, unknown>;
  }
  if (expiresAt !== undefined) {
    if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt) || expiresAt <= 0) return '"result.expiresAt" must be ms since the Unix epoch';
    identity.expiresAt = expiresAt;
  }
  if (channels !== undefined) {
    if (!Array.isArray(channels) || channels.length > MAX_CONNECT_CHANNELS || channels.some((c) => typeof c !== 'string')) {
      return `"result.channels" must be an array of at most ${MAX_CONNECT_CHANNELS} channel names`;
    }
    identity.channels = channels as string[];
  }
  return identity as ProxyIdentity;
}
