/**
 * Demo sign-in (`POST /demo/token`), on only when no JWT key was configured: anyone can get
 * a one-hour HS256 token for any display name. Never logs the secret or a token.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignJWT } from 'jose';
import { sendError } from './static.js';

/** Lifetime of a demo token, in seconds. */
export const DEMO_TOKEN_TTL_SEC = 3600;
/** Largest accepted request body, in bytes. */
const MAX_BODY_BYTES = 1024;
/** Longest display name, in characters. */
const MAX_NAME_CHARS = 40;

export interface DemoTokenResult {
  token: string;
  /** The user id (the token's `sub`). */
  user: string;
  info: { name: string };
  /** Token expiry, ms since the Unix epoch. */
  expiresAt: number;
}

/** A user id from a display name: lower-case `[a-z0-9_-]`, at most 24 chars, plus a random suffix. */
export function demoUserId(name: string): string {
  const base =
    name
      .normalize('NFKD')
      .toLowerCase()
      .replace(/[^a-z0-9_-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 24) || 'guest';
  return `${base}-${randomBytes(3).toString('hex')}`;
}

/** Trims and checks a display name; returns `undefined` when it is unusable. */
export function cleanName(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  // Drop control characters; collapse whitespace.
  const name = raw.replace(/[\u0000-\u001f\u007f]/g, '').replace(/\s+/g, ' ').trim();
  if (name.length === 0 || [...name].length > MAX_NAME_CHARS) return undefined;
  return name;
}

export async function signDemoToken(
  secret: string,
  name: string,
  claims: { issuer?: string | undefined; audience?: string | undefined } = {},
): Promise<DemoTokenResult> {
  const user = demoUserId(name);
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ info: { name } })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user)
    .setIssuedAt(now)
    .setExpirationTime(now + DEMO_TOKEN_TTL_SEC);
  if (claims.issuer !== undefined) jwt.setIssuer(claims.issuer);
  if (claims.audience !== undefined) jwt.setAudience(claims.audience);
  const token = await jwt.sign(new TextEncoder().encode(secret));
  return { token, user, info: { name }, expiresAt: (now + DEMO_TOKEN_TTL_SEC) * 1000 };
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolvePromise(undefined);
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolvePromise(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Answers `POST /demo/token` `{"name"}` with `{"token","user","info","expiresAt"}`. */
export async function handleDemoToken(
  req: IncomingMessage,
  res: ServerResponse,
  secret: string,
  claims: { issuer?: string | undefined; audience?: string | undefined },
): Promise<void> {
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    sendError(res, 405, 'METHOD_NOT_ALLOWED', 'use POST with {"name": "..."}');
    return;
  }
  let text: string | undefined;
  try {
    text = await readBody(req, MAX_BODY_BYTES);
  } catch {
    res.destroy();
    return;
  }
  if (text === undefined) {
    sendError(res, 413, 'TOO_LARGE', `body larger than ${MAX_BODY_BYTES} bytes`);
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    sendError(res, 400, 'BAD_REQUEST', 'body must be JSON {"name": "..."}');
    return;
  }
  const name = cleanName((body as { name?: unknown } | null)?.name);
  if (name === undefined) {
    sendError(res, 400, 'BAD_REQUEST', `name must be a non-empty string of at most ${MAX_NAME_CHARS} characters`);
    return;
  }
  const result = await signDemoToken(secret, name, claims);
  const out = JSON.stringify(result);
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(out),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(out);
}
