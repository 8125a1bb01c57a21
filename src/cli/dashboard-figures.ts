/**
 * The live dashboard's data contract, shared by the node that publishes it
 * (src/cli/dashboard-feed.ts) and the page that draws it (web/src/dashboard/feed.ts): no
 * imports, so the browser bundle takes it as it is.
 */

/** The channel the figures go to. */
export const DASHBOARD_CHANNEL = 'dash:nodes';

/** One tick of one node's figures (the publication's data). Rates are per second over the tick. */
export interface NodeFigures {
  node: string;
  /** ms since the Unix epoch. */
  t: number;
  connections: number;
  subscriptions: number;
  /** Frames received from clients per second. */
  messagesIn: number;
  /** Frames sent to clients per second. */
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Publications accepted per second (clients, API and server). */
  publications: number;
  /** Mean time to accept a publication over the tick, ms (0 without publications). */
  publishMeanMs: number;
  /** Upper bound of the histogram bucket holding the 99th percentile over the tick, ms. */
  publishP99Ms: number;
  /** Event-loop delay over the tick beyond the 10 ms sampling interval, ms: mean and max. */
  loopLagMs: number;
  loopLagMaxMs: number;
  /** Resident set size and V8 heap in use, MiB. */
  rssMb: number;
  heapMb: number;
}
