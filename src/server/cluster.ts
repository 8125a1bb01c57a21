/**
 * The cluster as one node sees it through the engine: every node reports its figures to the
 * engine's node directory (with a TTL, so a dead node drops out), and user commands sent to
 * every node (disconnect, subscribe, unsubscribe) are answered by each node with how many of
 * its connections they affected, so the HTTP API and the admin console answer for the whole
 * cluster, not just the node that was asked (docs/PROTOCOL.md, "Cluster-wide answers").
 */
import type { Logger } from 'pino';
import type { ControlCommand, Engine, NodeReport } from '../engines/types.js';
import { NodeFigures, type NodeStats, type NodeStatsSource } from './node-stats.js';
import type { ReadonlyMembers } from './small-set.js';

export type { NodeStats } from './node-stats.js';

/** A user command sent to every node; each answers with the connections it affected. */
export type UserCommand = Exclude<ControlCommand, { type: 'reply' }>;

/** The outcome of a user command across the cluster. */
export interface ClusterAnswer {
  /** Connections affected, summed over the nodes that answered. */
  count: number;
  /** Nodes that answered (this one included). */
  nodes: string[];
  /** Nodes in the directory that did not answer within `replyTimeoutMs`. */
  missing: string[];
}

export interface ClusterSettings {
  nodeId: string;
  engine: Pick<Engine, 'nodes' | 'broker'>;
  logger: Logger;
  now: () => number;
  /** This node's current figures. */
  stats(): Promise<NodeStats>;
  /** How often the node reports, in ms. Reports expire after three intervals. */
  reportIntervalMs: number;
  /** How long a cluster-wide command waits for the other nodes' answers, in ms. */
  replyTimeoutMs: number;
  /** Throws (BAD_CHANNEL; NOT_AVAILABLE for a document) for a channel a subscribe/unsubscribe command may not name. */
  checkChannel?: (channel: string) => void;
}

interface Pending {
  expected: Set<string>;
  answer: ClusterAnswer;
  done: () => void;
}

let requests = 0;

/** How many of a node's connections (by user) a command affects (for unsubscribe: those subscribed; 0 for a reply). */
export function affectedBy(command: ControlCommand, users: ReadonlyMap<string, ReadonlyMembers<{ subscriptions: ReadonlyMap<string, unknown> }>>): number {
  if (command.type === 'reply') return 0;
  const connections = users.get(command.user);
  if (!connections) return 0;
  if (command.type !== 'unsubscribe') return connections.size;
  let n = 0;
  for (const c of connections) if (c.subscriptions.has(command.channel)) n++;
  return n;
}

