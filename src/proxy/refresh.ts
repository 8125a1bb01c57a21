/**
 * Refresh proxy: a connection with an expiry asks the backend to extend it when less than
 * `REFRESH_AHEAD_MS` is left. The answer's `expiresAt` (and `info`) replace the connection's; a
 * denial closes it with 4500 (do not reconnect); the backend being unavailable is retried every
 * `REFRESH_RETRY_MS` until the server closes the connection at expiry (4001, reconnect).
 * One shared timer for all connections.
 */
import type { Logger } from 'pino';
import { ChorusError, CloseCode, ErrorCode } from '../protocol/index.js';
import type { Connection } from '../server/index.js';
import type { ProxyCaller } from './caller.js';
import { identityFromResult } from './identity.js';

/** A connection is refreshed when less than this is left before its expiry, in ms. */
export const REFRESH_AHEAD_MS = 10_000;
/** A failed refresh is tried again after this, in ms. */
export const REFRESH_RETRY_MS = 2_000;
/** How often expiries are checked, in ms. */
const CHECK_EVERY_MS = 500;

export class RefreshScheduler {
  private readonly connections = new Set<Connection>();
  /** Connections with a refresh in flight or waiting to retry: the time of the next try. */
  private readonly nextTry = new Map<Connection, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly caller: ProxyCaller,
    private readonly now: () => number,
    private readonly logger: Logger,
  ) {
    this.timer = setInterval(() => this.check(), CHECK_EVERY_MS);
    this.timer.unref();
  }

  add(connection: Connection): void {
    this.connections.add(connection);
  }

  delete(connection: Connection): void {
    this.connections.delete(connection);
    this.nextTry.delete(connection);
  }

  /** Start a refresh for every connection close to its expiry (exposed for tests). */
  check(): void {
    const now = this.now();
    for (const connection of this.connections) {
      if (connection.closing || connection.expiresAt === undefined || connection.expiresAt - now > REFRESH_AHEAD_MS) continue;
      if ((this.nextTry.get(connection) ?? 0) > now) continue;
      this.nextTry.set(connection, Number.MAX_SAFE_INTEGER); // in flight
      void this.refresh(connection);
    }
  }

  private async refresh(connection: Connection): Promise<void> {
    try {
      const result = await this.caller.call('refresh', {
        client: connection.id,
        user: connection.user,
        info: connection.info ?? null,
        expiresAt: connection.expiresAt ?? null,
      });
      const identity = identityFromResult(result, false);
      if (typeof identity === 'string') throw this.caller.malformed('refresh', identity);
      if (identity.expiresAt === undefined) throw this.caller.malformed('refresh', '"result.expiresAt" is required');
      if (identity.user !== undefined && identity.user !== connection.user) throw this.caller.malformed('refresh', '"result.user" is not the connection\'s user');
      connection.expiresAt = identity.expiresAt;
      if (identity.info) connection.info = identity.info;
      this.nextTry.delete(connection);
    } catch (err) {
      if (err instanceof ChorusError && err.code !== ErrorCode.UNAVAILABLE) {
        this.logger.info({ client: connection.id, user: connection.user, code: err.code }, 'refresh denied by the backend: disconnecting');
        connection.close(CloseCode.DISCONNECT, err.message);
        this.delete(connection);
        return;
      }
      if (this.connections.has(connection)) this.nextTry.set(connection, this.now() + REFRESH_RETRY_MS);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.connections.clear();
    this.nextTry.clear();
  }
}
