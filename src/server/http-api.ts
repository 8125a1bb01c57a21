import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ChorusError, ErrorCode, disconnectByServer, isValidChannelName } from '../protocol/index.js';
import { Unpackr } from 'msgpackr';
import type { Logger } from 'pino';
import type { PublishResult } from '../engines/types.js';
import type { ClusterView } from './cluster.js';
import { httpStatus, readBody } from './http-body.js';
import { safePath } from './logger.js';
import type { Metrics } from './metrics.js';
import { checkKey, type BroadcastResult, type ServerPublishOptions } from './publisher.js';
import type { ApiRoute } from './seams.js';

/** What the HTTP API needs from the server (ChorusServer implements it). */
export interface HttpApiHost {
  /** True once the server is shutting down (`/healthz` answers 503, POSTs are refused). */
  readonly closing: boolean;
  readonly connections: { readonly size: number };
  readonly metrics: Pick<Metrics, 'registry' | 'authFailures'>;
  readonly logger: Logger;
  readonly options: { readonly apiKey: string | undefined; readonly limits: { readonly maxMessageBytes: number } };
  start(): Promise<void>;
  publish(channel: string, data: unknown, options: ServerPublishOptions): Promise<PublishResult>;
  broadcast(channels: string[], data: unknown, options: ServerPublishOptions): Promise<BroadcastResult[]>;
  /** Cluster-wide channels, and user commands answered by every node (disconnect, subscribe, unsubscribe). */
  readonly cluster: Pick<ClusterView, 'channels' | 'request'>;
  presence(channel: string): Promise<unknown>;
  history(channel: string, options: { since?: { offset: number; epoch: string }; limit?: number; reverse?: boolean }): Promise<unknown>;
  /** Extra routes (documents' `/api/documents/`), tried after the built-in ones, before the 404. */
  readonly seams: { readonly api: readonly ApiRoute[] };
}

