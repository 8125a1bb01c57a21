/**
 * What a node reports about itself to the engine's node directory (see cluster.ts): connections
 * (the newest listed), users, channels with local subscriber counts, and message rates.
 */
import type { Metrics } from './metrics.js';

/** What a node reports about itself. */
export interface NodeStats {
  node: string;
  /** When the node started, ms since the Unix epoch. */
  startedAt: number;
  connections: number;
  /** The newest connections (at most `MAX_REPORTED_CONNECTIONS`, newest first). */
  recent: Array<{ id: string; user: string; transport: string; connectedAt: number; subscriptions: number }>;
  /** Distinct users connected to the node. */
  users: number;
  /** Channels with subscribers on the node (the busiest `maxReportedChannels`), with local subscriber counts. */
  channels: Array<{ channel: string; subscribers: number }>;
  /** Number of channels with subscribers on the node (may exceed `channels.length`). */
  channelCount: number;
  /** Per second, averaged since the previous report. */
  rates: { messagesIn: number; messagesOut: number; publications: number };
}

/** Channels listed per node report (the busiest first); `channelCount` has the full number. */
export const MAX_REPORTED_CHANNELS = 1000;
/** Connections listed per node report (the newest); `connections` has the full number. */
export const MAX_REPORTED_CONNECTIONS = 200;

/** What a report says about one connection. */
interface ReportedConnection {
  readonly id: string;
  readonly user: string;
  readonly connectedAt: number;
  readonly transport: { readonly kind: string };
  readonly subscriptions: { readonly size: number };
}

/** What the figures are read from (ChorusServer's parts). */
export interface NodeStatsSource {
  nodeId: string;
  startedAt: number;
  now: () => number;
  connections: ReadonlySet<ReportedConnection>;
  users: { readonly size: number };
  channels: ReadonlyMap<string, { readonly size: number }>;
  metrics: Pick<Metrics, 'messagesIn' | 'messagesOut' | 'publications'>;
}

async function total(counter: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await counter.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** This node's figures; rates are per second since the previous call. */
export class NodeFigures {
  private last: { at: number; messagesIn: number; messagesOut: number; publications: number } | undefined;

  constructor(private readonly source: NodeStatsSource) {}

  async read(): Promise<NodeStats> {
    const { source } = this;
    const now = source.now();
    const [messagesIn, messagesOut, publications] = await Promise.all([
      total(source.metrics.messagesIn),
      total(source.metrics.messagesOut),
      total(source.metrics.publications),
    ]);
    const last = this.last;
    const seconds = last ? (now - last.at) / 1000 : 0;
    const rate = (value: number, previous: number) => (seconds > 0 ? Math.round(((value - previous) / seconds) * 10) / 10 : 0);
    // Rates over at least a second: a read right after another keeps the previous baseline.
    if (!last || now - last.at >= 1000) this.last = { at: now, messagesIn, messagesOut, publications };
    // Sets iterate in insertion order: the newest connections are the last ones.
    const recent: NodeStats['recent'] = [];
    let skip = source.connections.size - MAX_REPORTED_CONNECTIONS;
    for (const c of source.connections) {
      if (skip-- > 0) continue;
      recent.push({ id: c.id, user: c.user, transport: c.transport.kind, connectedAt: c.connectedAt, subscriptions: c.subscriptions.size });
    }
    const channels = [...source.channels]
      .map(([channel, set]) => ({ channel, subscribers: set.size }))
      .sort((a, b) => b.subscribers - a.subscribers || (a.channel < b.channel ? -1 : 1));
    return {
      node: source.nodeId,
      startedAt: source.startedAt,
      connections: source.connections.size,
      recent: recent.reverse(),
      users: source.users.size,
      channels: channels.slice(0, MAX_REPORTED_CHANNELS),
      channelCount: channels.length,
      rates: {
        messagesIn: last ? rate(messagesIn, last.messagesIn) : 0,
        messagesOut: last ? rate(messagesOut, last.messagesOut) : 0,
        publications: last ? rate(publications, last.publications) : 0,
      },
    };
  }
}

