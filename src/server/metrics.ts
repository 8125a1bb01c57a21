import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CloseCode } from '../protocol/index.js';

/** The server's Prometheus metrics, all prefixed `chorus_`. */
export class Metrics {
  readonly registry: Registry;
  readonly connections: Gauge;
  readonly connectionsTotal: Counter;
  readonly disconnects: Counter<'code'>;
  readonly subscriptions: Gauge;
  readonly messagesIn: Counter<'event'>;
  readonly messagesOut: Counter;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly publishDuration: Histogram<'source'>;
  readonly publications: Counter<'source'>;
  readonly authFailures: Counter<'reason'>;
  readonly limitHits: Counter<'limit'>;
  readonly slowConsumerDisconnects: Counter;
  readonly ephemeralDropped: Counter;
  readonly resyncs: Counter;

  constructor(registry?: Registry, defaultMetrics = false) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'chorus_' });
    this.connections = new Gauge({ name: 'chorus_connections', help: 'Open WebSocket connections', registers });
    this.connectionsTotal = new Counter({ name: 'chorus_connections_total', help: 'Accepted WebSocket connections', registers });
    this.disconnects = new Counter({ name: 'chorus_disconnects_total', help: 'Closed connections by close code', labelNames: ['code'], registers });
    this.subscriptions = new Gauge({ name: 'chorus_subscriptions', help: 'Active channel subscriptions', registers });
    this.messagesIn = new Counter({
      name: 'chorus_messages_in_total',
      help: 'Frames received from clients, by reserved event (application events count as "app")',
      labelNames: ['event'],
      registers,
    });
    this.messagesOut = new Counter({ name: 'chorus_messages_out_total', help: 'Frames sent to clients', registers });
    this.bytesIn = new Counter({ name: 'chorus_bytes_in_total', help: 'WebSocket payload bytes received', registers });
    this.bytesOut = new Counter({ name: 'chorus_bytes_out_total', help: 'WebSocket payload bytes sent', registers });
    this.publishDuration = new Histogram({
      name: 'chorus_publish_duration_seconds',
      help: 'Time to accept a publication (checks, hooks, engine publish), by source',
      labelNames: ['source'],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.publications = new Counter({ name: 'chorus_publications_total', help: 'Publications accepted, by source (client, api, server)', labelNames: ['source'], registers });
    this.authFailures = new Counter({ name: 'chorus_auth_failures_total', help: 'Rejected handshakes, by reason', labelNames: ['reason'], registers });
    this.limitHits = new Counter({ name: 'chorus_limit_hits_total', help: 'Limits hit, by limit', labelNames: ['limit'], registers });
    this.slowConsumerDisconnects = new Counter({
      name: 'chorus_slow_consumer_disconnects_total',
      help: 'Connections closed because their send queue overflowed',
      registers,
    });
    this.resyncs = new Counter({
      name: 'chorus_resyncs_total',
      help: 'Channels whose missed publications the node could not backfill (subscribers closed with 4005)',
      registers,
    });
    this.ephemeralDropped = new Counter({
      name: 'chorus_ephemeral_dropped_total',
      help: 'Ephemeral frames dropped for slow consumers',
      registers,
    });
  }
}

const KNOWN_CLOSE_CODES = new Set<number>([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015]);

/** Metric label for a close code: peers choose codes freely, so unknown ones are bucketed. */
export function closeCodeLabel(code: number): string {
  if (KNOWN_CLOSE_CODES.has(code) || (Object.values(CloseCode) as number[]).includes(code)) return String(code);
  return code >= 4000 && code <= 4999 ? '4xxx' : code >= 3000 && code <= 3999 ? '3xxx' : 'other';
}
