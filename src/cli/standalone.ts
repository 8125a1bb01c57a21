/**
 * The standalone server: a node:http server that serves the pages and the browser client, the
 * demo sign-in in demo mode, the admin console's API (/admin/api/*, admin.ts), and Chorus itself
 * (WebSocket, /healthz, /metrics, /api/*).
 */
import { redisEngineOptions } from './redis-engine-options.js';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { ChorusServer } from '../server/index.js';
import { RedisEngine } from '../engines/redis/index.js';
import { ChorusDocuments, RedisDocumentStore, SqliteDocumentStore, type DocumentStore } from '../documents/index.js';
import { REDACT_PATHS } from '../server/logger.js';
import { AdminConsole } from './admin.js';
import { createBackendHooks } from './backend-hooks.js';
import type { RedisConfig, StandaloneConfig } from './config.js';
import { DashboardFeed } from './dashboard-feed.js';
import { handleDemoToken } from './demo.js';
import { STANDALONE_NAMESPACES } from './namespaces.js';
import { sendError, serveStatic } from './static.js';


export interface StandaloneHandle {
  /** `http://host:port` as reachable locally (the wildcard address is shown as 127.0.0.1). */
  url: string;
  /** The port actually bound (useful with port 0). */
  port: number;
  httpServer: Server;
  chorus: ChorusServer;
  /** Shared Yjs documents (`/yjs/<name>`, `doc.*` frames, `/api/documents/`); absent without a document namespace. */
  documents: ChorusDocuments | undefined;
  /** Publishes this node's figures for `/dashboard`. */
  dashboard: DashboardFeed;
  logger: Logger;
  /** Graceful shutdown: Chorus first (1001 + reconnect hint, drain), then the HTTP server. Idempotent. */
  close(): Promise<void>;
}

export interface StandaloneOptions {
  /** Logger to use. Default: pino at `config.logLevel` to stdout (sync), with secrets redacted. */
  logger?: Logger;
  /** Interval of the `/dashboard` figures published to `dash:nodes`, in ms. Default 1000. */
  dashboardIntervalMs?: number;
}

