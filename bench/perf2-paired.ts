/**
 * bench:perf2's `paired` section: the connection-rate comparisons of issue 13 measured in pairs
 * (bench/paired.ts). Chorus and ws share core 0 and the load generator alternates connections
 * between them; then 2 Chorus nodes on one redis-server and 2 Socket.IO nodes on another, all
 * on core 0, likewise. Each round gives both sides' CPU per handshake from the same seconds of
 * the same machine; the section reports the medians and the ratio, which on a saturated core is
 * the ratio of handshakes per second (Chorus's capacity relative to the peer's).
 */
import { UNPACED_ENV, fmt, printRows, startRedis, type BenchRedis } from './perf2-util.js';
import { median, pairedRounds, type PairedRound, type PairedSide } from './paired.js';
import { LABEL } from './report.js';
import { ServerProcess } from './server-process.js';

export interface PairedConfig {
  /** Connections opened on each side per round. */
  pairedConnections: number;
  /** Measured rounds per pair (after one warm-up round). */
  pairedRounds: number;
}

const localAddress = (i: number) => `127.0.0.${1 + (i % 8)}`;

/** Chorus beside ws (one node each) and, with Redis, beside Socket.IO (two nodes each). */
export async function sectionPaired(tokens: string[], config: PairedConfig, results: Record<string, unknown>): Promise<void> {
  const rows: string[][] = [];
  const out: Record<string, unknown> = {};
  const measure = async (name: string, sides: [PairedSide, PairedSide]) => {
    console.log(`perf2: paired, ${sides[0].label} beside ${sides[1].label} ...`);
    const rounds = await pairedRounds(sides, tokens, config.pairedRounds, { count: config.pairedConnections, localAddress }, (r, { totalMs: [a, b] }) =>
      console.log(`  round ${r}: ${a.toFixed(3)} vs ${b.toFixed(3)} ms per handshake (ratio ${(b / a).toFixed(3)})`),
    );
    out[name] = rounds;
    rows.push(pairedRow(sides, rounds));
  };
  const stop = async (sides: PairedSide[]) => {
    for (const side of sides) {
      for (const node of side.nodes) await node.stop();
      await side.redis?.stop();
    }
  };

  const oneNode: [PairedSide, PairedSide] = [
    { label: LABEL.chorus, nodes: [await ServerProcess.start('chorus', UNPACED_ENV)] },
    { label: LABEL.ws, nodes: [await ServerProcess.start('ws')] },
  ];
  try {
    await measure('oneNode', oneNode);
  } finally {
    await stop(oneNode);
  }

  const withRedis = async (kind: 'chorus' | 'socketio', label: string): Promise<PairedSide> => {
    const redis: BenchRedis = await startRedis();
    const env = { BENCH_REDIS_URL: redis.url, ...(kind === 'chorus' ? UNPACED_ENV : {}) };
    return { label, redis, nodes: [await ServerProcess.start(kind, env), await ServerProcess.start(kind, env)] };
  };
  const redisPair: PairedSide[] = [];
  try {
    redisPair.push(await withRedis('chorus', `${LABEL.chorus}, 2 nodes + Redis engine`));
    redisPair.push(await withRedis('socketio', `${LABEL.socketio}, 2 nodes + redis adapter`));
    await measure('twoNodesRedis', redisPair as [PairedSide, PairedSide]);
  } finally {
    await stop(redisPair);
  }

  results.paired = out;
  printRows(
    `Paired connection rate: the two systems on core 0 at once, connections alternating between them, ${fmt(config.pairedConnections)} each per round, 200 in flight; medians of ${config.pairedRounds} rounds after a warm-up round. CPU includes each system's own redis-server. Capacity = peer's CPU / Chorus's CPU per handshake (what each admits per second on a saturated core)`,
    ['Chorus beside', 'Chorus CPU ms/handshake', 'peer CPU ms/handshake', 'Chorus capacity ÷ peer (median)', 'range over rounds', 'nodes only (no redis-server)'],
    rows,
  );
}

function pairedRow(sides: [PairedSide, PairedSide], rounds: PairedRound[]): string[] {
  const capacity = rounds.map(({ totalMs: [a, b] }) => b / a);
  const nodesOnly = rounds.map(({ nodesMs: [a, b] }) => b / a);
  return [
    sides[1].label,
    fmt(median(rounds.map((r) => r.totalMs[0])), 3),
    fmt(median(rounds.map((r) => r.totalMs[1])), 3),
    `${fmt(median(capacity), 2)}×`,
    `${fmt(Math.min(...capacity), 2)}–${fmt(Math.max(...capacity), 2)}×`,
    `${fmt(median(nodesOnly), 2)}×`,
  ];
}
