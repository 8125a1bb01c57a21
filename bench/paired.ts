/**
 * Paired measurement of server CPU per handshake: two systems (two Chorus builds, or Chorus and a
 * peer) run side by side on the same core while the load generator alternates connections
 * between them, so both see the same machine at the same moment. On a shared machine separate
 * runs of one server differ by 20% or more; within a pair that noise cancels out, and the ratio
 * of CPU per handshake is the ratio of what each system can admit on a saturated core.
 *
 * Used by bench/ab.ts (two builds) and bench/perf2.ts's `paired` section (Chorus beside ws, and
 * beside Socket.IO with Redis).
 */
import { afterOpen, pathFor } from './fanout.js';
import type { BenchRedis } from './perf2-util.js';
import type { ServerProcess } from './server-process.js';
import { Counters, WireClient, openMany } from './wire.js';

/** One system under test: its nodes (one, or several on one engine) and, with Redis, its redis-server. */
export interface PairedSide {
  label: string;
  nodes: ServerProcess[];
  /** Its own redis-server, whose CPU counts towards the side's (all on the same core). */
  redis?: BenchRedis;
}

/** One measured round: CPU per handshake of each side, ms. */
export interface PairedRound {
  /** Nodes only. */
  nodesMs: [number, number];
  /** Nodes plus their redis-server (the same as nodesMs without Redis). */
  totalMs: [number, number];
}

export interface PairedOptions {
  /** Connections opened on each side per round (the two sides alternate). */
  count: number;
  /** Handshakes in flight at once (both sides together). */
  concurrency?: number;
  /** Source address of connection i (several 127.0.0.x for many connections). */
  localAddress?: (i: number) => string;
  /** Time limit for one round's connections, ms. */
  deadlineMs?: number;
}

/**
 * Open `count` connections on each side, alternating (connection i goes to side i % 2, and to
 * that side's nodes in turn), wait until every node counts them, and return the CPU each side
 * used per handshake. With `measure` false it only warms both up.
 */
export async function pairedRound(sides: [PairedSide, PairedSide], tokens: string[], options: PairedOptions, measure = true): Promise<PairedRound> {
  const { count, concurrency = 200, deadlineMs = 120_000 } = options;
  const all = [...sides[0].nodes, ...sides[1].nodes];
  if (measure) for (const s of all) await s.request({ type: 'cpu-start' }, 'ok');
  const redisBefore = sides.map((side) => side.redis?.cpuMs() ?? 0);
  const perNode = new Map<ServerProcess, number>();
  const nodeOf = new Map<WireClient, ServerProcess>();
  const counters = new Counters();
  const opened = await openMany(
    count * 2,
    concurrency,
    (i) => {
      const side = sides[i % 2]!;
      const node = side.nodes[Math.floor(i / 2) % side.nodes.length]!;
      perNode.set(node, (perNode.get(node) ?? 0) + 1);
      const client = new WireClient({
        port: node.port,
        path: pathFor(node.kind, tokens[i % tokens.length]!),
        counters,
        engineIo: node.kind === 'socketio',
        timeoutMs: 30_000,
        ...(options.localAddress ? { localAddress: options.localAddress(i) } : {}),
      });
      nodeOf.set(client, node);
      return client;
    },
    deadlineMs,
    (client) => {
      // Socket.IO has a socket only after the namespace connect; the other servers need nothing.
      const node = nodeOf.get(client);
      if (node) afterOpen(node.kind)?.(client);
    },
  );
  if (opened.failed > 0) throw new Error(`${opened.failed} connections failed: ${opened.firstError}`);
  // Every node has finished its part of the handshakes (Socket.IO's namespace connect included).
  for (const [node, n] of perNode) await node.waitFor('connections', (c) => c >= n, 20_000);
  const nodesMs: [number, number] = [0, 0];
  const totalMs: [number, number] = [0, 0];
  if (measure) {
    for (let s = 0; s < 2; s++) {
      const side = sides[s]!;
      let cpu = 0;
      for (const node of side.nodes) cpu += (await node.request({ type: 'cpu-read' }, 'cpu')).cpuMs;
      nodesMs[s] = cpu / count;
      totalMs[s] = (cpu + (side.redis ? side.redis.cpuMs() - redisBefore[s]! : 0)) / count;
    }
  }
  for (const c of opened.clients) c.destroy();
  for (const s of all) await s.waitFor('connections', (n) => n === 0, 15_000);
  return { nodesMs, totalMs };
}

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A warm-up round, then `rounds` measured rounds; `onRound` sees each as it ends. */
export async function pairedRounds(
  sides: [PairedSide, PairedSide],
  tokens: string[],
  rounds: number,
  options: PairedOptions,
  onRound?: (round: number, result: PairedRound) => void,
): Promise<PairedRound[]> {
  await pairedRound(sides, tokens, options, false);
  const out: PairedRound[] = [];
  for (let r = 1; r <= rounds; r++) {
    const result = await pairedRound(sides, tokens, options);
    out.push(result);
    onRound?.(r, result);
  }
  return out;
}