export class ClusterView {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The report being written, awaited by `stop` so it cannot land after the removal. */
  private reporting: Promise<void> | undefined;
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly settings: ClusterSettings) {}

  /** Start reporting (at once, then every `reportIntervalMs`). */
  start(): void {
    if (this.timer || this.stopped) return;
    this.reporting = this.report();
    this.timer = setInterval(() => (this.reporting ??= this.report()), this.settings.reportIntervalMs);
    this.timer.unref();
  }

  /** Stop reporting and remove this node's report. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const pending of this.pending.values()) pending.done();
    await this.reporting;
    await this.settings.engine.nodes.remove(this.settings.nodeId).catch(() => {});
  }

  private async report(): Promise<void> {
    try {
      const stats = await this.settings.stats();
      if (!this.stopped) await this.settings.engine.nodes.report(this.settings.nodeId, stats, this.settings.reportIntervalMs * 3);
    } catch (err) {
      this.settings.logger.warn({ err: { message: (err as Error).message } }, 'node report failed');
    } finally {
      this.reporting = undefined;
    }
  }

  /** Every live node's figures, this node's fresh. */
  async nodes(): Promise<NodeStats[]> {
    const [reports, own] = await Promise.all([this.settings.engine.nodes.list(), this.settings.stats()]);
    const others = reports.filter((r) => r.node !== this.settings.nodeId).map((r: NodeReport) => r.data as NodeStats);
    return [own, ...others].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  /** Channels with subscribers anywhere in the cluster, subscriber counts summed over nodes, busiest first. */
  async channels(): Promise<{ channels: Array<{ channel: string; subscribers: number; nodes: number }>; nodes: string[] }> {
    const nodes = await this.nodes();
    const totals = new Map<string, { subscribers: number; nodes: number }>();
    for (const node of nodes) {
      for (const { channel, subscribers } of node.channels) {
        const total = totals.get(channel) ?? { subscribers: 0, nodes: 0 };
        total.subscribers += subscribers;
        total.nodes += 1;
        totals.set(channel, total);
      }
    }
    const channels = [...totals].map(([channel, t]) => ({ channel, ...t })).sort((a, b) => b.subscribers - a.subscribers || (a.channel < b.channel ? -1 : 1));
    return { channels, nodes: nodes.map((n) => n.node) };
  }

  /**
   * Send a user command to every node and gather their answers: every node in the directory
   * (and this one) is waited for, up to `replyTimeoutMs`.
   */
  async request(command: UserCommand): Promise<ClusterAnswer> {
    const { engine, nodeId, replyTimeoutMs } = this.settings;
    if (command.type !== 'disconnect') this.settings.checkChannel?.(command.channel);
    const reports = await engine.nodes.list().catch(() => [] as NodeReport[]);
    const expected = new Set([nodeId, ...reports.map((r) => r.node)]);
    const id = `${nodeId}.${(requests = (requests + 1) % Number.MAX_SAFE_INTEGER)}`;
    const answer: ClusterAnswer = { count: 0, nodes: [], missing: [] };
    let timer: NodeJS.Timeout | undefined;
    const finished = new Promise<void>((resolve) => {
      this.pending.set(id, { expected, answer, done: resolve });
      timer = setTimeout(resolve, replyTimeoutMs);
      timer.unref();
    });
    try {
      await engine.broker.publishControl({ ...command, request: id, from: nodeId });
      await finished;
    } finally {
      clearTimeout(timer);
      this.pending.delete(id);
    }
    answer.missing = [...expected].filter((n) => !answer.nodes.includes(n)).sort();
    answer.nodes.sort();
    return answer;
  }

  /**
   * A control command arrived: take a reply (returns true: nothing else to do), or answer a
   * request (`count` = local connections affected) and return false (the node acts on it).
   */
  receive(command: ControlCommand, count: number): command is Extract<ControlCommand, { type: 'reply' }> {
    if (command.type === 'reply') {
      const pending = this.pending.get(command.request);
      if (!pending || pending.answer.nodes.includes(command.node)) return true;
      pending.answer.count += command.count;
      pending.answer.nodes.push(command.node);
      if ([...pending.expected].every((n) => pending.answer.nodes.includes(n))) pending.done();
      return true;
    }
    // A node that shut down no longer answers (its engine may still deliver to it).
    if (command.request === undefined || command.from === undefined || this.stopped) return false;
    const reply: ControlCommand = { type: 'reply', request: command.request, to: command.from, node: this.settings.nodeId, count };
    if (command.from === this.settings.nodeId) this.receive(reply, 0);
    else {
      void this.settings.engine.broker.publishControl(reply).catch((err) =>
        this.settings.logger.warn({ err: { message: (err as Error).message } }, 'cluster reply failed'),
      );
    }
    return false;
  }
}

/** The server's ClusterView, reporting this node's figures read from `parts`. */
export function clusterView(
  settings: Omit<ClusterSettings, 'stats'>,
  parts: { connections: NodeStatsSource['connections']; hub: { users: { readonly size: number }; channels: NodeStatsSource['channels'] }; metrics: NodeStatsSource['metrics'] },
): ClusterView {
  const figures = new NodeFigures({
    nodeId: settings.nodeId,
    startedAt: settings.now(),
    now: settings.now,
    connections: parts.connections,
    users: parts.hub.users,
    channels: parts.hub.channels,
    metrics: parts.metrics,
  });
  return new ClusterView({ ...settings, stats: () => figures.read() });
}