/** pino to stdout, synchronous so lines are out before `process.exit`. */
export function createLogger(level: string): Logger {
  return pino(
    { level, base: { service: 'chorus', pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    pino.destination({ dest: 1, sync: true }),
  );
}

function logStartupMode(config: StandaloneConfig, logger: Logger): void {
  if (config.demo) {
    logger.warn(
      { demo: true },
      'DEMO MODE: no JWT key configured (CHORUS_JWT_SECRET or auth in the config file), so a random secret was ' +
        'generated and POST /demo/token signs a token for ANY name: anyone who can reach this server can sign in. ' +
        'Set CHORUS_JWT_SECRET for real use.',
    );
  }
  if (config.server.apiKey === undefined) {
    logger.info('HTTP API disabled: CHORUS_API_KEY is not set, /api/* answers 401');
  }
  if (config.server.allowedOrigins === undefined) {
    logger.info("browser origins: only the server's own origin (set CHORUS_ALLOWED_ORIGINS to allow others)");
  }
}

export async function startStandalone(config: StandaloneConfig, options: StandaloneOptions = {}): Promise<StandaloneHandle> {
  const logger = options.logger ?? createLogger(config.logLevel);
  logStartupMode(config, logger);

  const nodeId = config.server.nodeId ?? `n_${randomBytes(4).toString('hex')}`;
  const engine = config.redis ? createRedisEngine(config.redis, logger, nodeId) : undefined;
  const registry = new Registry();
  const backend = createBackendHooks(config, logger, registry, nodeId);
  const authenticate = backend.proxy?.authenticate;
  const namespaces = config.server.namespaces ?? STANDALONE_NAMESPACES;
  const chorus = new ChorusServer({
    ...config.server,
    namespaces,
    nodeId,
    logger,
    metricsRegistry: registry,
    ...(engine ? { engine } : {}),
    ...(authenticate ? { authenticate } : {}),
  });
  if (backend.proxy) chorus.use(backend.proxy);
  if (backend.webhooks) chorus.use(backend.webhooks);
  const dashboard = new DashboardFeed(chorus, { intervalMs: options.dashboardIntervalMs ?? 1000 });
  const admin = new AdminConsole(chorus);
  logger.info({ engine: chorus.engine.name }, engine ? 'engine: redis (cluster mode)' : 'engine: memory (one process)');
  if (config.proxy) logger.info({ kinds: Object.keys(config.proxy).filter((k) => k !== 'maxInFlight' && k !== 'maxQueued') }, 'proxy hooks to the application backend');
  if (config.webhooks.length > 0) logger.info({ webhooks: config.webhooks.length }, 'webhooks on');
  // Documents run when a namespace is a document namespace (the default `doc:*` is).
  const documentStore = namespaces.some((ns) => ns.document) ? createDocumentStore(config, logger) : undefined;
  const documents = documentStore && new ChorusDocuments(chorus, { store: documentStore.store });
  if (documentStore && documents) {
    const { name } = documentStore.store;
    logger.info({ store: name, ...(name === 'sqlite' ? { dataDir: config.dataDir } : {}), path: documents.options.path }, 'documents: y-websocket endpoint on /yjs/<name>');
  } else {
    logger.info('documents: off (no namespace has document: true)');
  }
  const demoSecret = config.demo ? config.server.auth?.secret : undefined;
  const claims = { issuer: config.server.auth?.issuer, audience: config.server.auth?.audience };

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // /healthz, /metrics and /api/* never get here: `chorus.attach` answers them first.
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      sendError(res, 400, 'BAD_REQUEST', 'bad request target');
      return;
    }
    if (pathname === '/demo/token') {
      if (demoSecret === undefined) sendError(res, 404, 'NOT_FOUND', 'demo sign-in is off (a JWT key is configured)');
      else await handleDemoToken(req, res, demoSecret, claims);
      return;
    }
    if (pathname.startsWith('/admin/api/')) {
      await admin.handle(req, res, pathname);
      return;
    }
    if (await serveStatic(req, res, pathname)) return;
    sendError(res, 404, 'NOT_FOUND', 'not found');
  }

  const httpServer = createServer((req, res) => {
    onRequest(req, res).catch((err: unknown) => {
      logger.error({ err, url: req.url?.split('?')[0] }, 'request handler failed');
      if (!res.headersSent) sendError(res, 500, 'INTERNAL', 'internal error');
      else res.destroy();
    });
  });
  // Bound slow or idle HTTP clients (WebSocket upgrades are not affected once upgraded).
  httpServer.headersTimeout = 15_000;
  httpServer.requestTimeout = 30_000;
  httpServer.keepAliveTimeout = 5_000;
  httpServer.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code !== 'ECONNRESET') logger.debug({ code: err.code }, 'http client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  chorus.attach(httpServer);

  await new Promise<void>((resolveListen, reject) => {
    const onError = (err: Error): void => reject(err);
    httpServer.once('error', onError);
    httpServer.listen({ port: config.port, host: config.host, backlog: config.listenBacklog }, () => {
      httpServer.off('error', onError);
      resolveListen();
    });
  }).catch(async (err: unknown) => {
    await chorus.close().catch(() => undefined);
    await engine?.close().catch(() => undefined);
    documentStore?.redis?.disconnect();
    backend.close();
    throw err;
  });

  const address = httpServer.address() as AddressInfo;
  const shownHost =
    address.address === '0.0.0.0' || address.address === '::'
      ? '127.0.0.1'
      : address.family === 'IPv6'
        ? `[${address.address}]`
        : address.address;
  const url = `http://${shownHost}:${address.port}`;
  logger.info({ port: address.port, host: config.host, url, demo: config.demo }, 'listening');
  dashboard.start();

  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= (async () => {
      logger.info('shutting down');
      dashboard.stop();
      try {
        await chorus.close();
      } catch (err) {
        logger.error({ err }, 'chorus shutdown failed');
      }
      await engine?.close().catch((err: unknown) => logger.error({ err }, 'engine shutdown failed'));
      await documentStore?.redis?.quit().catch(() => documentStore.redis?.disconnect());
      backend.close();
      await new Promise<void>((resolveClose) => {
        httpServer.close(() => resolveClose());
        httpServer.closeIdleConnections();
        // Keep-alive requests still in flight get a moment, then are cut.
        setTimeout(() => httpServer.closeAllConnections(), 2_000).unref();
      });
      logger.info('stopped');
    })();
    return closing;
  }

  return { url, port: address.port, httpServer, chorus, documents, dashboard, logger, close };
}

/**
 * Where documents persist: in Redis with a `redis.url` (its own client, with the engine's TLS
 * settings; closed after Chorus), else in `<dataDir>/documents.sqlite`.
 */
function createDocumentStore(config: StandaloneConfig, logger: Logger): { store: DocumentStore; redis?: Redis } {
  const redisConfig = config.redis;
  if (redisConfig?.url) {
    const redis = new Redis(redisConfig.url, { ...(redisConfig.tls ? { tls: { ...redisConfig.tls } } : {}), maxRetriesPerRequest: 2 });
    redis.on('error', (err: Error) => logger.warn({ err: { message: err.message } }, 'document store: redis connection error'));
    return { store: new RedisDocumentStore({ redis, ...(redisConfig.prefix ? { prefix: redisConfig.prefix } : {}) }), redis };
  }
  if (redisConfig) {
    logger.warn('documents are stored in SQLite on this node: the Redis document store needs a redis.url (Sentinel and Cluster are not supported for documents)');
  }
  return { store: new SqliteDocumentStore(join(config.dataDir, 'documents.sqlite')) };
}

/** The Redis engine from serializable settings (the URL, which may hold a password, is never logged). */
export function createRedisEngine(config: RedisConfig, logger: Logger, name?: string): RedisEngine {
  return new RedisEngine({ ...redisEngineOptions(config, name), logger: logger.child({ component: 'redis' }) });
}