/** The built-in POST routes: their bodies are JSON, read here. */
const POST_ROUTES = new Set(['/api/publish', '/api/broadcast', '/api/disconnect', '/api/subscribe', '/api/unsubscribe']);

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function sendError(res: ServerResponse, error: ChorusError): void {
  send(res, httpStatus(error.code), { error: { code: error.code, message: error.message, ...(error.details ?? {}) } });
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time comparison of the bearer key (hashing first equalizes lengths). */
function apiKeyMatches(req: IncomingMessage, apiKey: string | undefined): boolean {
  if (!apiKey) return false;
  const header = req.headers.authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
  return timingSafeEqual(digest(header.slice(7).trim()), digest(apiKey));
}

const msgpack = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' });

/** Whether the request body is MessagePack (`Content-Type: application/msgpack`, parameters ignored). */
function isMsgpack(req: IncomingMessage): boolean {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/msgpack' || type === 'application/x-msgpack' || type === 'application/vnd.msgpack';
}

/** Decode a body as JSON, or as one MessagePack map when the content type says so. */
function parseBody(body: Buffer, binary: boolean): Record<string, unknown> {
  let value: unknown;
  if (binary) {
    try {
      const values = body.length === 0 ? [{}] : (msgpack.unpackMultiple(body) as unknown[]);
      if (values.length !== 1) throw new Error('not one value');
      value = values[0];
    } catch {
      throw new ChorusError(ErrorCode.BAD_REQUEST, 'body is not one valid MessagePack value');
    }
  } else {
    const text = body.toString('utf8');
    try {
      value = text.length === 0 ? {} : JSON.parse(text);
    } catch {
      throw new ChorusError(ErrorCode.BAD_REQUEST, 'body is not valid JSON');
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, binary ? 'body must be a MessagePack map' : 'body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

async function readObject(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  return parseBody(await readBody(req, maxBytes), isMsgpack(req));
}

function requireString(body: Record<string, unknown>, key: string): string {
  const value = body[key];
  if (typeof value !== 'string' || value.length === 0) throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be a non-empty string`);
  return value;
}

function optionalKey(body: Record<string, unknown>): string | undefined {
  const key = body.idempotencyKey;
  if (key === undefined || key === null) return undefined;
  if (typeof key !== 'string' || key.length === 0 || key.length > 128) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, 'idempotencyKey must be a string of 1 to 128 characters');
  }
  return key;
}

/** The optional `key` of a publication (latest-per-key queues). */
function publicationKey(body: Record<string, unknown>): { key?: string } {
  return body.key === undefined || body.key === null ? {} : { key: checkKey(body.key) };
}

function channelFromPath(path: string, prefix: string): string {
  let channel: string;
  try {
    channel = decodeURIComponent(path.slice(prefix.length));
  } catch {
    throw new ChorusError(ErrorCode.BAD_CHANNEL, 'channel in the path is not valid URL encoding');
  }
  if (!isValidChannelName(channel)) throw new ChorusError(ErrorCode.BAD_CHANNEL, 'invalid channel name');
  return channel;
}

/** Answer `/healthz`, `/metrics` and `/api/*`. Returns false for any other path. */
export function handleHttpRequest(server: HttpApiHost, req: IncomingMessage, res: ServerResponse): boolean {
  const path = safePath(req.url);
  if (path === '/healthz') {
    if (server.closing) send(res, 503, { status: 'shutting down' });
    else send(res, 200, { status: 'ok', connections: server.connections.size });
    return true;
  }
  if (path === '/metrics' && req.method === 'GET') {
    server.metrics.registry
      .metrics()
      .then((text) => {
        res.writeHead(200, { 'content-type': server.metrics.registry.contentType });
        res.end(text);
      })
      .catch((err) => {
        server.logger.error({ err }, 'metrics failed');
        send(res, 500, { error: { code: ErrorCode.INTERNAL, message: 'metrics failed' } });
      });
    return true;
  }
  if (!path.startsWith('/api/')) return false;
  void serveApi(server, req, res, path).catch((err) => {
    const error = err instanceof ChorusError ? err : undefined;
    if (!error) server.logger.error({ err, path }, 'API request failed');
    if (!res.headersSent) sendError(res, error ?? new ChorusError(ErrorCode.INTERNAL, 'internal error'));
  });
  return true;
}

async function serveApi(server: HttpApiHost, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  void server.start();
  if (!apiKeyMatches(req, server.options.apiKey)) {
    server.metrics.authFailures.inc({ reason: 'api_key' });
    server.logger.info({ path, ip: req.socket.remoteAddress }, 'API request rejected: bad or missing key');
    req.resume();
    throw new ChorusError(
      ErrorCode.UNAUTHORIZED,
      server.options.apiKey ? 'missing or wrong API key' : 'the HTTP API is disabled: configure an API key (CHORUS_API_KEY)',
    );
  }
  if (server.closing && req.method === 'POST') throw new ChorusError(ErrorCode.SHUTTING_DOWN, 'server is shutting down');
  const method = req.method ?? 'GET';
  const maxBytes = server.options.limits.maxMessageBytes;
  if (method === 'POST' && POST_ROUTES.has(path)) {
    const body = await readObject(req, maxBytes);
    switch (path) {
      case '/api/publish': {
        const channel = requireString(body, 'channel');
        if (!('data' in body)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'data is required');
        const key = optionalKey(body);
        const result = await server.publish(channel, body.data, {
          source: 'api',
          ...(key ? { idempotencyKey: `api\u0000${key}` } : {}),
          ...publicationKey(body),
        });
        return send(res, 200, result);
      }
      case '/api/broadcast': {
        const channels = body.channels;
        if (!Array.isArray(channels) || channels.length === 0 || channels.length > 1000 || channels.some((c) => typeof c !== 'string')) {
          throw new ChorusError(ErrorCode.BAD_REQUEST, 'channels must be an array of 1 to 1000 channel names');
        }
        if (!('data' in body)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'data is required');
        const key = optionalKey(body);
        const results = await server.broadcast(channels as string[], body.data, {
          source: 'api',
          ...publicationKey(body),
          ...(key ? { idempotencyKey: `api\u0000${key}` } : {}),
        });
        return send(res, 200, { results });
      }
      case '/api/disconnect': {
        const user = requireString(body, 'user');
        if (body.reconnect !== undefined && typeof body.reconnect !== 'boolean') {
          throw new ChorusError(ErrorCode.BAD_REQUEST, 'reconnect must be a boolean');
        }
        const { code, reason } = disconnectByServer(body.reconnect === true, 'disconnected by the API');
        const answer = await server.cluster.request({ type: 'disconnect', user, code, reason });
        server.logger.info({ user, reconnect: body.reconnect === true, disconnected: answer.count }, 'user disconnected through the API');
        return send(res, 200, { disconnected: answer.count, nodes: answer.nodes, missing: answer.missing });
      }
      case '/api/subscribe':
      case '/api/unsubscribe': {
        const user = requireString(body, 'user');
        const channel = requireString(body, 'channel');
        const type = path === '/api/subscribe' ? 'subscribe' : 'unsubscribe';
        const answer = await server.cluster.request({ type, user, channel });
        return send(res, 200, { [`${type}d`]: answer.count, nodes: answer.nodes, missing: answer.missing });
      }
    }
  } else if (method === 'GET') {
    req.resume();
    if (path === '/api/channels') return send(res, 200, await server.cluster.channels());
    if (path.startsWith('/api/presence/')) return send(res, 200, await server.presence(channelFromPath(path, '/api/presence/')));
    if (path.startsWith('/api/history/')) {
      const channel = channelFromPath(path, '/api/history/');
      const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
      const since = query.get('since');
      const epoch = query.get('epoch');
      const limit = query.get('limit');
      if ((since === null) !== (epoch === null)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'since and epoch go together');
      const sinceOffset = since === null ? undefined : Number(since);
      if (sinceOffset !== undefined && (!Number.isSafeInteger(sinceOffset) || sinceOffset < 0)) {
        throw new ChorusError(ErrorCode.BAD_REQUEST, 'since must be a non-negative integer');
      }
      const limitNumber = limit === null ? undefined : Number(limit);
      if (limitNumber !== undefined && (!Number.isSafeInteger(limitNumber) || limitNumber < 0)) {
        throw new ChorusError(ErrorCode.BAD_REQUEST, 'limit must be a non-negative integer');
      }
      const result = await server.history(channel, {
        ...(sinceOffset !== undefined ? { since: { offset: sinceOffset, epoch: epoch! } } : {}),
        ...(limitNumber !== undefined ? { limit: limitNumber } : {}),
        ...(query.get('reverse') === '1' || query.get('reverse') === 'true' ? { reverse: true } : {}),
      });
      return send(res, 200, result);
    }
  }
  // Other paths may be a seam route's (documents' `/api/documents/`); the body is its to read.
  try {
    for (const route of server.seams.api) if (await route(req, res, path, method)) return;
  } finally {
    req.resume();
  }
  throw new ChorusError(ErrorCode.NOT_FOUND, `no API route ${method} ${path}`);
}
