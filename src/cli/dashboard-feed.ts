/**
 * The live dashboard's data: every `intervalMs` the node publishes its own figures to the
 * broadcast-only channel `dash:nodes` (one publication per node per tick, so a cluster's nodes
 * share one channel and a viewer tells them apart by `node`). The channel keeps history, so a
 * viewer reads the recent window first and subscribes from its top (snapshot, then deltas), and
 * a reconnecting viewer recovers the ticks it missed. Uses only the public ChorusServer API.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { ChorusServer } from '../server/index.js';
import { DASHBOARD_CHANNEL, type NodeFigures } from './dashboard-figures.js';

export { DASHBOARD_CHANNEL, type NodeFigures };

export interface DashboardFeedOptions {
  /** Time between two publications, in ms. Default 1000. */
  intervalMs?: number;
  /** Channel. Default `dash:nodes` (its namespace needs history and may be `publish: 'none'`). */
  channel?: string;
  /** Clock, ms since the Unix epoch. Default `Date.now`. */
  now?: () => number;
}

type FeedServer = Pick<ChorusServer, 'publish' | 'metrics' | 'options' | 'logger'>;

interface Totals {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  publications: number;
  publishSum: number;
  publishCount: number;
  buckets: Map<number, number>;
}

async function sum(metric: { get(): Promise<{ values: Array<{ value: number }> }> | { values: Array<{ value: number }> } }): Promise<number> {
  const { values } = await metric.get();
  return values.reduce((total, v) => total + v.value, 0);
}

const round = (value: number, digits = 2): number => Number(value.toFixed(digits));

/** Sampling interval of the event-loop delay histogram, in ms; its samples include it, so it is subtracted. */
const LOOP_RESOLUTION_MS = 10;

export class DashboardFeed {
  readonly channel: string;
  readonly #server: FeedServer;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #loop: IntervalHistogram | undefined;
  #last: { at: number; totals: Totals } | undefined;
  #busy = false;
  /** Ticks published so far (for tests and logs). */
  published = 0;

  constructor(server: FeedServer, options: DashboardFeedOptions = {}) {
    const intervalMs = options.intervalMs ?? 1000;
    if (!Number.isSafeInteger(intervalMs) || intervalMs < 10) throw new TypeError('dashboard intervalMs must be an integer of at least 10 (ms)');
    this.#server = server;
    this.#intervalMs = intervalMs;
    this.channel = options.channel ?? DASHBOARD_CHANNEL;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.#loop.enable();
    this.#timer = setInterval(() => void this.tick(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#loop?.disable();
    this.#loop = undefined;
  }

  /** Measures and publishes one tick (the first call only takes the baseline). */
  async tick(): Promise<void> {
    if (this.#busy) return; // a slow engine: skip rather than pile up
    this.#busy = true;
    try {
      const figures = await this.#measure();
      if (figures) {
        // Keyed by node: on the `latest-per-key` dash:* namespace a slow viewer keeps each node's newest figures.
        await this.#server.publish(this.channel, figures, { key: this.#server.options.nodeId });
        this.published++;
      }
    } catch (err) {
      this.#server.logger.warn({ err, channel: this.channel }, 'dashboard feed: publish failed');
    } finally {
      this.#busy = false;
    }
  }

  async #totals(): Promise<Totals> {
    const m = this.#server.metrics;
    const histogram = await m.publishDuration.get();
    const buckets = new Map<number, number>();
    let publishSum = 0;
    let publishCount = 0;
    for (const v of histogram.values) {
      const name = (v as { metricName?: string }).metricName ?? '';
      if (name.endsWith('_sum')) publishSum += v.value;
      else if (name.endsWith('_count')) publishCount += v.value;
      else if (name.endsWith('_bucket')) {
        const raw = (v.labels as Record<string, string | number | undefined>).le;
        const le = raw === '+Inf' ? Infinity : Number(raw);
        buckets.set(le, (buckets.get(le) ?? 0) + v.value);
      }
    }
    return {
      messagesIn: await sum(m.messagesIn),
      messagesOut: await sum(m.messagesOut),
      bytesIn: await sum(m.bytesIn),
      bytesOut: await sum(m.bytesOut),
      publications: await sum(m.publications),
      publishSum,
      publishCount,
      buckets,
    };
  }

  async #measure(): Promise<NodeFigures | undefined> {
    const at = this.#now();
    const totals = await this.#totals();
    const last = this.#last;
    this.#last = { at, totals };
    if (last === undefined) return undefined;
    const seconds = Math.max(0.001, (at - last.at) / 1000);
    const rate = (key: 'messagesIn' | 'messagesOut' | 'bytesIn' | 'bytesOut' | 'publications'): number =>
      round((totals[key] - last.totals[key]) / seconds, 1);
    const count = totals.publishCount - last.totals.publishCount;
    let p99 = 0;
    if (count > 0) {
      for (const [le, cumulative] of [...totals.buckets].sort((a, b) => a[0] - b[0])) {
        if (cumulative - (last.totals.buckets.get(le) ?? 0) >= count * 0.99) {
          p99 = Number.isFinite(le) ? le * 1000 : 1000;
          break;
        }
      }
    }
    const loop = this.#loop;
    const lag =
      loop && loop.count > 0
        ? { mean: Math.max(0, loop.mean / 1e6 - LOOP_RESOLUTION_MS), max: Math.max(0, loop.max / 1e6 - LOOP_RESOLUTION_MS) }
        : { mean: 0, max: 0 };
    loop?.reset();
    const memory = process.memoryUsage();
    return {
      node: this.#server.options.nodeId,
      t: at,
      connections: await sum(this.#server.metrics.connections),
      subscriptions: await sum(this.#server.metrics.subscriptions),
      messagesIn: rate('messagesIn'),
      messagesOut: rate('messagesOut'),
      bytesIn: rate('bytesIn'),
      bytesOut: rate('bytesOut'),
      publications: rate('publications'),
      publishMeanMs: count > 0 ? round(((totals.publishSum - last.totals.publishSum) / count) * 1000, 3) : 0,
      publishP99Ms: round(p99, 3),
      loopLagMs: round(lag.mean),
      loopLagMaxMs: round(lag.max),
      rssMb: round(memory.rss / 1048576, 1),
      heapMb: round(memory.heapUsed / 1048576, 1),
    };
  }
}
