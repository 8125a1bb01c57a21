import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { JWTPayload } from 'jose';

const HASHES: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
const PLAIN_HEADER_KEYS = new Set(['alg', 'typ', 'kid']);

function json(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The last header part seen that is a plain header (only `alg`, `typ`, `kid`) with a string
 * `alg`, and that `alg`. A deployment's tokens nearly all share one header, so it is parsed once.
 */
let lastHeaderPart = '';
let lastHeaderAlg = '';

/** The `alg` of a plain header part, or undefined. */
function plainHeaderAlg(part: string): string | undefined {
  if (part === lastHeaderPart) return lastHeaderAlg;
  const header = json(part);
  if (!header) return undefined;
  for (const k of Object.keys(header)) if (!PLAIN_HEADER_KEYS.has(k)) return undefined;
  const alg = header.alg;
  if (typeof alg !== 'string') return undefined;
  lastHeaderPart = part;
  lastHeaderAlg = alg;
  return alg;
}

/**
 * The handshake's fast path for HMAC-signed JWTs (HS256/384/512 with a shared secret):
 * synchronous `createHmac` + `timingSafeEqual` instead of WebCrypto through `jose`, about a
 * tenth of the CPU (docs/PERFORMANCE.md). It only ever ACCEPTS: a plain token (header of `alg`,
 * `typ`, `kid`; an allowed HMAC `alg`; a valid signature; `exp`, `nbf`, `iat` numbers within the
 * tolerance, as jose checks them) gives its claims; anything else returns undefined and the
 * caller verifies with `jose`, which names the reason. Never used with `issuer`/`audience`.
 *
 * @param nowSec the current time in whole seconds since the Unix epoch
 * @param toleranceSec clock skew tolerated on `exp` and `nbf`, in seconds
 */
export function verifyHmacJwt(token: string, key: Buffer | KeyObject, algorithms: string[], nowSec: number, toleranceSec: number): JWTPayload | undefined {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first <= 0 || second <= first + 1 || token.indexOf('.', second + 1) !== -1) return undefined;
  const alg = plainHeaderAlg(token.slice(0, first));
  if (alg === undefined || !algorithms.includes(alg)) return undefined;
  const hash = HASHES[alg];
  if (!hash) return undefined;
  const expected = createHmac(hash, key).update(token.slice(0, second)).digest();
  const given = Buffer.from(token.slice(second + 1), 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  const payload = json(token.slice(first + 1, second));
  if (!payload) return undefined;
  const { exp, nbf, iat } = payload;
  if (exp !== undefined && (typeof exp !== 'number' || exp <= nowSec - toleranceSec)) return undefined;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > nowSec + toleranceSec)) return undefined;
  if (iat !== undefined && typeof iat !== 'number') return undefined;
  return payload as JWTPayload;
}
