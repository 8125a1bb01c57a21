import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ChorusError, Disconnect, ErrorCode, ServerEvent, disconnectByServer, type StreamPosition, type SubscribeResult } from '../protocol/index.js';
import { MemoryEngine } from '../engines/memory/index.js';
import type { BrokerEvent, ControlCommand, Engine, PublishResult } from '../engines/types.js';
import { AdmissionPacer } from './admission.js';
import { Authenticator } from './auth.js';
import { ChannelRules, notDocument } from './channels.js';
import { affectedBy, clusterView, type ClusterView } from './cluster.js';
import { Connection, type ConnectionHost } from './connection.js';
import { ConnectionEvents, serverConnectionEvents, type ConnectionEventsHost } from './connection-events.js';
import { FlushLoop } from './flush.js';
import { FrameHandler, assertHandlerName, type EventHandlerOf, type HandlerContextOf, type HandlerEntry, type HandlerOptions } from './frame-handler.js';
import { rejectUpgrade } from './handshake.js';
import { Heartbeat } from './heartbeat.js';
import { Hooks, type Extension } from './hooks.js';
import { handleHttpRequest } from './http-api.js';
import { readHistory, type HistoryRequest } from './history-page.js';
import { Hub } from './hub.js';
import { LimitLog } from './limit-reporter.js';
import { createLogger, safePath } from './logger.js';
import { Metrics, closeCodeLabel } from './metrics.js';
import { resolveOptions, type ResolvedOptions, type ServerOptions } from './options.js';
import { Permissions } from './permissions.js';
import { Publisher, type BroadcastResult, type ServerPublishOptions } from './publisher.js';
import type { StandardSchemaV1 } from './schema.js';
import { ServerSeams } from './seams.js';
import type { Transport } from './transport.js';
import { applyControl } from './control.js';
import { Endpoints } from './endpoints.js';
import { Gate, type Admitted } from './upgrade.js';

export type { ServerPublishOptions } from './publisher.js';
export type { HandlerOptions } from './frame-handler.js';
/** Context given to application event handlers. */
export type HandlerContext = HandlerContextOf<ChorusServer>;
export type EventHandler<T = unknown> = EventHandlerOf<ChorusServer, T>;

