import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Gauge } from 'prom-client';
import { WebSocketServer } from 'ws';
import { ErrorCode } from '../protocol/index.js';
import { rejectUpgrade } from '../server/handshake.js';
import type { Identity } from '../server/options.js';
import { DocumentCloseCode } from './codes.js';
import type { DocumentsHost } from './host.js';
import type { LiveDocument } from './live-document.js';
import type { DocumentAccess, ResolvedDocumentsOptions } from './options.js';
import { YjsConnection, type YjsConnectionHost } from './yjs-connection.js';

/** What the endpoint needs from the documents manager. */
export interface YjsEndpointHost {
  readonly host: DocumentsHost;
  readonly options: ResolvedDocumentsOptions;
  readonly connectionsGauge: Gauge;
  isDocument(name: string): boolean;
  access(name: string, identity: Identity, client: string): Promise<DocumentAccess>;
  acquire(name: string): Promise<LiveDocument>;
  release(document: LiveDocument): void;
  isClosed(): boolean;
}

/** The y-websocket endpoint: `<path>/<document name>` upgrades, and the connections they become. */
export class YjsEndpoint {
  /** `/yjs/` connections on this node. */
  readonly connections = new Set<YjsConnection>();
  private readonly wss: WebSocketServer;
  private readonly connectionHost: YjsConnectionHost;
  /** Each connection's admission: its per-user slot is released when the connection closes. */
  private readonly admissions = new Map<YjsConnection, { release(): void }>();
  private lastRegistryRefresh = 0;

  constructor(private readonly manager: YjsEndpointHost) {
    const { host, options } = manager;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: options.limits.maxUpdateBytes, perMessageDeflate: false, clientTracking: false });
    this.connectionHost = {
      limits: options.limits,
      logger: host.logger,
      now: () => host.now(),
      refused: (reason, connection, details = {}) => {
        // Counted every time, logged at most once per 10 s per connection and limit.
        const now = host.now();
        const last = connection.limitLoggedAt.get(reason);
        const log = last === undefined || now - last >= 10000;
        if (log) connection.limitLoggedAt.set(reason, now);
        host.limitHit(`document_${reason}`, { client: connection.id, user: connection.user, document: connection.name, ...details }, log);
      },
      closed: (connection) => this.onClosed(connection),
    };
  }

  /** The document name in an upgrade URL (`<path>/<name>`, percent-decoded), or undefined. */
  private nameFromUrl(url: string | undefined): string | undefined {
    const path = (url ?? '').split('?')[0] ?? '';
    try {
      return decodeURIComponent(path.slice(this.manager.options.path.length + 1));
    } catch {
      return undefined;
    }
  }

  /** Handle an upgrade for `<path>/<document name>` (noServer embedding; `attach` routes them here). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const logger = this.manager.host.logger;
    socket.on('error', (err) => logger.debug({ err }, 'socket error during document handshake'));
    this.upgrade(req, socket, head).catch((err: unknown) => {
      logger.error({ err }, 'document upgrade failed');
      rejectUpgrade(socket, 500, ErrorCode.INTERNAL, 'internal error');
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const manager = this.manager;
    const host = manager.host;
    const name = this.nameFromUrl(req.url);
    if (name === undefined || !manager.isDocument(name)) {
      rejectUpgrade(socket, 404, ErrorCode.NOT_FOUND, 'no document namespace (document: true) matches this name');
      return;
    }
    const admitted = await host.admit(req);
    if (!admitted.ok) {
      rejectUpgrade(socket, admitted.status, admitted.code, admitted.message, admitted.retryAfterSec);
      return;
    }
    let access: DocumentAccess;
    try {
      access = await manager.access(name, admitted.identity, admitted.clientId);
    } catch (err) {
      admitted.release();
      throw err;
    }
    if (manager.isClosed() || host.isClosing() || socket.destroyed || !socket.writable) {
      admitted.release();
      if (!socket.destroyed) rejectUpgrade(socket, 503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
      return;
    }
    if (access === 'deny') {
      admitted.release();
      host.logger.info({ document: name, user: admitted.identity.user }, 'document access denied');
      rejectUpgrade(socket, 403, ErrorCode.PERMISSION_DENIED, `no access to "${name}"`);
      return;
    }
    let upgraded = false;
    socket.once('close', () => {
      if (!upgraded) admitted.release();
    });
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      const connection = new YjsConnection(ws, admitted.identity, admitted.clientId, name, access, this.connectionHost);
      this.connections.add(connection);
      this.admissions.set(connection, admitted);
      manager.connectionsGauge.inc();
      host.logger.info({ client: connection.id, user: connection.user, document: name, access }, 'document connected');
      manager.acquire(name).then(
        (document) => {
          if (connection.closing || ws.readyState !== ws.OPEN) return manager.release(document);
          connection.attach(document);
        },
        (err: unknown) => {
          host.logger.error({ err: { message: (err as Error).message }, document: name }, 'document could not be loaded');
          connection.close(DocumentCloseCode.UNAVAILABLE, 'document unavailable');
        },
      );
    });
  }

  private onClosed(connection: YjsConnection): void {
    if (!this.connections.delete(connection)) return;
    connection.closing = true;
    this.manager.connectionsGauge.dec();
    this.admissions.get(connection)?.release();
    this.admissions.delete(connection);
    const document = connection.document;
    if (document) {
      document.removePeer(connection);
      this.manager.release(document);
    }
    this.manager.host.logger.info({ client: connection.id, user: connection.user, document: connection.name }, 'document disconnected');
  }

  /** Token expiry, heartbeats (ping; close 4002 when silent past the timeout), per-user registry refresh. */
  tick(now: number): void {
    const host = this.manager.host;
    const { intervalMs, timeoutMs } = host.heartbeat;
    for (const connection of this.connections) {
      if (connection.closing) continue;
      const expiresAt = connection.identity.expiresAt;
      if (expiresAt !== undefined && now >= expiresAt + host.clockToleranceMs) {
        connection.close(DocumentCloseCode.TOKEN_EXPIRED, 'token expired');
      } else if (now - connection.lastSeen > timeoutMs) {
        connection.close(DocumentCloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout');
      } else if (now - connection.lastPing >= intervalMs) {
        connection.lastPing = now;
        try {
          connection.ws.ping();
        } catch {
          // closing already; the close event cleans up
        }
      }
    }
    if (now - this.lastRegistryRefresh >= host.registryTtlMs / 3 && this.connections.size > 0) {
      this.lastRegistryRefresh = now;
      const entries = [...this.connections].map((c) => ({ user: c.user, clientId: c.id }));
      host.refreshConnections(entries).catch((err: unknown) => host.logger.warn({ err: { message: (err as Error).message } }, 'connection registry refresh failed'));
    }
  }

  /** Close every connection with 1001 and wait for them to close. */
  async closeAll(): Promise<void> {
    await Promise.all(
      [...this.connections].map(
        (connection) =>
          new Promise<void>((resolve) => {
            if (connection.ws.readyState === connection.ws.CLOSED) return resolve();
            connection.ws.once('close', () => resolve());
            connection.close(DocumentCloseCode.GOING_AWAY, 'server shutting down');
          }),
      ),
    );
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
