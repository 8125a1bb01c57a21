import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

/** What a limit report needs to know about the connection it concerns. */
export interface ReportedConnection {
  readonly id: string;
  readonly user: string;
  readonly pendingBytes: number;
  /** When each limit was last logged for this connection (kept on the connection, set here). */
  limitLoggedAt: Map<string, number> | undefined;
}

/**
 * Where the parts that enforce limits (connection, hub, frame handler, publisher) report a hit.
 * The part itself acts on the limit (closes, drops, replies with an error); the reporter only
 * counts and logs.
 */
export interface LimitReporter {
  /** A limit was hit (`chorus_limit_hits_total{limit}`), optionally by one connection. */
  limitHit(limit: string, connection?: ReportedConnection, details?: Record<string, unknown>): void;
  /** The connection's send queue overflowed; it is being closed as a slow consumer. */
  slowConsumer(connection: ReportedConnection): void;
  /** An ephemeral publication was dropped because the connection's send queue is half full. */
  ephemeralDropped(connection: ReportedConnection): void;
}

/** Interval between two logs of the same limit for one connection, in ms. */
const LOG_INTERVAL_MS = 10000;

/** The reporter of a server: Prometheus counters and rate-limited logs. */
export class LimitLog implements LimitReporter {
  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  /** Count a hit and log it (`limit hit`), at most once every 10 s per connection and limit. */
  limitHit(limit: string, connection?: ReportedConnection, details: Record<string, unknown> = {}): void {
    this.metrics.limitHits.inc({ limit });
    if (connection) {
      const now = this.now();
      const logged = (connection.limitLoggedAt ??= new Map());
      const last = logged.get(limit);
      if (last !== undefined && now - last < LOG_INTERVAL_MS) return;
      logged.set(limit, now);
    }
    this.logger.info({ limit, ...(connection ? { client: connection.id, user: connection.user } : {}), ...details }, 'limit hit');
  }

  slowConsumer(connection: ReportedConnection): void {
    this.metrics.slowConsumerDisconnects.inc();
    this.metrics.limitHits.inc({ limit: 'send_queue' });
    this.logger.warn({ client: connection.id, user: connection.user, pendingBytes: connection.pendingBytes }, 'slow consumer disconnected');
  }

  ephemeralDropped(connection: ReportedConnection): void {
    this.metrics.ephemeralDropped.inc();
    this.limitHit('ephemeral_dropped', connection);
  }
}
