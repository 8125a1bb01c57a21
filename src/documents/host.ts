import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { BrokerEvent, Broker, HistoryStore } from '../engines/types.js';
import type { AuthorizeRequest, ResolvedNamespace } from '../server/options.js';
import type { ChorusServer } from '../server/server.js';
import type { Connection } from '../server/connection.js';
import { invalidUpgrade } from '../server/handshake.js';
import type { Admission } from '../server/upgrade.js';

/** Exactly what documents need from the server they run on. */
export interface DocumentsHost {
  readonly nodeId: string;
  readonly logger: Logger;
  readonly broker: Broker;
  readonly history: HistoryStore;
  readonly metricsRegistry: Registry;
  /** Heartbeat ping interval and silence timeout, in ms (the server's `heartbeat`). */
  readonly heartbeat: { intervalMs: number; timeoutMs: number };
  /** Lifetime of per-user connection entries, in ms; refreshed every third. */
  readonly registryTtlMs: number;
  /** Clock skew tolerated on token expiry, in ms. */
  readonly clockToleranceMs: number;
  now(): number;
  isClosing(): boolean;
  /** The namespace of a channel name; throws ChorusError(BAD_CHANNEL). */
  namespace(name: string): ResolvedNamespace;
  /** For personal namespaces: the user a name belongs to. */
  ownerOf(name: string): string | undefined;
  /** The server's `authorize` option, if any. */
  readonly authorize: ((request: AuthorizeRequest) => boolean | Promise<boolean>) | undefined;
  /**
   * The server's shared admission of an upgrade request (`Gate.admit`: handshake, Origin, token
   * with timeout, per-user cap, `onUpgrade` hooks). A refusal says which HTTP answer to give.
   */
  admit(req: IncomingMessage): Promise<Admission>;
  /** Extend the per-user registry entries of live connections. */
  refreshConnections(entries: Array<{ user: string; clientId: string }>): Promise<void>;
  /** Count a limit hit (`chorus_limit_hits_total{limit}`), and log it when `log` is true. */
  limitHit(limit: string, details: Record<string, unknown>, log: boolean): void;
  addUpgradeRoute(prefix: string, handle: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void;
  addApiRoute(route: (req: IncomingMessage, res: ServerResponse, path: string, method: string) => Promise<boolean>): void;
  addBrokerTap(tap: (event: BrokerEvent) => boolean): void;
  /** Run on server close, after its connections closed and before its engine does. */
  onClose(fn: () => Promise<void>): void;
  /**
   * Serve a client event of the Chorus protocol (documents' `doc.*` frames, reserved: no
   * application handler can take them): its return value is the ack, a thrown ChorusError the
   * error reply.
   */
  addFrameHandler(event: string, handler: (data: unknown, connection: Connection) => unknown): void;
  /** Called when a Chorus-protocol connection closes. */
  onDisconnect(fn: (connection: Connection) => void): void;
}

/** The host for a `ChorusServer`, through its public seams. */
export function serverHost(server: ChorusServer): DocumentsHost {
  return {
    nodeId: server.options.nodeId,
    logger: server.logger.child({ component: 'documents' }),
    broker: server.engine.broker,
    history: server.engine.history,
    metricsRegistry: server.metrics.registry,
    heartbeat: server.options.heartbeat,
    registryTtlMs: server.options.presenceTtlMs,
    clockToleranceMs: server.clockToleranceMs,
    now: server.options.clock,
    isClosing: () => server.closing,
    namespace: (name) => server.rules.resolve(name),
    ownerOf: (name) => server.rules.ownerOf(name),
    authorize: server.options.authorize,
    admit: (req) => server.seams.admit(req, invalidUpgrade),
    refreshConnections: (entries) => server.engine.connections.refresh(entries, server.options.presenceTtlMs),
    limitHit: (limit, details, log) => {
      server.metrics.limitHits.inc({ limit });
      if (log) server.logger.info({ limit, ...details }, 'limit hit');
    },
    addUpgradeRoute: (prefix, handle) => server.seams.upgrades.push({ prefix, handle }),
    addApiRoute: (route) => server.seams.api.push(route),
    addBrokerTap: (tap) => server.seams.brokerTaps.push(tap),
    onClose: (fn) => server.use({ name: 'documents', onDestroy: fn }),
    addFrameHandler: (event, handler) => server.seams.addFrame(event, handler),
    onDisconnect: (fn) => server.use({ name: 'documents-frames', onDisconnect: ({ connection }) => fn(connection) }),
  };
}
