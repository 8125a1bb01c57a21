/**
 * The admin console's server side (`/admin/api/*`, page at `/admin`): sign in with the API key
 * (`POST /admin/api/session`), which sets an HttpOnly, SameSite=Strict session cookie scoped to
 * `/admin` and returns a CSRF token; every later POST must carry that token in `x-chorus-csrf`
 * and, when the browser sends one, a same-origin `Origin`. The key is never stored in the page,
 * a cookie or a URL. Reads and actions answer for the whole cluster through the server
 * (node reports and cluster-wide commands, src/server/cluster.ts). docs/PROTOCOL.md, "Admin console".
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ChorusError, ErrorCode, disconnectByServer } from '../protocol/index.js';
import type { ClusterAnswer, NodeStats, UserCommand } from '../server/cluster.js';
import { httpStatus, readBody } from '../server/http-body.js';

/** What the console needs from the Chorus server (ChorusServer implements it). */
export interface AdminHost {
  readonly options: { readonly apiKey: string | undefined; readonly nodeId: string };
  readonly logger: Logger;
  readonly cluster: {
    nodes(): Promise<NodeStats[]>;
    channels(): Promise<{ channels: Array<{ channel: string; subscribers: number; nodes: number }>; nodes: string[] }>;
    request(command: UserCommand): Promise<ClusterAnswer>;
  };
  presence(channel: string): Promise<unknown>;
  history(channel: string, options: { limit?: number; reverse?: boolean }): Promise<unknown>;
  publish(channel: string, data: unknown, options: { source: 'api' }): Promise<unknown>;
}

export interface AdminOptions {
  /** A session ends after this long without a request, in ms. Default 1800000 (30 min). */
  idleTimeoutMs?: number;
  /** Sessions kept at once; signing in past it ends the oldest. Default 100. */
  maxSessions?: number;
  /** Wrong keys accepted per minute (all clients together) before sign-in answers 429. Default 10. */
  maxFailedSignInsPerMinute?: number;
  /** Clock, ms since the Unix epoch. Default `Date.now`. */
  now?: () => number;
}

export const ADMIN_COOKIE = 'chorus_admin';
const MAX_BODY_BYTES = 65536;

interface Session {
  csrf: string;
  lastSeen: number;
}

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();
const sameSecret = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b));

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const raw = await readBody(req, MAX_BODY_BYTES);
  let value: unknown;
  try {
    const text = raw.toString('utf8');
    value = text === '' ? {} : JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'body must be a JSON object');
  return value as Record<string, unknown>;
}

