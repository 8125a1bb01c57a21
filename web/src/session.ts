/**
 * Who the page's user is: a token from the demo sign-in (`POST /demo/token`, only when the
 * server runs without a JWT key) or a JWT pasted by the user. Kept in sessionStorage under
 * `chorus-demo-session`, so the chat, dashboard and editor pages of one tab share it and a
 * reload keeps it; never in a URL. `getToken` is what the Chorus client calls on every
 * (re)connect: a demo token close to expiry is replaced by a fresh one.
 */

export const STORAGE_KEY = 'chorus-demo-session';
/** A demo token with less than this left is renewed before use, in ms. */
const RENEW_BEFORE_MS = 60_000;

export interface Session {
  token: string;
  /** The user id (the token's `sub`). */
  user: string;
  /** Display name. */
  name: string;
  /** Token expiry, seconds since the Unix epoch (the JWT `exp`), if any. */
  exp?: number;
  /** Set for demo sign-ins: the name to sign in with again when the token expires. */
  demoName?: string;
}

/** A failed sign-in, with a message fit for the page. */
export class SignInError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'SignInError';
    this.code = code;
  }
}

/** Decodes a JWT's payload (no verification: the server does that). */
export function decodeToken(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  if (!part) throw new SignInError('BAD_TOKEN', 'That does not look like a JWT.');
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const payload: unknown = JSON.parse(new TextDecoder().decode(bytes));
  if (payload === null || typeof payload !== 'object') throw new SignInError('BAD_TOKEN', 'That does not look like a JWT.');
  return payload as Record<string, unknown>;
}

/** A display name from a user id and the `info` the server attaches to publications and presence. */
export function displayName(user: string | undefined, info: Record<string, unknown> | undefined): string {
  const name = info?.name;
  if (typeof name === 'string' && name.trim() !== '') return name;
  return user ?? 'server';
}

/** Signs in through the demo endpoint (demo mode only). */
export async function demoSignIn(name: string): Promise<Session> {
  const res = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (res.status === 404) {
    throw new SignInError('DEMO_OFF', 'Demo sign-in is off on this server (a JWT key is configured). Sign in with a token instead.');
  }
  const body = (await res.json().catch(() => ({}))) as {
    token?: string;
    user?: string;
    info?: { name?: string };
    error?: { message?: string };
  };
  if (!res.ok || typeof body.token !== 'string' || typeof body.user !== 'string') {
    throw new SignInError('SIGN_IN_FAILED', body.error?.message ?? `sign-in failed (HTTP ${res.status})`);
  }
  const exp = decodeToken(body.token).exp;
  return {
    token: body.token,
    user: body.user,
    name: body.info?.name ?? name,
    ...(typeof exp === 'number' ? { exp } : {}),
    demoName: name,
  };
}

/** A session from a pasted JWT (checked for shape and expiry here, for real by the server). */
export function tokenSession(token: string, now = Date.now()): Session {
  const payload = decodeToken(token);
  if (typeof payload.sub !== 'string' || payload.sub === '') throw new SignInError('BAD_TOKEN', 'The token has no "sub" claim.');
  const exp = typeof payload.exp === 'number' ? payload.exp : undefined;
  if (exp !== undefined && exp * 1000 < now) throw new SignInError('BAD_TOKEN', 'The token has expired.');
  const info =
    payload.info !== null && typeof payload.info === 'object'
      ? (payload.info as Record<string, unknown>)
      : typeof payload.name === 'string'
        ? { name: payload.name }
        : undefined;
  return { token, user: payload.sub, name: displayName(payload.sub, info), ...(exp !== undefined ? { exp } : {}) };
}

export function saveSession(session: Session | undefined): void {
  try {
    if (session) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage may be unavailable (private mode): the session just does not survive a reload.
  }
}

/** The stored session, unless it is missing, malformed, or an expired pasted token. */
export function loadSession(now = Date.now()): Session | undefined {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return undefined;
    const s = JSON.parse(raw) as Partial<Session> | null;
    if (!s || typeof s.token !== 'string' || typeof s.user !== 'string' || typeof s.name !== 'string') return undefined;
    if (s.exp !== undefined && s.exp * 1000 < now && s.demoName === undefined) return undefined;
    return s as Session;
  } catch {
    return undefined;
  }
}

/**
 * The Chorus client's `getToken` for a session holder: renews a demo token that is about to
 * expire (and stores it), returns a pasted token as it is.
 */
export function tokenSource(holder: { session: Session | undefined }, onRenewed?: (s: Session) => void): () => Promise<string> {
  return async () => {
    const session = holder.session;
    if (!session) throw new SignInError('SIGNED_OUT', 'signed out');
    if (session.demoName !== undefined && session.exp !== undefined && session.exp * 1000 - Date.now() < RENEW_BEFORE_MS) {
      const renewed = await demoSignIn(session.demoName);
      holder.session = renewed;
      saveSession(renewed);
      onRenewed?.(renewed);
      return renewed.token;
    }
    return session.token;
  };
}

/** `ws(s)://<this host><path>`. */
export function socketUrl(path: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}
