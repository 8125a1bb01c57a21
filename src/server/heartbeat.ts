import type { Logger } from 'pino';
import { Disconnect, ServerEvent } from '../protocol/index.js';
import type { ConnectionRegistry } from '../engines/types.js';
import type { Connection } from './connection.js';
import type { Hub } from './hub.js';
import type { LimitReporter } from './limit-reporter.js';
import { OutgoingFrame } from './outgoing.js';

/** What the heartbeat needs from the server. */
export interface HeartbeatHost {
  readonly connections: Iterable<Connection>;
  readonly options: {
    readonly heartbeat: { readonly intervalMs: number; readonly timeoutMs: number };
    /** Presence and connection-registry entries live this long unless refreshed, in ms. */
    readonly presenceTtlMs: number;
  };
  /** Clock skew tolerated on token expiry, in ms. */
  readonly clockToleranceMs: number;
  readonly reporter: LimitReporter;
  readonly registry: ConnectionRegistry;
  readonly hub: Pick<Hub, 'refreshPresence'>;
  readonly logger: Logger;
  now(): number;
}

/**
 * One timer for every connection of the node: pings, dead-peer detection, token expiry, and the
 * refresh of the node's presence and connection-registry entries (every third of their TTL).
 * Pings are an application `ping` frame (on every transport the client can answer on) plus the
 * transport's own ping where it has one (a WebSocket ping, an SSE comment). One-way transports
 * are not closed for silence.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private lastPresenceRefresh: number;
  private lastRegistryRefresh: number;
  private readonly ping = new OutgoingFrame({ event: ServerEvent.PING });

  constructor(private readonly host: HeartbeatHost) {
    this.lastPresenceRefresh = this.lastRegistryRefresh = host.now();
  }

  start(): void {
    if (this.timer) return;
    const { heartbeat, presenceTtlMs } = this.host.options;
    // Often enough for heartbeats AND for the presence/connection refresh at a third of the
    // TTL: a tick much longer than that would let live entries expire between refreshes.
    const tickMs = Math.max(5, Math.min(1000, Math.floor(heartbeat.intervalMs / 2), Math.floor(presenceTtlMs / 6)));
    this.timer = setInterval(() => this.tick(this.host.now()), tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  tick(now: number): void {
    const host = this.host;
    const { intervalMs, timeoutMs } = host.options.heartbeat;
    const presenceTtlMs = host.options.presenceTtlMs;
    for (const connection of host.connections) {
      if (connection.closing) continue;
      if (connection.transport.bidirectional && now - connection.lastSeen > timeoutMs) {
        host.reporter.limitHit('heartbeat', connection);
        // A close frame in case the peer is only slow; terminated soon after either way.
        connection.close(Disconnect.heartbeatTimeout, { notice: false, graceMs: 1000 });
        continue;
      }
      if (connection.expiresAt !== undefined && now >= connection.expiresAt + host.clockToleranceMs) {
        connection.close(Disconnect.tokenExpired);
        continue;
      }
      if (now - connection.lastPing >= intervalMs) {
        connection.lastPing = now;
        // A one-way transport (SSE) cannot answer a ping frame: it gets its own keep-alive.
        if (connection.transport.bidirectional) connection.sendShared(this.ping);
        connection.transport.ping();
      }
    }
    if (now - this.lastRegistryRefresh >= presenceTtlMs / 3) {
      this.lastRegistryRefresh = now;
      const entries = [...host.connections].map((c) => ({ user: c.user, clientId: c.id }));
      void host.registry
        .refresh(entries, presenceTtlMs)
        .catch((err) => host.logger.warn({ err: { message: (err as Error).message } }, 'connection registry refresh failed'));
    }
    if (now - this.lastPresenceRefresh >= presenceTtlMs / 3) {
      this.lastPresenceRefresh = now;
      void host.hub.refreshPresence().catch((err) => host.logger.warn({ err }, 'presence refresh failed'));
    }
  }
}