/**
 * A Chorus server: embed it in an existing `http.Server` with `attach`, or drive it with
 * `handleUpgrade` / `handleRequest` (noServer style). The standalone CLI builds the same thing.
 *
 * It wires the parts together and owns their lifecycle; the work happens in them: `upgrade.ts`
 * (admission), `connection.ts` (send queue), `frame-handler.ts` (client frames), `publisher.ts`
 * (the publish pipeline), `hub.ts` (local channels, fan-out), `flush.ts` (writes),
 * `heartbeat.ts` (liveness, token expiry, refreshes), `http-api.ts`.
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
  readonly cluster: ClusterView;
  /** Application event handlers by event name. */
  readonly handlers = new Map<string, HandlerEntry<ChorusServer>>();
  /** True once `close()` was called. */
  closing = false;
  /** @internal Where parts beside the server plug in (documents: `/yjs/`, `/api/documents/`, `doc.*` frames). */
  readonly seams = new ServerSeams((req, check) => this.gate.admit(req, check));
  private readonly ownsEngine: boolean;
  private readonly reporter: LimitLog;
  private readonly flushes: FlushLoop;
  private readonly publisher: Publisher;
  private readonly frames: FrameHandler<ChorusServer>;
  private readonly gate: Gate;
  private readonly endpoints: Endpoints;
  private readonly heartbeat: Heartbeat;
  private readonly host: ConnectionHost;
  /** Where every connection's transport events go (shared: no closures per connection). */
  private readonly events: ConnectionEventsHost;
  private started: Promise<void> | undefined;
  private closingPromise: Promise<void> | undefined;

  constructor(options: ServerOptions = {}) {
    this.options = resolveOptions(options);
    const now = this.options.clock;
    this.logger = createLogger(options.logger).child({ node: this.options.nodeId });
    this.metrics = new Metrics(options.metricsRegistry, options.processMetrics ?? true);
    this.ownsEngine = !options.engine;
    this.engine = options.engine ?? new MemoryEngine();
    this.rules = new ChannelRules(this.options.namespaces);
    this.authenticator = new Authenticator(this.options.auth, this.options.authenticate, now);
    this.reporter = new LimitLog(this.metrics, this.logger, now);
    this.flushes = new FlushLoop(this.logger, (totals) => {
      this.metrics.bytesOut.inc(totals.bytes);
      this.metrics.messagesOut.inc(totals.frames);
    }, now);
    this.hub = new Hub(this.engine, this.metrics, this.logger, {
      presenceTtlMs: this.options.presenceTtlMs,
      maxRecoveryBytes: this.options.limits.maxQueuedBytes / 2,
      reporter: this.reporter,
      onLocalChannel: (channel, occupied) => this.hooks.notify('onLocalChannel', { channel, occupied }, (err) => this.logger.warn({ err, hook: 'onLocalChannel' }, 'extension hook failed')),
      onPresenceEvent: (event) => this.hooks.notify('onPresence', event, (err) => this.logger.warn({ err, hook: 'onPresence' }, 'extension hook failed')),
    });
    const permissions = new Permissions(this.rules, this.options.authorize);
    this.publisher = new Publisher({
      broker: this.engine.broker,
      rateLimiter: this.engine.rateLimiter,
      hooks: this.hooks,
      permissions,
      metrics: this.metrics,
      logger: this.logger,
      reporter: this.reporter,
      idempotencyWindowMs: this.options.idempotencyWindowMs,
    });
    this.host = { limits: this.options.limits, now, flushes: this.flushes, reporter: this.reporter };
    this.events = serverConnectionEvents({
      now, logger: this.logger, reporter: this.reporter, maxMessageBytes: this.options.limits.maxMessageBytes,
      onMessage: (connection, data, binary) => this.frames.onMessage(connection, data, binary),
      onClose: (connection, code, reason) => this.onClose(connection, code, reason),
    });
    this.frames = new FrameHandler<ChorusServer>({
      server: this,
      nodeId: this.options.nodeId,
      heartbeat: this.options.heartbeat,
      personalChannel: this.options.personalChannel,
      maxSubscriptionsPerConnection: this.options.limits.maxSubscriptionsPerConnection,
      clockToleranceMs: this.clockToleranceMs,
      now,
      logger: this.logger,
      metrics: this.metrics,
      reporter: this.reporter,
      permissions,
      hub: this.hub,
      hooks: this.hooks,
      publisher: this.publisher,
      authenticator: this.authenticator,
      handlers: this.handlers,
      protocolFrames: this.seams.frames,
      history: (channel, o) => this.history(channel, o),
      presence: (channel) => this.presence(channel),
    });
    const server = this;
    const gate = (this.gate = new Gate({
      get closing() {
        return server.closing;
      },
      start: () => this.start(),
      now,
      allowedOrigins: this.options.allowedOrigins,
      limits: this.options.limits,
      presenceTtlMs: this.options.presenceTtlMs,
      clockToleranceMs: this.clockToleranceMs,
      authenticator: this.authenticator,
      registry: this.engine.connections,
      hooks: this.hooks,
      metrics: this.metrics,
      logger: this.logger,
      pacer: new AdmissionPacer(this.options.admission, now),
    }));
    this.endpoints = new Endpoints(gate, {
      get closing() {
        return server.closing;
      },
      logger: this.logger,
      broker: this.engine.broker,
      options: this.options,
      accept: (transport, admitted) => void this.accept(transport, admitted),
      // An SSE stream: a connection, then its channels subscribed (resumed from Last-Event-ID).
      acceptStream: (transport, admitted, request) => {
        const connection = this.accept(transport, admitted);
        if (connection) this.frames.subscribeStream(connection, request);
      },
    });
    this.heartbeat = new Heartbeat({
      connections: this.connections,
      options: this.options,
      clockToleranceMs: this.clockToleranceMs,
      reporter: this.reporter,
      registry: this.engine.connections,
      hub: this.hub,
      logger: this.logger,
      now,
    });
    const { nodeId, cluster } = this.options;
    this.cluster = clusterView({ ...cluster, nodeId, engine: this.engine, logger: this.logger, now, checkChannel: (c) => notDocument(c, this.rules.resolve(c)) }, this);
    this.engine.broker.setHandler((event) => this.onBrokerEvent(event));
  }

  /** Clock skew tolerated on token expiry (`auth.clockToleranceSec`), in ms. */
  get clockToleranceMs(): number {
    return (this.options.auth.clockToleranceSec ?? 5) * 1000;
  }

  /** Start the engine and the heartbeat timer (done automatically on the first upgrade or request). */
  start(): Promise<void> {
    if (!this.started) {
      this.started = this.engine
        .start()
        .then(() => this.endpoints.start())
        .then(() => void (this.heartbeat.start(), this.closing || this.cluster.start()));
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
      const path = safePath(req.url);
      const route = this.seams.upgradeFor(path);
      if (route) return route.handle(req, socket, head);
      if (path !== this.options.path) {
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

  /** Answer `/healthz`, `/metrics`, `/api/*`, the SSE and the HTTP streaming endpoints; returns false for any other request. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.endpoints.handleRequest(req, res)) {
      void this.start();
      return true;
    }
    return handleHttpRequest(this, req, res);
  }

  /** Handle an upgrade request (noServer embedding). The path is not checked here. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.endpoints.handleUpgrade(req, socket, head);
  }

  /** A new transport whose request was admitted: it becomes a connection. */
  private accept(transport: Transport, admitted: Admitted): Connection | undefined {
    const connection = new Connection(transport, admitted.identity, this.host, admitted.clientId);
    if (this.closing) {
      admitted.release();
      connection.terminate(Disconnect.shutdown);
      return undefined;
    }
    this.connections.add(connection);
    this.hub.addConnection(connection);
    this.metrics.connections.inc();
    this.metrics.connectionsTotal.inc();
    transport.listen(new ConnectionEvents(this.events, connection));
    this.logger.info({ client: connection.id, user: connection.user, transport: transport.kind, codec: transport.codec.name }, 'connected');
    this.frames.start(connection, admitted.identity.channels);
    return connection;
  }

  private onClose(connection: Connection, peerCode: number, peerReason: string): void {
    connection.disposed();
    if (!this.connections.delete(connection)) return;
    this.gate.release(connection.user, connection.id);
    this.flushes.forget(connection);
    this.metrics.connections.dec();
    const code = connection.closeCode ?? peerCode;
    const reason = connection.closeReason || peerReason;
    this.metrics.disconnects.inc({ code: closeCodeLabel(code) });
    const durationMs = this.options.clock() - connection.connectedAt;
    this.logger.info({ client: connection.id, user: connection.user, code, reason, durationMs }, 'disconnected');
    void this.hub.removeConnection(connection).catch((err) => this.logger.warn({ err, client: connection.id }, 'cleanup after disconnect failed'));
    void this.hooks
      .run('onDisconnect', { connection, code, reason })
      .catch((err) => this.logger.warn({ err, client: connection.id }, 'onDisconnect hook failed'));
  }

  private onBrokerEvent(event: BrokerEvent): void {
    if (this.seams.tap(event)) return;
    if (event.type === 'publication' && this.endpoints.nodeMessage(event.publication)) return;
    if (event.type === 'control') this.onControl(event.command);
    else this.hub.deliver(event);
  }

  private onControl(command: ControlCommand): void {
    if (this.cluster.receive(command, affectedBy(command, this.hub.users))) return;
    applyControl(command, {
      users: this.hub.users,
      logger: this.logger,
      subscribe: (connection, channel) => this.subscribeConnection(connection, channel),
      unsubscribe: (connection, channel, reason) => this.unsubscribeConnection(connection, channel, reason),
    });
  }

  /** Heartbeats, dead-peer detection, token expiry and presence refresh, for all connections in one timer. */
  tick(now = this.options.clock()): void {
    this.heartbeat.tick(now);
  }

  /** Count a limit hit (`chorus_limit_hits_total{limit}`) and log it, at most every 10 s per connection and limit. */
  limitHit(limit: string, connection?: Connection, details: Record<string, unknown> = {}): void {
    this.reporter.limitHit(limit, connection, details);
  }

  /** Register an application event handler. Its return value is the ack; a coded throw is the error reply. */
  on<S extends StandardSchemaV1>(
    event: string,
    handler: EventHandler<S extends StandardSchemaV1<unknown, infer O> ? O : unknown>,
    options?: HandlerOptions<S>,
  ): this;
  on<T = unknown>(event: string, handler: EventHandler<T>): this;
  on(event: string, handler: EventHandler<never>, options: HandlerOptions = {}): this {
    assertHandlerName(event);
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
   * `beforePublish`/`afterPublish` hooks. Returns the publication's position. Rejects with
   * `UNAVAILABLE` (surely not applied) or `OUTCOME_UNKNOWN` (retry with the same `idempotencyKey`).
   */
  publish(channel: string, data: unknown, options: ServerPublishOptions = {}): Promise<PublishResult> {
    return this.publisher.publish(channel, data, options);
  }

  /** Publish the same data to many channels; one result per channel, failures included. */
  broadcast(channels: string[], data: unknown, options: ServerPublishOptions = {}): Promise<BroadcastResult[]> {
    return this.publisher.broadcast(channels, data, options);
  }

  /** Subscribe one local connection to a channel from the server side; the client gets a `subscribed` event. */
  async subscribeConnection(connection: Connection, channel: string, options: { since?: StreamPosition } = {}): Promise<SubscribeResult> {
    const namespace = this.rules.resolve(channel);
    notDocument(channel, namespace);
    await this.hooks.deny('onSubscribe', { connection, channel, serverSide: true });
    const max = this.options.limits.maxSubscriptionsPerConnection;
    return this.hub.subscribe(connection, channel, namespace, options.since ? { since: options.since } : {}, max, (result) =>
      connection.send({ event: ServerEvent.SUBSCRIBED, data: result }),
    );
  }

  /** Unsubscribe one local connection from the server side; the client gets an `unsubscribed` event. */
  async unsubscribeConnection(connection: Connection, channel: string, reason: string): Promise<boolean> {
    const removed = await this.hub.unsubscribe(connection, channel);
    if (removed) connection.send({ event: ServerEvent.UNSUBSCRIBED, data: { channel, reason } });
    return removed;
  }

  /** Subscribe every connection of a user (on every node) to a channel. Returns the cluster's connections affected. */
  async subscribeUser(user: string, channel: string): Promise<number> {
    return (await this.cluster.request({ type: 'subscribe', user, channel })).count;
  }

  /** Unsubscribe every connection of a user (on every node). Returns the cluster's connections that were subscribed. */
  async unsubscribeUser(user: string, channel: string): Promise<number> {
    return (await this.cluster.request({ type: 'unsubscribe', user, channel })).count;
  }

  /** Disconnect every connection of a user (on every node). Returns the cluster's connections closed. */
  async disconnectUser(user: string, options: { reconnect?: boolean; reason?: string } = {}): Promise<number> {
    return (await this.cluster.request({ type: 'disconnect', user, ...disconnectByServer(options.reconnect === true, options.reason) })).count;
  }

  /** Presence of a channel: one member per user. */
  async presence(channel: string) {
    const namespace = this.rules.resolve(channel);
    if (!namespace.presence) throw new ChorusError(ErrorCode.NOT_AVAILABLE, `presence is not enabled for "${channel}"`);
    return { channel, members: await this.engine.presence.list(channel) };
  }

  /** History of a channel (see the `history` protocol request). */
  history(channel: string, options: HistoryRequest = {}) {
    return readHistory(this.engine.history, this.rules, this.options.limits, channel, options);
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
    this.heartbeat.stop();
    await this.cluster.stop();
    const { drainTimeoutMs, reconnectSpreadMs } = this.options.shutdown;
    this.logger.info({ connections: this.connections.size }, 'shutting down');
    const closed = [...this.connections].map((connection) => {
      const done = connection.whenClosed();
      connection.close(Disconnect.shutdown, { retryAfterMs: Math.floor(Math.random() * reconnectSpreadMs), graceMs: drainTimeoutMs });
      return done;
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(closed),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.connections.size > 0) {
      for (const connection of this.connections) connection.terminate(Disconnect.shutdown);
      // Terminated sockets emit 'close' on a later tick; wait (briefly) so cleanup has run on return.
      await Promise.race([Promise.all(closed), new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]);
    }
    await this.endpoints.close();
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
