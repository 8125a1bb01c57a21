/** Result records of bench/run.ts and the two tables it prints. */
import type { PublishPlan, ServerKind } from './protocol.js';

export interface ConnectResult {
  idle: number;
  failed: number;
  handshakesPerSec: number;
  serverCpuMsPerHandshake: number;
  heapBytesPerConn: number;
  rssBytesPerConn: number;
  error?: string;
}

export interface FanoutResult {
  scenario: string;
  round: number;
  subscribers: number;
  publications: number;
  deliveries: number;
  expected: number;
  /** From the publish command to the last chunk received, ms. */
  elapsedMs: number;
  /** How long the publisher ran, ms. */
  publishMs: number;
  deliveriesPerSec: number;
  /** Server CPU (user + system, kernel TCP work included) per delivery, µs: less sensitive to other load on the machine. */
  serverCpuUsPerDelivery: number;
  loadCpuUsPerDelivery: number;
  latencyMs: { p50: number; p99: number; max: number; samples: number };
  bytesPerDelivery: number;
  deliveriesPerMessage: number;
  serverCpuPct: number;
  loadCpuPct: number;
  /** Share of the publishing time the window publisher waited for credit (receivers behind). */
  stalledPct: number;
  closedConnections: number;
}

/**
 * The round with the highest throughput; all its columns come from that one round. Other work on
 * the machine only ever slows a round down, so the fastest round is the least disturbed one.
 */
export function bestRound(rounds: FanoutResult[], mode: PublishPlan['mode']): FanoutResult {
  // At a fixed rate every round delivers the same; the least disturbed one has the lowest median latency.
  if (mode === 'rate') return rounds.reduce((best, r) => (r.latencyMs.p50 < best.latencyMs.p50 ? r : best));
  return rounds.reduce((best, r) => (r.deliveriesPerSec > best.deliveriesPerSec ? r : best));
}

export const LABEL: Record<ServerKind, string> = { chorus: 'Chorus', ws: 'ws (naive loop)', socketio: 'Socket.IO' };

function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(headers), `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function printFanout(
  fanout: Partial<Record<ServerKind, FanoutResult[]>>,
  rounds: Partial<Record<ServerKind, FanoutResult[]>>,
  options: { subscribers: number; rounds: number; latencyEvery: number; scenarios: Array<{ name: string; plan: PublishPlan }>; kinds: ServerKind[] },
): void {
  const fanoutRows: string[][] = [];
  for (const { name, plan } of options.scenarios) {
    for (const kind of options.kinds) {
      const r = fanout[kind]?.find((x) => x.scenario === name);
      if (!r) continue;
      const lost = r.expected - r.deliveries;
      const mine = (rounds[kind] ?? []).filter((x) => x.scenario === name);
      const all = mine.map((x) => (plan.mode === 'rate' ? x.latencyMs.p50 : x.deliveriesPerSec));
      const digits = plan.mode === 'rate' ? 1 : 0;
      const unit = plan.mode === 'rate' ? ' ms p50' : '';
      fanoutRows.push([
        `${name}: ${LABEL[kind]}`,
        fmt(r.publications),
        fmt(r.deliveriesPerSec),
        all.length > 1 ? `${fmt(Math.min(...all), digits)}–${fmt(Math.max(...all), digits)}${unit}` : '-',
        fmt(r.latencyMs.p50, 1),
        fmt(r.latencyMs.p99, 1),
        fmt(r.bytesPerDelivery),
        fmt(r.deliveriesPerMessage, 1),
        fmt(r.serverCpuUsPerDelivery, 2),
        fmt(r.serverCpuPct),
        fmt(r.loadCpuPct),
        lost === 0 && r.closedConnections === 0 ? '0' : `${lost < 0 ? `${fmt(-lost)} extra` : fmt(lost)} (${r.closedConnections} closed)`,
      ]);
    }
  }
  console.log(
    `\nFan-out: ${options.subscribers} subscribers on one channel; best of ${options.rounds} round(s): highest deliveries/s, at a fixed rate lowest p50` +
      ` (latency = publish to receipt, 1 in ${options.latencyEvery} subscribers sampled)\n`,
  );
  console.log(
    table(
      ['scenario: server', 'pubs', 'deliveries/s', 'range (rounds)', 'p50 ms', 'p99 ms', 'B/delivery', 'frames/WS msg', 'server CPU µs/delivery', 'server CPU %', 'load CPU %', 'missing'],
      fanoutRows,
    ),
  );
}

export function printConnect(connect: Partial<Record<ServerKind, ConnectResult>>, options: { concurrency: number; kinds: ServerKind[] }): void {
  const connectRows = options.kinds.flatMap((kind) => {
    const r = connect[kind];
    if (!r) return [];
    return [
      [
        LABEL[kind],
        `${fmt(r.idle)}${r.failed ? ` (${r.failed} failed)` : ''}`,
        fmt(r.heapBytesPerConn / 1024, 1),
        fmt(r.rssBytesPerConn / 1024, 1),
        fmt(r.handshakesPerSec),
        fmt(r.serverCpuMsPerHandshake, 3),
      ],
    ];
  });
  console.log(`\nIdle connections: memory per connection (after GC) and connection rate (${options.concurrency} handshakes in flight)\n`);
  console.log(table(['server', 'connections', 'heap KB/conn', 'RSS KB/conn', 'handshakes/s', 'server CPU ms/handshake'], connectRows));
}
