/** Connections and fan-out scenarios shared by bench/run.ts and bench/perf2.ts. Every loop is bounded in count and time. */
import { Counters, LatencyRecorder, WireClient, nowMs, openMany } from './wire.js';
import { BENCH_CHANNEL, type PublishPlan, type ServerKind } from './protocol.js';
import { ServerProcess, sleep } from './server-process.js';
import type { ConnectResult, FanoutResult } from './report.js';

/** How the load generator opens connections and waits. */
export interface LoadConfig {
  /** Handshakes in flight at once. */
  concurrency: number;
  /** Time limit for opening a batch of connections, ms. */
  connectDeadlineMs: number;
  /** One in this many subscribers records latency. */
  latencyEvery: number;
  /** After the publisher stops, wait at most this long for outstanding deliveries, ms. */
  drainMs: number;
  /** Source address of connection i (several 127.0.0.x for more than ~28k connections). */
  localAddress?: (i: number) => string;
}

export function pathFor(kind: ServerKind, token: string): string {
  if (kind === 'chorus') return `/ws?token=${token}`;
  if (kind === 'socketio') return '/socket.io/?EIO=4&transport=websocket';
  return '/';
}

/** Socket.IO needs a namespace connect ("40") before it has a socket. */
export function afterOpen(kind: ServerKind): ((c: WireClient) => void) | undefined {
  return kind === 'socketio' ? (c) => c.sendText('40') : undefined;
}

export const SUBSCRIBE: Record<ServerKind, string> = {
  chorus: JSON.stringify({ event: 'subscribe', data: { channel: BENCH_CHANNEL } }),
  ws: 'subscribe',
  socketio: '42["sub"]',
};

export async function closeAll(server: ServerProcess, clients: WireClient[]): Promise<void> {
  for (const c of clients) c.destroy();
  await server.waitFor('connections', (n) => n === 0, 15000);
}

export async function measureConnections(server: ServerProcess, tokens: string[], count: number, config: LoadConfig): Promise<ConnectResult> {
  const kind = server.kind;
  const counters = new Counters();
  const before = await server.request({ type: 'memory' }, 'memory');
  await server.request({ type: 'cpu-start' }, 'ok');
  const opened = await openMany(
    count,
    config.concurrency,
    (i) => new WireClient({ port: server.port, path: pathFor(kind, tokens[i % tokens.length]!), counters, engineIo: kind === 'socketio', ...(config.localAddress ? { localAddress: config.localAddress(i) } : {}) }),
    config.connectDeadlineMs,
    afterOpen(kind),
  );
  const cpu = await server.request({ type: 'cpu-read' }, 'cpu');
  const n = opened.clients.length;
  await server.waitFor('connections', (c) => c >= n, 10000);
  await sleep(500); // let per-connection set-up (Chorus: personal channel) settle
  const after = await server.request({ type: 'memory' }, 'memory', 20000);
  await closeAll(server, opened.clients);
  return {
    idle: n,
    failed: opened.failed,
    handshakesPerSec: (n / opened.elapsedMs) * 1000,
    serverCpuMsPerHandshake: cpu.cpuMs / Math.max(1, n),
    heapBytesPerConn: (after.heapUsed - before.heapUsed) / Math.max(1, n),
    rssBytesPerConn: (after.rss - before.rss) / Math.max(1, n),
    ...(opened.firstError ? { error: opened.firstError } : {}),
  };
}

/** Subscribers connected to one server, ready for fan-out scenarios. */
export interface FanoutSetup {
  server: ServerProcess;
  clients: WireClient[];
  counters: Counters;
  latency: LatencyRecorder;
  subscribers: number;
}

export async function prepareFanout(server: ServerProcess, tokens: string[], count: number, config: LoadConfig): Promise<FanoutSetup> {
  const kind = server.kind;
  const counters = new Counters();
  const latency = new LatencyRecorder();
  const opened = await openMany(
    count,
    config.concurrency,
    (i) =>
      new WireClient({
        port: server.port,
        path: pathFor(kind, tokens[i]!),
        counters,
        engineIo: kind === 'socketio',
        ...(i % config.latencyEvery === 0 ? { latency } : {}),
      }),
    config.connectDeadlineMs,
    afterOpen(kind),
  );
  const clients = opened.clients;
  if (opened.failed > 0) console.warn(`  ${kind}: ${opened.failed} subscriber connections failed (${opened.firstError})`);
  await server.waitFor('connections', (c) => c >= clients.length);
  for (const c of clients) c.sendText(SUBSCRIBE[kind]);
  const subscribers = await server.waitFor('subscribers', (s) => s >= clients.length);
  if (subscribers < clients.length) console.warn(`  ${kind}: only ${subscribers}/${clients.length} subscribed`);
  return { server, clients, counters, latency, subscribers };
}

export async function runScenario(setup: FanoutSetup, name: string, plan: PublishPlan, round: number, config: LoadConfig): Promise<FanoutResult> {
  const { server, counters, latency, subscribers } = setup;
  counters.reset();
  latency.reset();
  const closedBefore = counters.closed;
  let lastChunkAt = nowMs();
  let lastCredit = plan.mode === 'window' ? plan.window : 0;
  const creditStep = plan.mode === 'window' ? Math.max(1, Math.floor(plan.window / 8)) : 0;
  counters.onChunk = () => {
    lastChunkAt = nowMs();
    if (plan.mode !== 'window') return;
    // Credit: publications fully delivered (on average over subscribers) + the window.
    const upTo = Math.floor(counters.deliveries / subscribers) + plan.window;
    if (upTo >= lastCredit + creditStep) {
      lastCredit = upTo;
      server.send({ type: 'credit', upTo });
    }
  };
  await server.request({ type: 'cpu-start' }, 'ok');
  const loadCpu = process.cpuUsage();
  const started = nowMs();
  const published = await server.request({ type: 'publish', plan }, 'published', plan.durationMs + 10000);
  const expected = published.count * subscribers;
  const drainStart = performance.now();
  while (counters.deliveries < expected && performance.now() - drainStart < config.drainMs) await sleep(5);
  counters.onChunk = undefined;
  const elapsedMs = lastChunkAt - started;
  const serverCpu = await server.request({ type: 'cpu-read' }, 'cpu');
  const load = process.cpuUsage(loadCpu);
  const wallMs = nowMs() - started;
  const [p50, p99, max] = latency.percentiles([50, 99, 100]);
  await sleep(200);
  return {
    scenario: name,
    round,
    subscribers,
    publications: published.count,
    deliveries: counters.deliveries,
    expected,
    elapsedMs,
    publishMs: published.elapsedMs,
    deliveriesPerSec: (counters.deliveries / elapsedMs) * 1000,
    serverCpuUsPerDelivery: (serverCpu.cpuMs * 1000) / Math.max(1, counters.deliveries),
    loadCpuUsPerDelivery: (load.user + load.system) / Math.max(1, counters.deliveries),
    latencyMs: { p50: p50!, p99: p99!, max: max!, samples: latency.count },
    bytesPerDelivery: counters.bytes / Math.max(1, counters.deliveries),
    deliveriesPerMessage: counters.deliveries / Math.max(1, counters.messages),
    serverCpuPct: (serverCpu.cpuMs / wallMs) * 100,
    loadCpuPct: ((load.user + load.system) / 1000 / wallMs) * 100,
    stalledPct: (published.stalledMs / Math.max(1, published.elapsedMs)) * 100,
    closedConnections: counters.closed - closedBefore,
  };
}

