import { createPublicKey } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRemoteJWKSet, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ChorusError, ErrorCode } from '../protocol/index.js';
import { HmacKey, verifyHmacJwt } from './jwt-hmac.js';
import type { AuthOptions, Identity, ServerOptions } from './options.js';

/** Largest `info` claim accepted, in bytes of JSON. */
export const MAX_INFO_BYTES = 1024;

/** Take the token from `Authorization: Bearer` (preferred) or the `token` query parameter. */
export function tokenFromRequest(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string' && header.startsWith('Bearer ')) {
    const token = header.slice(7).trim();
    if (token) return token;
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q === -1) return undefined;
  // A JWT needs no decoding (base64url and dots): take the first `token=` value as it is, and
  // let URLSearchParams decode only a value that has escapes in it.
  let at = url.startsWith('token=', q + 1) ? q + 7 : url.indexOf('&token=', q);
  if (at === -1) return undefined;
  if (url.charCodeAt(at) === 38 /* & */) at += 7;
  const end = url.indexOf('&', at);
  const raw = end === -1 ? url.slice(at) : url.slice(at, end);
  const token = raw.includes('%') || raw.includes('+') ? new URLSearchParams(url.slice(q + 1)).get('token') : raw;
  return token || undefined;
}

/** Verifies tokens and turns them into identities. Messages never include the token. */
export class Authenticator {
  private readonly options: AuthOptions;
  private readonly custom: ServerOptions['authenticate'];
  private keyPromise: Promise<CryptoKey | JWTVerifyGetKey> | undefined;
  /** The shared secret when plain HMAC tokens can take the synchronous fast path (its HMAC pads prepared once). */
  private readonly hmacKey: HmacKey | undefined;
  /** `algorithms()`, computed once for the fast path. */
  private readonly hmacAlgorithms: string[];

  /** @param now the clock (ms since the Unix epoch) for the fast path's `exp`/`nbf` checks */
  constructor(
    options: AuthOptions,
    custom?: ServerOptions['authenticate'],
    private readonly now?: () => number,
  ) {
    this.options = options;
    this.custom = custom;
    const { secret, publicKey, jwksUrl, issuer, audience } = options;
    this.hmacKey = secret && !publicKey && !jwksUrl && !issuer && !audience && now ? new HmacKey(Buffer.from(secret, 'utf8')) : undefined;
    this.hmacAlgorithms = this.algorithms();
  }

