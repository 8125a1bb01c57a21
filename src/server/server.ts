import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ChorusError, CloseCode, ErrorCode, ServerEvent, type StreamPosition, type SubscribeResult } from '../protocol/index.js';
import { MemoryEngine } from '../engines/memory/index.js';
import type { BrokerEvent, ControlCommand, Engine, PublishResult } from '../engines/types.js';
import { Authenticator } from './auth.js';
import { ChannelRules } from './channels.js';
import { Connection, newClientId, type ConnectionHost } from './connection.js';
import { invalidUpgrade, rejectUpgrade, originAllowed } from './handshake.js';
import { Hooks, type Extension, type PublishSource } from './hooks.js';
import { handleHttpRequest } from './http-api.js';
import { Hub, messageData } from './hub.js';
import { createLogger, safePath } from './logger.js';
import { Metrics } from './metrics.js';
import { resolveOptions, type Identity, type ResolvedNamespace, type ResolvedOptions, type ServerOptions } from './options.js';
import { Session, type EventHandler, type HandlerOptions } from './session.js';
import type { StandardSchemaV1 } from './schema.js';

/** Options of a server-side publish. */
export interface ServerPublishOptions {
  /** Do not deliver to this connection (exclude the sender). */
  exceptClient?: string;
  /** Idempotency key: a repeat within the window returns the first result. */
  idempotencyKey?: string;
  /** Not stored, no offset. */
  ephemeral?: boolean;
  /** Recorded as the source in metrics. Default `'server'`. */
  source?: PublishSource;
}

/**
 * A Chorus server: embed it in an existing `http.Server` with `attach`, or drive it with
 * `handleUpgrade` / `handleRequest` (noServer style). The standalone CLI builds the same thing.
 */
export class ChorusServer {
  readonly options: ResolvedOptions;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly engine: Engine;
  readonly hooks = new Hooks();
  readonly rules: ChannelRules;
  readonly authenticator: Authenticator;
  /** Connections on this node. */
  readonly connections = new Set<Connection>();
  readonly hub: Hub;
  /** Application event handlers by event name. */
  readonly handlers = new Map<string, { handler: EventHandler; options: HandlerOptions }>();
  private readonly ownsEngine: boolean;
  private readonly wss: WebSocketServer;
  private readonly session: Session;
  private readonly host: ConnectionHost;
  private started: Promise<void> | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private lastPresenceRefresh = Date.now();
  private lastRegistryRefresh = Date.now();
  private closingPromise: Promise<void> | undefined;
  /** True once `close()` was called. */
  closing = false;

