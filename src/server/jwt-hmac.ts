import { hash as digestOnce, timingSafeEqual } from 'node:crypto';
import type { JWTPayload } from 'jose';

const HASHES: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
/** A compact JWT: three base64url parts (ASCII only, so its signing input is its bytes). */
const COMPACT_JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Block and digest sizes of each hash, in bytes. */
const SIZES: Record<string, { block: number; digest: number }> = { sha256: { block: 64, digest: 32 }, sha384: { block: 128, digest: 48 }, sha512: { block: 128, digest: 64 } };
/** Longest signing input (header.payload) the HMAC scratch space takes; longer tokens use the slow path. */
const MAX_SIGNING_INPUT = 8192;

/**
 * HMAC (RFC 2104) of a key for the three JWT hashes, from one-shot `crypto.hash` calls over the
 * key's inner and outer pads, prepared once: H((K ^ opad) || H((K ^ ipad) || message)). A
 * handshake then makes no `Hmac` object (a native object each, with its own set-up and
 * clean-up). Checked against `createHmac` in test/jwt-hmac.test.ts.
 */
export class HmacKey {
  private readonly pads = new Map<string, { inner: Buffer; outer: Buffer; block: number }>();

  constructor(private readonly key: Buffer) {}

  /** The MAC of an ASCII message (a JWT's signing input: the caller checks it is ASCII), or undefined when it is too long. */
  mac(hash: string, message: string): Buffer | undefined {
    const pad = this.pads.get(hash) ?? this.prepare(hash);
    if (message.length > MAX_SIGNING_INPUT) return undefined;
    const written = pad.inner.write(message, pad.block, 'latin1');
    const inner = digestOnce(hash, pad.inner.subarray(0, pad.block + written), 'buffer');
    inner.copy(pad.outer, pad.block);
    return digestOnce(hash, pad.outer, 'buffer');
  }

  private prepare(hash: string): { inner: Buffer; outer: Buffer; block: number } {
    const { block, digest } = SIZES[hash]!;
    // Keys longer than the block are hashed first; shorter ones are padded with zeros.
    const key = Buffer.alloc(block);
    (this.key.length > block ? digestOnce(hash, this.key, 'buffer') : this.key).copy(key);
    const inner = Buffer.alloc(block + MAX_SIGNING_INPUT);
    const outer = Buffer.alloc(block + digest);
    for (let i = 0; i < block; i++) {
      inner[i] = key[i]! ^ 0x36;
      outer[i] = key[i]! ^ 0x5c;
    }
    const pad = { inner, outer, block };
    this.pads.set(hash, pad);
    return pad;
  }
}
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
export function verifyHmacJwt(token: string, key: HmacKey, algorithms: string[], nowSec: number, toleranceSec: number): JWTPayload | undefined {
  if (!COMPACT_JWT.test(token)) return undefined;
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  const alg = plainHeaderAlg(token.slice(0, first));
  if (alg === undefined || !algorithms.includes(alg)) return undefined;
  const hash = HASHES[alg];
  if (!hash) return undefined;
  const expected = key.mac(hash, token.slice(0, second));
  if (!expected) return undefined;
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