  private key(): Promise<CryptoKey | JWTVerifyGetKey> {
    if (!this.keyPromise) {
      const { secret, publicKey, jwksUrl } = this.options;
      if (jwksUrl) this.keyPromise = Promise.resolve(createRemoteJWKSet(new URL(jwksUrl)));
      else if (publicKey) {
        const alg = this.algorithms()[0] ?? 'RS256';
        this.keyPromise = importSPKI(publicKey, alg, { extractable: false });
      } else if (secret) {
        // Imported once as an HS256 CryptoKey: given raw bytes or a KeyObject, jose imports the
        // key again on every verification (measured: ~40% of a handshake's CPU).
        this.keyPromise = crypto.subtle.importKey('raw', Buffer.from(secret, 'utf8'), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
      }
      else this.keyPromise = Promise.reject(new Error('no JWT key configured'));
      this.keyPromise.catch(() => {
        this.keyPromise = undefined;
      });
    }
    return this.keyPromise;
  }

  private algorithms(): string[] {
    if (this.options.algorithms?.length) return this.options.algorithms;
    if (this.options.jwksUrl) return ['RS256', 'ES256', 'PS256', 'EdDSA'];
    if (this.options.publicKey) return [algorithmOfKey(this.options.publicKey)];
    return ['HS256'];
  }

  /** Authenticate an upgrade request. Throws ChorusError(UNAUTHORIZED) with a token-free message. */
  async authenticateRequest(req: IncomingMessage): Promise<Identity> {
    const token = tokenFromRequest(req);
    if (this.custom) {
      try {
        return checkIdentity(await this.custom(token, req));
      } catch (err) {
        if (err instanceof ChorusError) throw err;
        throw new ChorusError(ErrorCode.UNAUTHORIZED, 'authentication failed');
      }
    }
    if (!token) throw new ChorusError(ErrorCode.UNAUTHORIZED, 'token missing');
    return this.verify(token);
  }

  /**
   * The synchronous fast path of `authenticateRequest`: the identity of a request carrying a
   * plain, valid HMAC token (see jwt-hmac.ts), or undefined for anything else (no token, a custom
   * `authenticate`, another key type, a token the fast path does not accept): then call
   * `authenticateRequest`, which verifies it fully and names the reason. Throws like
   * `authenticateRequest` when the claims are not a valid identity.
   */
  authenticateRequestSync(req: IncomingMessage): Identity | undefined {
    if (this.custom || !this.hmacKey) return undefined;
    const token = tokenFromRequest(req);
    return token ? this.verifyFast(token) : undefined;
  }

  private verifyFast(token: string): Identity | undefined {
    if (!this.hmacKey || !this.now) return undefined;
    const tolerance = this.options.clockToleranceSec ?? 5;
    const claims = verifyHmacJwt(token, this.hmacKey, this.hmacAlgorithms, Math.floor(this.now() / 1000), tolerance);
    return claims ? identityFromClaims(claims) : undefined;
  }

  /** Authenticate a token sent with `refresh` (custom `authenticate` gets no request). */
  async authenticateToken(token: string): Promise<Identity> {
    if (this.custom) {
      try {
        return checkIdentity(await this.custom(token));
      } catch (err) {
        if (err instanceof ChorusError) throw err;
        throw new ChorusError(ErrorCode.UNAUTHORIZED, 'authentication failed');
      }
    }
    return this.verify(token);
  }

  /** Verify a JWT. Throws ChorusError(UNAUTHORIZED) naming the reason, never the token. */
  async verify(token: string): Promise<Identity> {
    const fast = this.verifyFast(token);
    if (fast) return fast;
    // Not a plain valid token (or no fast path): jose verifies it and names the reason.
    let payload: JWTPayload;
    try {
      const key = await this.key();
      const options = {
        algorithms: this.algorithms(),
        clockTolerance: this.options.clockToleranceSec ?? 5,
        ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience ? { audience: this.options.audience } : {}),
      };
      const result =
        typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
      payload = result.payload;
    } catch (err) {
      throw new ChorusError(ErrorCode.UNAUTHORIZED, `invalid token: ${describeJoseError(err)}`);
    }
    return identityFromClaims(payload);
  }
}

/** The JWS algorithm a PEM public key is for, when none is configured: RSA RS256, EC by curve, Ed25519 EdDSA. */
export function algorithmOfKey(pem: string): string {
  try {
    const key = createPublicKey(pem);
    switch (key.asymmetricKeyType) {
      case 'ec': {
        const curve = key.asymmetricKeyDetails?.namedCurve;
        return curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : 'ES256';
      }
      case 'ed25519':
        return 'EdDSA';
      case 'rsa-pss':
        return 'PS256';
      default:
        return 'RS256';
    }
  } catch {
    return 'RS256'; // importSPKI reports the bad key when it is first used
  }
}

function describeJoseError(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'bad signature';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return `claim check failed (${String((err as { claim?: unknown }).claim ?? 'unknown')})`;
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'malformed';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'algorithm not allowed';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'no matching key';
    case 'ERR_JWKS_TIMEOUT':
      return 'key set fetch timed out';
    default:
      return 'verification failed';
  }
}

export function identityFromClaims(payload: JWTPayload): Identity {
  const sub = payload.sub;
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 255) {
    throw new ChorusError(ErrorCode.UNAUTHORIZED, 'invalid token: sub must be a string of 1 to 255 characters');
  }
  const identity: Identity = { user: sub };
  const rawInfo = payload.info;
  if (rawInfo !== undefined && typeof rawInfo === 'object' && rawInfo !== null && !Array.isArray(rawInfo)) {
    if (JSON.stringify(rawInfo).length <= MAX_INFO_BYTES) identity.info = rawInfo as Record<string, unknown>;
  } else if (typeof payload.name === 'string' && payload.name.length <= 200) {
    identity.info = { name: payload.name };
  }
  if (typeof payload.exp === 'number') identity.expiresAt = payload.exp * 1000;
  return identity;
}

function checkIdentity(identity: Identity): Identity {
  if (!identity || typeof identity.user !== 'string' || identity.user.length === 0 || identity.user.length > 255) {
    throw new ChorusError(ErrorCode.UNAUTHORIZED, 'authenticate() returned no valid user');
  }
  return identity;
}