  constructor(options: ServerOptions = {}) {
    this.options = resolveOptions(options);
    this.logger = createLogger(options.logger).child({ node: this.options.nodeId });
    this.metrics = new Metrics(options.metricsRegistry, options.processMetrics ?? true);
    this.ownsEngine = !options.engine;
    this.engine = options.engine ?? new MemoryEngine();
    this.rules = new ChannelRules(this.options.namespaces);
    this.authenticator = new Authenticator(this.options.auth, this.options.authenticate);
    this.hub = new Hub(this.engine, this.metrics, this.logger, {
      presenceTtlMs: this.options.presenceTtlMs,
      maxRecoveryBytes: this.options.limits.maxQueuedBytes / 2,
      onLimitHit: (limit, connection, details) => this.limitHit(limit, connection, details),
      onFlushed: (totals) => {
        this.metrics.bytesOut.inc(totals.bytes);
        this.metrics.messagesOut.inc(totals.frames);
      },
      onLocalChannel: (channel, occupied) => this.notify('onLocalChannel', { channel, occupied }),
      onPresenceEvent: (event) => this.notify('onPresence', event),
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.options.limits.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.engine.broker.setHandler((event) => this.onBrokerEvent(event));
    const limits = this.options.limits;
    this.host = {
      limits,
      now: () => Date.now(),
      scheduleFlush: (c) => this.hub.scheduleFlush(c),
      onSlowConsumer: (c) => this.onSlowConsumer(c),
      onEphemeralDropped: (c) => {
        this.metrics.ephemeralDropped.inc();
        this.limitHit('ephemeral_dropped', c);
      },
    };
    this.session = new Session(this);
  }

  /** Clock skew tolerated on token expiry (`auth.clockToleranceSec`), in ms. */
  get clockToleranceMs(): number {
    return (this.options.auth.clockToleranceSec ?? 5) * 1000;
  }

  /** Start the engine and the heartbeat timer (done automatically on the first upgrade or request). */
  start(): Promise<void> {
    if (!this.started) {
      this.started = this.engine.start().then(() => {
        // Often enough for heartbeats AND for the presence/connection refresh at a third of the
        // TTL: a tick much longer than that would let live entries expire between refreshes.
        const tickMs = Math.max(
          5,
          Math.min(1000, Math.floor(this.options.heartbeat.intervalMs / 2), Math.floor(this.options.presenceTtlMs / 6)),
        );
        this.ticker = setInterval(() => this.tick(), tickMs);
        this.ticker.unref();
      });
      this.started.catch((err) => this.logger.error({ err }, 'engine failed to start'));
    }
    return this.started;
  }

  /**
   * Attach to an existing HTTP server: upgrades on `options.path` become Chorus connections and
   * (unless `http: false`) `/healthz`, `/metrics` and `/api/*` are answered before the server's
   * other request listeners.
   */
  attach(server: HttpServer): this {
    void this.start();
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (safePath(req.url) !== this.options.path) {
        // Leave other paths to other upgrade listeners; answer 404 if there are none.
        if (server.listenerCount('upgrade') === 1) rejectUpgrade(socket, 404, ErrorCode.NOT_FOUND, 'no WebSocket endpoint at this path');
        return;
      }
      this.handleUpgrade(req, socket, head);
    });
    if (this.options.http) {
      const others = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
      server.removeAllListeners('request');
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        if (this.handleRequest(req, res)) return;
        if (others.length === 0) {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: ErrorCode.NOT_FOUND, message: 'not found' } }));
          return;
        }
        for (const listener of others) listener.call(server, req, res);
      });
    }
    return this;
  }

  /** Answer `/healthz`, `/metrics` and `/api/*`; returns false for any other request. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    return handleHttpRequest(this, req, res);
  }

  /** Handle an upgrade request (noServer embedding). The path is not checked here. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => this.logger.debug({ err }, 'socket error during handshake'));
    this.upgrade(req, socket, head).catch((err) => {
      this.logger.error({ err }, 'upgrade failed');
      rejectUpgrade(socket, 500, ErrorCode.INTERNAL, 'internal error');
    });
  }

  private authFailure(socket: Duplex, status: number, code: string, message: string, reason: string, req: IncomingMessage): void {
    this.metrics.authFailures.inc({ reason });
    this.logger.info({ status, code, reason, path: safePath(req.url), ip: req.socket.remoteAddress, message }, 'handshake rejected');
    rejectUpgrade(socket, status, code, message);
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    await this.start();
    if (this.closing) {
      rejectUpgrade(socket, 503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
      return;
    }
    const invalid = invalidUpgrade(req);
    if (invalid) {
      rejectUpgrade(socket, 400, ErrorCode.BAD_REQUEST, invalid);
      return;
    }
    if (!originAllowed(req, this.options.allowedOrigins)) {
      this.authFailure(socket, 403, ErrorCode.ORIGIN_NOT_ALLOWED, 'origin not allowed', 'origin', req);
      return;
    }
    let identity: Identity;
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new ChorusError(ErrorCode.TIMEOUT, 'authentication timed out')),
          this.options.limits.handshakeTimeoutMs,
        );
      });
      identity = await Promise.race([this.authenticator.authenticateRequest(req), timeout]);
    } catch (err) {
      const e = err instanceof ChorusError ? err : new ChorusError(ErrorCode.UNAUTHORIZED, 'authentication failed');
      if (e.code === ErrorCode.TIMEOUT) this.authFailure(socket, 503, e.code, e.message, 'timeout', req);
      else if (e.code === ErrorCode.UNAVAILABLE) this.authFailure(socket, 503, e.code, e.message, 'unavailable', req);
      else if (e.code === ErrorCode.PERMISSION_DENIED) this.authFailure(socket, 403, e.code, e.message, 'denied', req);
      else this.authFailure(socket, 401, ErrorCode.UNAUTHORIZED, e.message, 'token', req);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (identity.expiresAt !== undefined && identity.expiresAt + this.clockToleranceMs <= Date.now()) {
      this.authFailure(socket, 401, ErrorCode.UNAUTHORIZED, 'invalid token: expired', 'token', req);
      return;
    }
    const clientId = newClientId();
    const user = identity.user;
    let reserved: boolean;
    try {
      reserved = await this.engine.connections.reserve(user, clientId, this.options.limits.maxConnectionsPerUser, this.options.presenceTtlMs);
    } catch (err) {
      this.logger.error({ err: { message: (err as Error).message } }, 'connection registry unavailable');
      this.authFailure(socket, 503, ErrorCode.UNAVAILABLE, 'the engine is unavailable; try again later', 'unavailable', req);
      return;
    }
    if (!reserved) {
      this.metrics.limitHits.inc({ limit: 'connections_per_user' });
      this.authFailure(
        socket,
        429,
        ErrorCode.TOO_MANY_CONNECTIONS,
        `at most ${this.options.limits.maxConnectionsPerUser} connections per user`,
        'connection_limit',
        req,
      );
      return;
    }
    let handedOver = false;
    try {
      try {
        await this.hooks.run('onUpgrade', { req, identity });
      } catch (err) {
        const e = err instanceof ChorusError ? err : new ChorusError(ErrorCode.PERMISSION_DENIED, 'connection denied');
        this.authFailure(socket, 403, e.code, e.message, 'hook', req);
        return;
      }
      if (this.closing || socket.destroyed || !socket.writable) {
        if (!socket.destroyed) rejectUpgrade(socket, 503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
        return;
      }
      handedOver = true;
      let upgraded = false;
      // ws may still refuse the socket without calling back: then the slot is released here.
      socket.once('close', () => {
        if (!upgraded) this.releaseUser(user, clientId);
      });
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        upgraded = true;
        try {
          this.onSocket(ws, identity, clientId);
        } catch (err) {
          this.logger.error({ err }, 'connection setup failed');
          ws.terminate();
        }
      });
    } finally {
      if (!handedOver) this.releaseUser(user, clientId);
    }
  }

  /** Run a notification hook (no denial), logging failures. */
  private notify<H extends 'onLocalChannel' | 'onPresence'>(hook: H, ctx: Parameters<NonNullable<Extension[H]>>[0]): void {
    if (!this.hooks.has(hook)) return;
    void this.hooks.run(hook, ctx).catch((err) => this.logger.warn({ err, hook }, 'extension hook failed'));
  }

  private releaseUser(user: string, clientId: string): void {
    this.engine.connections
      .release(user, clientId)
      .catch((err) => this.logger.warn({ err: { message: (err as Error).message }, user }, 'connection registry release failed; the entry expires by TTL'));
  }

  private onSocket(ws: WebSocket, identity: Identity, clientId: string): void {
    const connection = new Connection(ws, identity, this.host, clientId);
    if (this.closing) {
      this.releaseUser(identity.user, clientId);
      connection.terminate(CloseCode.GOING_AWAY, 'server is shutting down');
      return;
    }
    this.connections.add(connection);
    this.hub.addConnection(connection);
    this.metrics.connections.inc();
    this.metrics.connectionsTotal.inc();
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the socket itself after protocol errors (1007 invalid UTF-8, 1009 too big, ...).
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.limitHit('message_size', connection, { maxMessageBytes: this.options.limits.maxMessageBytes });
        connection.closeCode ??= CloseCode.MESSAGE_TOO_BIG;
        connection.closeReason ||= 'message too big';
      } else if (err.code === 'WS_ERR_INVALID_UTF8') {
        connection.closeCode ??= CloseCode.INVALID_PAYLOAD;
        connection.closeReason ||= 'invalid UTF-8';
      }
      this.logger.debug({ client: connection.id, err: { message: err.message, code: err.code } }, 'socket error');
    });
    ws.on('pong', () => {
      connection.lastSeen = Date.now();
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => this.session.onMessage(connection, data, isBinary));
    ws.once('close', (code: number, reason: Buffer) => this.onClose(connection, code, reason.toString()));
    this.logger.info({ client: connection.id, user: connection.user }, 'connected');
    this.session.start(connection, identity.channels);
  }

  private onClose(connection: Connection, peerCode: number, peerReason: string): void {
    connection.disposed();
    if (!this.connections.delete(connection)) return;
    this.releaseUser(connection.user, connection.id);
    this.metrics.connections.dec();
    const code = connection.closeCode ?? peerCode;
    const reason = connection.closeReason || peerReason;
    this.metrics.disconnects.inc({ code: closeCodeLabel(code) });
    this.logger.info(
      { client: connection.id, user: connection.user, code, reason, durationMs: Date.now() - connection.connectedAt },
      'disconnected',
    );
    void this.hub
      .removeConnection(connection)
      .catch((err) => this.logger.warn({ err, client: connection.id }, 'cleanup after disconnect failed'));
    void this.hooks
      .run('onDisconnect', { connection, code, reason })
      .catch((err) => this.logger.warn({ err, client: connection.id }, 'onDisconnect hook failed'));
  }

  private onSlowConsumer(connection: Connection): void {
    if (connection.closing) return;
    this.metrics.slowConsumerDisconnects.inc();
    this.metrics.limitHits.inc({ limit: 'send_queue' });
    this.logger.warn(
      { client: connection.id, user: connection.user, pendingBytes: connection.pendingBytes },
      'slow consumer disconnected',
    );
    connection.close(CloseCode.SLOW_CONSUMER, 'slow consumer', { notice: false, reconnect: true, graceMs: 1000 });
  }

  private onBrokerEvent(event: BrokerEvent): void {
    if (event.type === 'control') this.onControl(event.command);
    else this.hub.deliver(event);
  }

  private onControl(command: ControlCommand): void {
    const connections = this.hub.users.get(command.user);
    if (!connections) return;
    for (const connection of [...connections]) {
      if (command.type === 'disconnect') {
        connection.close(command.code, command.reason, { reconnect: command.code !== CloseCode.DISCONNECT });
      } else if (command.type === 'subscribe') {
        void this.subscribeConnection(connection, command.channel).catch((err) =>
          this.logger.warn({ err: { message: (err as Error).message }, client: connection.id, channel: command.channel }, 'server-side subscribe failed'),
        );
      } else {
        void this.unsubscribeConnection(connection, command.channel, 'unsubscribed by the server').catch((err) =>
          this.logger.warn({ err: { message: (err as Error).message }, client: connection.id, channel: command.channel }, 'server-side unsubscribe failed'),
        );
      }
    }
  }

  /** Heartbeats, dead-peer detection, token expiry and presence refresh, for all connections in one timer. */
  tick(now = Date.now()): void {
    const { intervalMs, timeoutMs } = this.options.heartbeat;
    const tolerance = this.clockToleranceMs;
    let ping: Buffer | undefined;
    for (const connection of this.connections) {
      if (connection.closing) continue;
      if (now - connection.lastSeen > timeoutMs) {
        this.limitHit('heartbeat', connection);
        // A close frame in case the peer is only slow; terminated soon after either way.
        connection.close(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout', { notice: false, graceMs: 1000 });
        continue;
      }
      if (connection.expiresAt !== undefined && now >= connection.expiresAt + tolerance) {
        connection.close(CloseCode.TOKEN_EXPIRED, 'token expired', { reconnect: true });
        continue;
      }
      if (now - connection.lastPing >= intervalMs) {
        connection.lastPing = now;
        ping ??= Buffer.from(JSON.stringify({ event: ServerEvent.PING }));
        connection.sendEncoded(ping);
        try {
          connection.ws.ping();
        } catch {
          // The socket is already closing; the close event cleans up.
        }
      }
    }
    if (now - this.lastRegistryRefresh >= this.options.presenceTtlMs / 3) {
      this.lastRegistryRefresh = now;
      const entries = [...this.connections].map((c) => ({ user: c.user, clientId: c.id }));
      void this.engine.connections
        .refresh(entries, this.options.presenceTtlMs)
        .catch((err) => this.logger.warn({ err: { message: (err as Error).message } }, 'connection registry refresh failed'));
    }
    if (now - this.lastPresenceRefresh >= this.options.presenceTtlMs / 3) {
      this.lastPresenceRefresh = now;
      void this.hub.refreshPresence().catch((err) => this.logger.warn({ err }, 'presence refresh failed'));
    }
  }

  /**
   * Count a limit hit (`chorus_limit_hits_total{limit}`) and log it (`limit hit`), at most once
   * every 10 s per connection and limit so that a misbehaving client cannot flood the logs.
   */
  limitHit(limit: string, connection?: Connection, details: Record<string, unknown> = {}): void {
    this.metrics.limitHits.inc({ limit });
    if (connection) {
      const now = Date.now();
      const logged = (connection.limitLoggedAt ??= new Map());
      const last = logged.get(limit);
      if (last !== undefined && now - last < 10000) return;
      logged.set(limit, now);
    }
    this.logger.info({ limit, ...(connection ? { client: connection.id, user: connection.user } : {}), ...details }, 'limit hit');
  }

  /** Register an application event handler. Its return value is the ack; a coded throw is the error reply. */
  on<S extends StandardSchemaV1>(
    event: string,
    handler: EventHandler<S extends StandardSchemaV1<unknown, infer O> ? O : unknown>,
    options?: HandlerOptions<S>,
  ): this;
  on<T = unknown>(event: string, handler: EventHandler<T>): this;
  on(event: string, handler: EventHandler<never>, options: HandlerOptions = {}): this {
    this.session.assertHandlerName(event);
    this.handlers.set(event, { handler: handler as EventHandler, options });
    return this;
  }

  /** Add an extension (hooks run in priority order). */
  use(extension: Extension): this {
    this.hooks.add(extension);
    return this;
  }

  /**
   * Publish from the server side (no permission checks beyond the namespace existing). Runs
   * `beforePublish`/`afterPublish` hooks. Returns the position the publication got.
   */
  async publish(channel: string, data: unknown, options: ServerPublishOptions = {}): Promise<PublishResult> {
    const namespace = this.rules.resolve(channel);
    return this.publishChecked(channel, namespace, data, { ...options, source: options.source ?? 'server' });
  }

  /** @internal Publish after permission checks were done by the caller. */
  async publishChecked(
    channel: string,
    namespace: ResolvedNamespace,
    data: unknown,
    options: ServerPublishOptions & { source: PublishSource; connection?: Connection },
  ): Promise<PublishResult> {
    const started = process.hrtime.bigint();
    const ephemeral = options.ephemeral === true;
    const ctx = {
      channel,
      data,
      source: options.source,
      ephemeral,
      ...(options.connection ? { connection: options.connection } : {}),
    };
    const finalData = await this.hooks.beforePublish(ctx);
    const connection = options.connection;
    let result: PublishResult;
    try {
      result = await this.engine.broker.publish(channel, finalData, {
        ...(namespace.historySize > 0 ? { history: { size: namespace.historySize, ttlMs: namespace.historyTtlMs } } : {}),
        ...(options.idempotencyKey !== undefined
          ? { idempotencyKey: options.idempotencyKey, idempotencyWindowMs: this.options.idempotencyWindowMs }
          : {}),
        ...(connection
          ? {
              publisher: connection.info
                ? { user: connection.user, client: connection.id, info: connection.info }
                : { user: connection.user, client: connection.id },
            }
          : {}),
        ...(ephemeral ? { ephemeral: true } : {}),
        ...(options.exceptClient !== undefined ? { exceptClient: options.exceptClient } : {}),
      });
    } catch (err) {
      if (err instanceof ChorusError) throw err;
      this.logger.error({ err, channel }, 'engine publish failed');
      throw new ChorusError(ErrorCode.UNAVAILABLE, 'the engine is unavailable; the publication was not applied');
    }
    this.metrics.publishDuration.observe({ source: options.source }, Number(process.hrtime.bigint() - started) / 1e9);
    if (!result.duplicate) {
      this.metrics.publications.inc({ source: options.source });
      if (this.hooks.has('afterPublish')) void this.hooks
        .run('afterPublish', { ...ctx, data: finalData, ...result })
        .catch((err) => this.logger.warn({ err, channel }, 'afterPublish hook failed'));
    }
    const { duplicate: _duplicate, ...position } = result;
    return position;
  }

  /** Publish the same data to many channels; one result per channel, failures included. */
  async broadcast(
    channels: string[],
    data: unknown,
    options: ServerPublishOptions = {},
  ): Promise<Array<{ channel: string } & (PublishResult | { error: { code: string; message: string } })>> {
    return Promise.all(
      channels.map(async (channel) => {
        try {
          // Idempotency keys are scoped per channel by the engine, so one key serves them all.
          return { channel, ...(await this.publish(channel, data, options)) };
        } catch (err) {
          const e = err instanceof ChorusError ? err : new ChorusError(ErrorCode.INTERNAL, 'internal error');
          return { channel, error: { code: e.code, message: e.message } };
        }
      }),
    );
  }

  /** Subscribe one local connection to a channel from the server side; the client gets a `subscribed` event. */
  async subscribeConnection(connection: Connection, channel: string, options: { since?: StreamPosition } = {}): Promise<SubscribeResult> {
    const namespace = this.rules.resolve(channel);
    await this.hooks.deny('onSubscribe', { connection, channel, serverSide: true });
    const { result, goLive } = await this.hub.subscribe(
      connection,
      channel,
      namespace,
      options.since ? { since: options.since } : {},
      this.options.limits.maxSubscriptionsPerConnection,
    );
    connection.send({ event: ServerEvent.SUBSCRIBED, data: result });
    goLive();
    return result;
  }

  /** Unsubscribe one local connection from the server side; the client gets an `unsubscribed` event. */
  async unsubscribeConnection(connection: Connection, channel: string, reason: string): Promise<boolean> {
    const removed = await this.hub.unsubscribe(connection, channel);
    if (removed) connection.send({ event: ServerEvent.UNSUBSCRIBED, data: { channel, reason } });
    return removed;
  }

  /** Subscribe every connection of a user (on every node) to a channel. Returns local connections affected. */
  async subscribeUser(user: string, channel: string): Promise<number> {
    this.rules.resolve(channel);
    const local = this.hub.users.get(user)?.size ?? 0;
    await this.engine.broker.publishControl({ type: 'subscribe', user, channel });
    return local;
  }

  async unsubscribeUser(user: string, channel: string): Promise<number> {
    this.rules.resolve(channel);
    const local = [...(this.hub.users.get(user) ?? [])].filter((c) => c.subscriptions.has(channel)).length;
    await this.engine.broker.publishControl({ type: 'unsubscribe', user, channel });
    return local;
  }

  /** Disconnect every connection of a user (on every node). Returns local connections closed. */
  async disconnectUser(user: string, options: { reconnect?: boolean; reason?: string } = {}): Promise<number> {
    const local = this.hub.users.get(user)?.size ?? 0;
    const code = options.reconnect ? CloseCode.DISCONNECT_RECONNECT : CloseCode.DISCONNECT;
    await this.engine.broker.publishControl({ type: 'disconnect', user, code, reason: options.reason ?? 'disconnected by the server' });
    return local;
  }

  /** Presence of a channel: one member per user. */
  async presence(channel: string) {
    const namespace = this.rules.resolve(channel);
    if (!namespace.presence) throw new ChorusError(ErrorCode.NOT_AVAILABLE, `presence is not enabled for "${channel}"`);
    return { channel, members: await this.engine.presence.list(channel) };
  }

  /** History of a channel (see the `history` protocol request). */
  async history(channel: string, options: { since?: StreamPosition; limit?: number; reverse?: boolean } = {}) {
    const namespace = this.rules.resolve(channel);
    if (namespace.historySize === 0) throw new ChorusError(ErrorCode.NOT_AVAILABLE, `history is not enabled for "${channel}"`);
    const max = this.options.limits.maxHistoryLimit;
    const limit = Math.min(max, Math.max(0, options.limit ?? max));
    const read = await this.engine.history.read(channel, {
      limit,
      ...(options.since ? { since: options.since } : {}),
      ...(options.reverse ? { reverse: true } : {}),
    });
    // One page is one frame: keep it within half the send queue (and well under the 1 MiB that
    // common WebSocket clients accept by default); the client pages on from the last offset.
    const maxBytes = this.options.limits.maxQueuedBytes / 2;
    const publications = [];
    let bytes = 0;
    for (const publication of read.publications) {
      const data = messageData(publication);
      bytes += Buffer.byteLength(JSON.stringify(data));
      if (publications.length > 0 && bytes > maxBytes) break;
      publications.push(data);
    }
    return { channel, publications, offset: read.position.offset, epoch: read.position.epoch };
  }

  /** Channels with subscribers on this node, with their local subscriber counts. */
  channels(): Array<{ channel: string; subscribers: number }> {
    return [...this.hub.channels].map(([channel, set]) => ({ channel, subscribers: set.size }));
  }

  /**
   * Graceful shutdown: refuse new connections (and report unhealthy), tell every client to
   * reconnect after a random delay (`disconnect` frame, close 1001), wait for them to close for
   * up to `shutdown.drainTimeoutMs`, terminate the rest, release the engine if this server made it.
   */
  close(): Promise<void> {
    this.closingPromise ??= this.shutdown();
    return this.closingPromise;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    if (this.ticker) clearInterval(this.ticker);
    const { drainTimeoutMs, reconnectSpreadMs } = this.options.shutdown;
    this.logger.info({ connections: this.connections.size }, 'shutting down');
    const closed = [...this.connections].map(
      (connection) =>
        new Promise<void>((resolve) => {
          if (connection.ws.readyState === connection.ws.CLOSED) return resolve();
          connection.ws.once('close', () => resolve());
          connection.close(CloseCode.GOING_AWAY, 'server shutting down', {
            reconnect: true,
            retryAfterMs: Math.floor(Math.random() * reconnectSpreadMs),
            graceMs: drainTimeoutMs,
          });
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(closed),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.connections.size > 0) {
      for (const connection of this.connections) connection.terminate(CloseCode.GOING_AWAY, 'server shutting down');
      // Terminated sockets emit 'close' on a later tick; wait (briefly) so cleanup has run on return.
      await Promise.race([Promise.all(closed), new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]);
    }
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    for (const extension of this.hooks.all()) {
      try {
        await extension.onDestroy?.();
      } catch (err) {
        this.logger.warn({ err, extension: extension.name }, 'onDestroy failed');
      }
    }
    if (this.ownsEngine) await this.engine.close();
    this.logger.info('shut down');
  }
}

const KNOWN_CLOSE_CODES = new Set<number>([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015]);

/** Metric label for a close code: peers choose codes freely, so unknown ones are bucketed. */
function closeCodeLabel(code: number): string {
  if (KNOWN_CLOSE_CODES.has(code) || (Object.values(CloseCode) as number[]).includes(code)) return String(code);
  return code >= 4000 && code <= 4999 ? '4xxx' : code >= 3000 && code <= 3999 ? '3xxx' : 'other';
}