function text(body: Record<string, unknown>, key: string): string {
  const value = body[key];
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be a string of 1 to 255 characters`);
  return value;
}

/** The browser's `Origin`, if any, must be this server's own (the `Host` it was asked on). */
function checkOrigin(req: IncomingMessage): void {
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') {
    throw new ChorusError(ErrorCode.PERMISSION_DENIED, 'cross-site request refused');
  }
  if (origin === undefined) return;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    throw new ChorusError(ErrorCode.PERMISSION_DENIED, 'bad Origin');
  }
  if (host !== req.headers.host) throw new ChorusError(ErrorCode.PERMISSION_DENIED, 'cross-origin request refused');
}

/** Sessions and routes of the admin console. */
export class AdminConsole {
  private readonly sessions = new Map<string, Session>();
  private readonly idleTimeoutMs: number;
  private readonly maxSessions: number;
  private readonly maxFailures: number;
  private readonly now: () => number;
  private failures: number[] = [];

  constructor(
    private readonly host: AdminHost,
    options: AdminOptions = {},
  ) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 1_800_000;
    this.maxSessions = options.maxSessions ?? 100;
    this.maxFailures = options.maxFailedSignInsPerMinute ?? 10;
    this.now = options.now ?? Date.now;
  }

  /** Answer a request under `/admin/api/`. */
  async handle(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    try {
      await this.route(req, res, pathname);
    } catch (err) {
      const error = err instanceof ChorusError ? err : undefined;
      if (!error) this.host.logger.error({ err, path: pathname }, 'admin request failed');
      const e = error ?? new ChorusError(ErrorCode.INTERNAL, 'internal error');
      if (!res.headersSent) send(res, httpStatus(e.code), { error: { code: e.code, message: e.message, ...(e.details ?? {}) } });
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    const method = req.method ?? 'GET';
    const route = `${method} ${pathname.slice('/admin/api'.length)}`;
    if (route === 'POST /session') return this.signIn(req, res);
    const { id, session } = this.session(req);
    if (method === 'POST') {
      checkOrigin(req);
      const token = req.headers['x-chorus-csrf'];
      if (typeof token !== 'string' || !sameSecret(token, session.csrf)) {
        req.resume();
        throw new ChorusError(ErrorCode.PERMISSION_DENIED, 'missing or wrong CSRF token (x-chorus-csrf)');
      }
    } else {
      req.resume();
    }
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    switch (route) {
      case 'GET /session':
        return send(res, 200, { csrf: session.csrf, node: this.host.options.nodeId });
      case 'POST /signout':
        req.resume();
        this.sessions.delete(id);
        return send(res, 200, { signedOut: true }, { 'set-cookie': this.cookie(req, '', 0) });
      case 'GET /overview': {
        const [nodes, channels] = await Promise.all([this.host.cluster.nodes(), this.host.cluster.channels()]);
        return send(res, 200, { node: this.host.options.nodeId, time: this.now(), nodes, channels: channels.channels });
      }
      case 'GET /presence':
        return send(res, 200, await this.host.presence(query.get('channel') ?? ''));
      case 'GET /history': {
        const limit = Math.min(100, Math.max(1, Number(query.get('limit') ?? 20) || 20));
        return send(res, 200, await this.host.history(query.get('channel') ?? '', { limit, reverse: true }));
      }
      case 'POST /disconnect': {
        const body = await readJson(req);
        const user = text(body, 'user');
        const { code, reason } = disconnectByServer(body.reconnect === true, 'disconnected by an administrator');
        const answer = await this.host.cluster.request({ type: 'disconnect', user, code, reason });
        this.host.logger.info({ user, disconnected: answer.count }, 'admin console: user disconnected');
        return send(res, 200, { disconnected: answer.count, nodes: answer.nodes, missing: answer.missing });
      }
      case 'POST /unsubscribe': {
        const body = await readJson(req);
        const answer = await this.host.cluster.request({ type: 'unsubscribe', user: text(body, 'user'), channel: text(body, 'channel') });
        return send(res, 200, { unsubscribed: answer.count, nodes: answer.nodes, missing: answer.missing });
      }
      case 'POST /publish': {
        const body = await readJson(req);
        if (!('data' in body)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'data is required');
        return send(res, 200, await this.host.publish(text(body, 'channel'), body.data, { source: 'api' }));
      }
    }
    throw new ChorusError(ErrorCode.NOT_FOUND, `no admin route ${route}`);
  }

  private async signIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkOrigin(req);
    const apiKey = this.host.options.apiKey;
    const body = await readJson(req);
    if (!apiKey) throw new ChorusError(ErrorCode.NOT_AVAILABLE, 'the admin console is disabled: configure an API key (CHORUS_API_KEY)');
    const now = this.now();
    this.failures = this.failures.filter((t) => now - t < 60_000);
    if (this.failures.length >= this.maxFailures) {
      throw new ChorusError(ErrorCode.RATE_LIMITED, 'too many failed sign-ins; try again later', { retryAfterMs: 60_000 - (now - this.failures[0]!) });
    }
    if (typeof body.key !== 'string' || !sameSecret(body.key, apiKey)) {
      this.failures.push(now);
      this.host.logger.warn({ ip: req.socket.remoteAddress }, 'admin console: sign-in with a wrong key');
      throw new ChorusError(ErrorCode.UNAUTHORIZED, 'wrong API key');
    }
    this.sweep(now);
    if (this.sessions.size >= this.maxSessions) this.sessions.delete(this.sessions.keys().next().value as string);
    const id = randomBytes(32).toString('base64url');
    const session: Session = { csrf: randomBytes(32).toString('base64url'), lastSeen: now };
    this.sessions.set(digest(id).toString('base64url'), session);
    this.host.logger.info({ ip: req.socket.remoteAddress }, 'admin console: signed in');
    send(res, 200, { csrf: session.csrf, node: this.host.options.nodeId }, { 'set-cookie': this.cookie(req, id, this.idleTimeoutMs) });
  }

  /** The request's live session (its idle timer restarted), or UNAUTHORIZED. */
  private session(req: IncomingMessage): { id: string; session: Session } {
    const cookie = cookieOf(req, ADMIN_COOKIE);
    const id = cookie ? digest(cookie).toString('base64url') : undefined;
    const session = id === undefined ? undefined : this.sessions.get(id);
    const now = this.now();
    if (!session || now - session.lastSeen > this.idleTimeoutMs) {
      if (id !== undefined) this.sessions.delete(id);
      req.resume();
      throw new ChorusError(ErrorCode.UNAUTHORIZED, 'not signed in');
    }
    session.lastSeen = now;
    return { id: id!, session };
  }

  private sweep(now: number): void {
    for (const [id, session] of this.sessions) if (now - session.lastSeen > this.idleTimeoutMs) this.sessions.delete(id);
  }

  private cookie(req: IncomingMessage, value: string, maxAgeMs: number): string {
    const secure = (req.socket as { encrypted?: boolean }).encrypted === true || req.headers['x-forwarded-proto'] === 'https';
    return `${ADMIN_COOKIE}=${value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeMs / 1000)}${secure ? '; Secure' : ''}`;
  }
}
