/**
 * `npm run bench:perf2`: the issue-13 scenarios, Chorus side by side with a plain ws server and
 * Socket.IO where they apply. Servers on core 0 (with Redis, both nodes and redis-server), the
 * load generator on core 1, everything on 127.0.0.x. Every loop is bounded in count and time.
 *
 *   npm run bench:perf2                          # rate, redis, idle (10k), latency, storm
 *   npm run bench:perf2 -- --only=rate,latency   # a subset of: rate, redis, idle, latency, storm
 *   npm run bench:perf2 -- --idle=100000         # idle connections per server (several 127.0.0.x source addresses)
 *   npm run bench:perf2 -- --servers=chorus,ws   # a subset of chorus, ws, socketio
 *   npm run bench:perf2 -- --rounds=1            # connection-rate rounds (default 3)
 *   npm run bench:perf2 -- --quick               # small counts, a smoke run
 *
 * The npm script raises `ulimit -n` (the load generator holds one descriptor per connection, each
 * server one per connection). See bench/README.md ("Performance II") and docs/PERFORMANCE.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ChorusClient } from '../src/client/index.js';
import { afterOpen, closeAll, measureConnections, pathFor, prepareFanout, runScenario, type LoadConfig } from './fanout.js';
import type { ServerKind } from './protocol.js';
import { LABEL } from './report.js';
import { JWT_SECRET, PIN, ServerProcess, sleep } from './server-process.js';
import { Counters, LatencyRecorder, WireClient, openMany } from './wire.js';

const argv = process.argv.slice(2);
const arg = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = argv.includes('--quick');
const SECTIONS = (arg('only') ?? 'rate,redis,idle,latency,storm').split(',');
const SERVERS = ((arg('servers') ?? 'chorus,ws,socketio').split(',') as ServerKind[]).filter((k) => ['chorus', 'ws', 'socketio'].includes(k));

const CONFIG = {
  /** Connection rate: connections opened, handshakes in flight. */
  rateConnections: quick ? 1000 : 5000,
  rateConcurrency: 200,
  /** Rounds of each connection-rate measurement (fresh processes each; the table shows the fastest). */
  rateRounds: Number(arg('rounds') ?? (quick ? 1 : 3)),
  /** Idle connections per server for memory. */
  idle: Number(arg('idle') ?? (quick ? 2000 : 10000)),
  /** Low-rate latency: subscribers, publications per second (~100 B each), seconds, rounds. */
  latencySubscribers: quick ? 200 : 1000,
  latencyRate: 50,
  latencyMs: quick ? 2000 : 4000,
  latencyRounds: quick ? 1 : 3,
  /** Reconnect storm: clients on the node that dies, existing subscribers on the survivor. */
  stormClients: Number(arg('storm') ?? (quick ? 1000 : 10000)),
  stormExisting: quick ? 100 : 500,
  stormChannels: 100,
  /** Publications per second over the storm channels (each reaches ~clients/channels subscribers). */
  stormPublishRate: 20,
  /** The storm must be over (every client back and recovered) within this, ms. */
  stormDeadlineMs: 120_000,
  globalLimitMs: 30 * 60 * 1000,
};

const load: LoadConfig = {
  concurrency: CONFIG.rateConcurrency,
  connectDeadlineMs: 120_000,
  latencyEvery: 20,
  drainMs: 5000,
  // 127.0.0.1 .. 127.0.0.8 as source addresses: ~28k ephemeral ports each.
  localAddress: (i) => `127.0.0.${1 + (i % 8)}`,
};

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-';
const results: Record<string, unknown> = {};

/** A redis-server for the multi-node scenarios, pinned with the servers (core 0). */
async function startRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning', '--maxclients', '200000'];
  const child: ChildProcess = PIN ? spawn('taskset', ['-c', '0', 'redis-server', ...args], { stdio: 'ignore' }) : spawn('redis-server', args, { stdio: 'ignore' });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) break;
    await sleep(25);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGKILL');
      process.off('exit', killOnExit);
      await sleep(100);
    },
  };
}

/** Handshakes/s over one or more nodes: connections spread round-robin, 200 in flight. */
async function connectionRate(servers: ServerProcess[], tokens: string[], count: number) {
  const kind = servers[0]!.kind;
  const counters = new Counters();
  for (const s of servers) await s.request({ type: 'cpu-start' }, 'ok');
  const opened = await openMany(
    count,
    CONFIG.rateConcurrency,
    (i) =>
      new WireClient({
        port: servers[i % servers.length]!.port,
        path: pathFor(kind, tokens[i % tokens.length]!),
        counters,
        engineIo: kind === 'socketio',
        timeoutMs: 30_000,
        localAddress: load.localAddress!(i),
      }),
    load.connectDeadlineMs,
    afterOpen(kind),
  );
  let cpuMs = 0;
  for (const s of servers) cpuMs += (await s.request({ type: 'cpu-read' }, 'cpu')).cpuMs;
  const n = opened.clients.length;
  const row = { connections: n, failed: opened.failed, firstError: opened.firstError, handshakesPerSec: (n / opened.elapsedMs) * 1000, serverCpuMsPerHandshake: cpuMs / Math.max(1, n) };
  for (const c of opened.clients) c.destroy();
  for (const s of servers) await s.waitFor('connections', (c) => c === 0, 15000);
  return row;
}

function printRows(title: string, headers: string[], rows: string[][]): void {
  console.log(`\n${title}\n`);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log([line(headers), `|${widths.map((w, i) => `${'-'.repeat(w + 1)}${i === 0 ? '-' : ':'}`).join('|')}|`, ...rows.map(line)].join('\n'));
}

/** Unpaced admission for the capacity measurements: they measure what a node can do, not the knob. */
const UNPACED = { BENCH_CHORUS_OPTIONS: JSON.stringify({ admission: { ratePerSecond: 0, maxPending: 0 } }) };

type RateRow = Awaited<ReturnType<typeof connectionRate>>;

/** Rounds of a connection-rate measurement, servers interleaved; the row shows the fastest round (least disturbed) and the range. */
async function rateRounds(kinds: ServerKind[], open: (kind: ServerKind) => Promise<RateRow>): Promise<Record<string, RateRow[]>> {
  const out: Record<string, RateRow[]> = {};
  for (let round = 1; round <= CONFIG.rateRounds; round++) {
    for (const kind of kinds) (out[kind] ??= []).push(await open(kind));
  }
  return out;
}

function rateRow(label: string, rounds: RateRow[]): string[] {
  const best = rounds.reduce((b, r) => (r.handshakesPerSec > b.handshakesPerSec ? r : b));
  const rates = rounds.map((r) => r.handshakesPerSec);
  const cpu = rounds.map((r) => r.serverCpuMsPerHandshake);
  return [
    label,
    `${fmt(best.connections)}${best.failed ? ` (${best.failed} failed: ${best.firstError})` : ''}`,
    fmt(best.handshakesPerSec),
    rounds.length > 1 ? `${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))}` : '-',
    fmt(best.serverCpuMsPerHandshake, 3),
    rounds.length > 1 ? `${fmt(Math.min(...cpu), 3)}–${fmt(Math.max(...cpu), 3)}` : '-',
  ];
}

const RATE_HEADERS = ['server', 'connections', 'handshakes/s (best round)', 'range', 'server CPU ms/handshake', 'range'];

async function sectionRate(tokens: string[]) {
  const out = await rateRounds(SERVERS, async (kind) => {
    const server = await ServerProcess.start(kind, kind === 'chorus' ? UNPACED : {});
    try {
      console.log(`perf2: connection rate, ${LABEL[kind]}, one node ...`);
      return await connectionRate([server], tokens, CONFIG.rateConnections);
    } finally {
      await server.stop();
    }
  });
  results.rate = out;
  printRows(
    `Connection rate: ${CONFIG.rateConnections} connections, ${CONFIG.rateConcurrency} in flight, JWT (Chorus), one node; ${CONFIG.rateRounds} rounds, servers interleaved`,
    RATE_HEADERS,
    SERVERS.filter((k) => out[k]).map((k) => rateRow(LABEL[k], out[k]!)),
  );
}

async function sectionRedis(tokens: string[]) {
  const kinds = SERVERS.filter((k) => k !== 'ws');
  const out = await rateRounds(kinds, async (kind) => {
    const redis = await startRedis();
    const env = { BENCH_REDIS_URL: redis.url, ...(kind === 'chorus' ? UNPACED : {}) };
    const nodes = [await ServerProcess.start(kind, env), await ServerProcess.start(kind, env)];
    try {
      console.log(`perf2: connection rate, ${LABEL[kind]}, 2 nodes + Redis ...`);
      return await connectionRate(nodes, tokens, CONFIG.rateConnections);
    } finally {
      for (const n of nodes) await n.stop();
      await redis.stop();
    }
  });
  results.redis = out;
  printRows(
    `Connection rate: 2 nodes + redis-server, all on one core; ${CONFIG.rateConnections} connections spread over both, ${CONFIG.rateConcurrency} in flight; ${CONFIG.rateRounds} rounds, servers interleaved (CPU: both nodes)`,
    RATE_HEADERS,
    kinds.filter((k) => out[k]).map((k) => rateRow(`${LABEL[k]}${k === 'socketio' ? ' + redis adapter' : ' + Redis engine'}`, out[k]!)),
  );
}

async function sectionIdle(tokens: string[]) {
  const rows: string[][] = [];
  const out: Record<string, unknown> = {};
  for (const kind of SERVERS) {
    // Default heartbeat (30 s) for Chorus: the idle CPU below includes its pings.
    const env: Record<string, string> = kind === 'chorus' ? { BENCH_CHORUS_OPTIONS: JSON.stringify({ admission: { ratePerSecond: 0, maxPending: 0 }, heartbeat: { intervalMs: 30000, timeoutMs: 90000 } }) } : {};
    const server = await ServerProcess.start(kind, env);
    try {
      console.log(`perf2: ${fmt(CONFIG.idle)} idle connections, ${LABEL[kind]} ...`);
      const started = performance.now();
      const r = await measureConnections(server, tokens, CONFIG.idle, { ...load, concurrency: CONFIG.rateConcurrency });
      const connectSec = (performance.now() - started) / 1000;
      out[kind] = { ...r, connectSec };
      rows.push([
        LABEL[kind],
        `${fmt(r.idle)}${r.failed ? ` (${r.failed} failed: ${r.error})` : ''}`,
        fmt(r.heapBytesPerConn / 1024, 2),
        fmt(r.rssBytesPerConn / 1024, 2),
        fmt(r.handshakesPerSec),
        fmt(connectSec, 1),
      ]);
    } finally {
      await server.stop();
    }
  }
  results.idle = out;
  printRows(`Idle connections: ${fmt(CONFIG.idle)} per server (authenticated; Chorus with its personal channel), after GC`, ['server', 'connections', 'heap KB/conn', 'RSS KB/conn', 'handshakes/s', 'connect + measure s'], rows);
}

async function sectionIdleCpu(tokens: string[]) {
  // CPU spent on heartbeats: Chorus with CONFIG.idle connections and a 5 s heartbeat, 15 s idle.
  if (!SERVERS.includes('chorus')) return;
  const server = await ServerProcess.start('chorus', { BENCH_CHORUS_OPTIONS: JSON.stringify({ admission: { ratePerSecond: 0, maxPending: 0 }, heartbeat: { intervalMs: 5000, timeoutMs: 15000 } }) });
  try {
    const counters = new Counters();
    const opened = await openMany(CONFIG.idle, CONFIG.rateConcurrency, (i) => new WireClient({ port: server.port, path: pathFor('chorus', tokens[i % tokens.length]!), counters, timeoutMs: 30_000, localAddress: load.localAddress!(i) }), load.connectDeadlineMs);
    await sleep(1000);
    await server.request({ type: 'cpu-start' }, 'ok');
    const idleMs = quick ? 6000 : 15000;
    await sleep(idleMs);
    const cpu = await server.request({ type: 'cpu-read' }, 'cpu');
    const pings = Math.floor(idleMs / 5000) * opened.clients.length;
    const still = (await server.stats()).connections;
    results.heartbeatCpu = { connections: opened.clients.length, idleMs, cpuMs: cpu.cpuMs, pings, stillConnected: still };
    console.log(`\nHeartbeat CPU: ${fmt(opened.clients.length)} idle Chorus connections, ping every 5 s, ${idleMs / 1000} s: ${fmt(cpu.cpuMs)} ms CPU (${fmt((cpu.cpuMs / idleMs) * 100, 1)}% of a core; ~${fmt((cpu.cpuMs * 1000) / Math.max(1, pings), 1)} µs per ping incl. pong), ${fmt(still)} still connected`);
    await closeAll(server, opened.clients);
  } finally {
    await server.stop();
  }
}

async function sectionLatency(tokens: string[]) {
  const setups = [];
  const out: Record<string, unknown[]> = {};
  try {
    for (const kind of SERVERS) {
      const server = await ServerProcess.start(kind, kind === 'chorus' ? UNPACED : {});
      console.log(`perf2: ${LABEL[kind]}: ${CONFIG.latencySubscribers} subscribers ...`);
      setups.push(await prepareFanout(server, tokens, CONFIG.latencySubscribers, { ...load, concurrency: 50, localAddress: undefined }));
    }
    await sleep(300);
    const plan = { mode: 'rate' as const, rate: CONFIG.latencyRate, max: 100000, durationMs: CONFIG.latencyMs };
    for (let round = 1; round <= CONFIG.latencyRounds; round++) {
      for (const setup of setups) {
        const r = await runScenario(setup, `${CONFIG.latencyRate} pubs/s`, plan, round, load);
        (out[setup.server.kind] ??= []).push(r);
      }
    }
  } finally {
    for (const setup of setups) {
      await closeAll(setup.server, setup.clients).catch(() => {});
      await setup.server.stop();
    }
  }
  results.latency = out;
  const rows = SERVERS.flatMap((kind) => {
    const rounds = (out[kind] ?? []) as Array<{ latencyMs: { p50: number; p99: number }; deliveries: number; expected: number; serverCpuUsPerDelivery: number; bytesPerDelivery: number }>;
    if (rounds.length === 0) return [];
    const best = rounds.reduce((b, r) => (r.latencyMs.p99 < b.latencyMs.p99 ? r : b));
    return [[LABEL[kind], fmt(best.latencyMs.p50, 1), fmt(best.latencyMs.p99, 1), rounds.map((r) => fmt(r.latencyMs.p99, 1)).join(' / '), fmt(best.bytesPerDelivery), fmt(best.serverCpuUsPerDelivery, 2), fmt(best.expected - best.deliveries)]];
  });
  printRows(`Low-rate latency: ${CONFIG.latencySubscribers} subscribers x ${CONFIG.latencyRate} msg/s of ~100 B, ${CONFIG.latencyMs / 1000} s per round, servers interleaved; best round by p99`, ['server', 'p50 ms', 'p99 ms', 'p99 per round', 'B/delivery', 'server CPU µs/delivery', 'missing'], rows);
}

async function sectionStorm(tokens: string[]) {
  const redis = await startRedis();
  // Default admission (the knob under test); a 5 s heartbeat so the dead node's sockets are not what is measured.
  const env = { BENCH_REDIS_URL: redis.url };
  const a = await ServerProcess.start('chorus', env);
  const b = await ServerProcess.start('chorus', env);
  const clients: ChorusClient[] = [];
  let existing: WireClient[] = [];
  try {
    // The survivor's existing clients: subscribers of the fan-out channel, latency sampled.
    const counters = new Counters();
    const latency = new LatencyRecorder();
    const opened = await openMany(CONFIG.stormExisting, 50, (i) => new WireClient({ port: b.port, path: pathFor('chorus', tokens[tokens.length - 1 - i]!), counters, latency }), 30_000);
    existing = opened.clients;
    for (const c of existing) c.sendText(JSON.stringify({ event: 'subscribe', data: { channel: 'bench:fanout' } }));
    await b.waitFor('subscribers', (n) => n >= existing.length);

    // The storm's clients: the real Chorus client, through a "load balancer" that sends every new
    // socket to node A until it dies, then to B.
    let target = a.port;
    let source = 0;
    const Balanced = function (url: string) {
      return new WebSocket(url.replace(/:\d+\//, `:${target}/`), { localAddress: load.localAddress!(source++) });
    } as unknown as typeof WebSocket;
    const stats = { paced503: 0, otherErrors: 0, connectTimeouts: 0, connected: 0, recoveredTrue: 0, recoveredFalse: 0, lost: 0 };
    let phase: 'setup' | 'storm' = 'setup';
    const back = new Set<number>();
    const subscribed = new Set<number>();
    const stormStartedAt = { t: 0 };
    let lastBackAt = 0;
    console.log(`perf2: storm: connecting ${fmt(CONFIG.stormClients)} Chorus clients to node A ...`);
    for (let i = 0; i < CONFIG.stormClients; i++) {
      const client = new ChorusClient({ url: `ws://127.0.0.1:${a.port}/ws`, WebSocket: Balanced as never, token: tokens[i]!, minReconnectDelayMs: 500, maxReconnectDelayMs: 10_000 });
      client.on('error', (err) => {
        if (/Unexpected server response: 503/.test(err.message)) stats.paced503++;
        else if (phase === 'storm') stats.otherErrors++;
      });
      client.on('disconnected', (d) => {
        if (phase === 'storm' && d.code === 3001) stats.connectTimeouts++;
      });
      client.on('connected', () => {
        if (phase === 'storm') {
          back.add(i);
          lastBackAt = performance.now();
        } else stats.connected++;
      });
      const sub = client.subscribe(`storm:c${i % CONFIG.stormChannels}`);
      sub.on('subscribed', (r: { recovered?: boolean }) => {
        if (phase === 'setup') {
          subscribed.add(i);
          return;
        }
        if (r.recovered === true) stats.recoveredTrue++;
        else if (r.recovered === false) stats.recoveredFalse++;
      });
      clients.push(client);
      client.connect();
      // At most ~200 handshakes in flight while setting up.
      while (clients.length - subscribed.size > 200) await sleep(5);
    }
    const setupDeadline = performance.now() + 120_000;
    while (subscribed.size < CONFIG.stormClients && performance.now() < setupDeadline) await sleep(50);
    const beforeSetup503 = stats.paced503;
    console.log(`perf2: storm: ${fmt(subscribed.size)} subscribed on A (${fmt(beforeSetup503)} paced 503s while connecting); publishing, then SIGKILL A ...`);

    // Publications: the storm channels (so there is something to recover) and the survivor's fan-out channel.
    const stormChannels = Array.from({ length: CONFIG.stormChannels }, (_, i) => `storm:c${i}`);
    b.send({ type: 'publish', plan: { mode: 'rate', rate: CONFIG.stormPublishRate, max: 1_000_000, durationMs: CONFIG.stormDeadlineMs + 10_000, channels: stormChannels } });
    b.send({ type: 'publish', plan: { mode: 'rate', rate: 20, max: 1_000_000, durationMs: CONFIG.stormDeadlineMs + 10_000 } });
    await sleep(500);
    latency.reset();
    await b.request({ type: 'lag-start' }, 'ok');
    await sleep(3000);
    const baselineLag = await b.request({ type: 'lag-read' }, 'lag');
    const [base50, base99] = latency.percentiles([50, 99]);
    const baselineSamples = latency.count;

    latency.reset();
    stats.paced503 = 0;
    // The load generator's own lag: if it is high, the client-side figures are the load's, not the server's.
    const loadLag = monitorEventLoopDelay({ resolution: 10 });
    loadLag.enable();
    await b.request({ type: 'lag-start' }, 'ok');
    await b.request({ type: 'cpu-start' }, 'ok');
    phase = 'storm';
    target = b.port;
    stormStartedAt.t = performance.now();
    await a.kill();
    const deadline = stormStartedAt.t + CONFIG.stormDeadlineMs;
    while ((back.size < CONFIG.stormClients || stats.recoveredTrue + stats.recoveredFalse < CONFIG.stormClients) && performance.now() < deadline) await sleep(50);
    const stormMs = (lastBackAt || performance.now()) - stormStartedAt.t;
    const lag = await b.request({ type: 'lag-read' }, 'lag');
    const cpu = await b.request({ type: 'cpu-read' }, 'cpu');
    loadLag.disable();
    const loadLagMs = { p99: loadLag.percentile(99) / 1e6, max: loadLag.max / 1e6 };
    const [storm50, storm99, stormMax] = latency.percentiles([50, 99, 100]);
    const out = {
      clients: CONFIG.stormClients,
      existingOnSurvivor: existing.length,
      back: back.size,
      recovered: stats.recoveredTrue,
      notRecovered: stats.recoveredFalse,
      paced503: stats.paced503,
      connectTimeouts: stats.connectTimeouts,
      otherErrors: stats.otherErrors,
      allBackMs: stormMs,
      survivorCpuPct: (cpu.cpuMs / Math.max(1, performance.now() - stormStartedAt.t)) * 100,
      survivorLag: { baseline: baselineLag, storm: lag },
      existingClientsLatencyMs: { baseline: { p50: base50, p99: base99, samples: baselineSamples }, storm: { p50: storm50, p99: storm99, max: stormMax, samples: latency.count } },
      closedExisting: counters.closed,
      loadGeneratorLagMs: loadLagMs,
    };
    results.storm = out;
    console.log(`\nReconnect storm: ${fmt(out.clients)} Chorus clients on node A of 2 (Redis, default admission), ${out.existingOnSurvivor} existing subscribers on B at 20 msg/s; SIGKILL A`);
    printRows('', ['figure', 'value'], [
      ['clients back on B (connected)', `${fmt(out.back)} / ${fmt(out.clients)}`],
      ['subscriptions recovered (recovered: true) / not', `${fmt(out.recovered)} / ${fmt(out.notRecovered)}`],
      ['time until the last client was back, s', fmt(out.allBackMs / 1000, 1)],
      ['handshakes answered 503 + Retry-After', fmt(out.paced503)],
      ['client handshake timeouts (3001)', fmt(out.connectTimeouts)],
      ['other client errors', fmt(out.otherErrors)],
      ['survivor event-loop lag p99 / max ms: before', `${fmt(baselineLag.p99Ms, 1)} / ${fmt(baselineLag.maxMs, 1)}`],
      ['survivor event-loop lag p99 / max ms: storm', `${fmt(lag.p99Ms, 1)} / ${fmt(lag.maxMs, 1)}`],
      ['existing clients p50 / p99 ms: before', `${fmt(base50!, 1)} / ${fmt(base99!, 1)}`],
      ['existing clients p50 / p99 / max ms: storm', `${fmt(storm50!, 1)} / ${fmt(storm99!, 1)} / ${fmt(stormMax!, 1)}`],
      ['survivor CPU % during the storm', fmt(out.survivorCpuPct)],
      ['existing clients disconnected', fmt(out.closedExisting)],
      ['load generator event-loop lag p99 / max ms (storm)', `${fmt(loadLagMs.p99, 1)} / ${fmt(loadLagMs.max, 1)}`],
    ]);
  } finally {
    for (const c of clients) c.close();
    for (const c of existing) c.destroy();
    await a.stop();
    await b.stop();
    await redis.stop();
  }
}

async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    console.error(`perf2: over the ${CONFIG.globalLimitMs / 60000} min limit, giving up`);
    process.exit(1);
  }, CONFIG.globalLimitMs);
  watchdog.unref();
  const key = new TextEncoder().encode(JWT_SECRET);
  const count = Math.max(CONFIG.rateConnections, Math.min(CONFIG.idle, 20000), CONFIG.stormClients + CONFIG.stormExisting, CONFIG.latencySubscribers);
  const tokens = await Promise.all(
    Array.from({ length: count }, (_, i) => new SignJWT({ name: `bench ${i}` }).setProtectedHeader({ alg: 'HS256' }).setSubject(`u${i}`).setExpirationTime('2h').sign(key)),
  );
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    pinned: PIN ? 'servers (and redis-server) on core 0, load on core 1' : 'not pinned',
    loadAverage: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
  console.log(`perf2: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}, ${machine.pinned}${quick ? ', QUICK' : ''}; sections ${SECTIONS.join(', ')}`);
  const run = async (name: string, fn: () => Promise<void>) => {
    if (!SECTIONS.includes(name)) return;
    try {
      await fn();
    } catch (err) {
      console.error(`perf2: ${name} failed:`, err);
      results[`${name}Error`] = String(err);
    }
  };
  await run('rate', () => sectionRate(tokens));
  await run('redis', () => sectionRedis(tokens));
  await run('idle', () => sectionIdle(tokens));
  await run('idle', () => sectionIdleCpu(tokens));
  await run('latency', () => sectionLatency(tokens));
  await run('storm', () => sectionStorm(tokens));
  const after = os.loadavg().map((l) => Number(l.toFixed(2)));
  console.log(`\nload average (1/5/15 min) before: ${machine.loadAverage.join(' ')}, after: ${after.join(' ')}`);
  writeFileSync(new URL('results-perf2.json', import.meta.url), `${JSON.stringify({ date: new Date().toISOString(), quick, machine: { ...machine, loadAverageAfter: after }, config: CONFIG, results }, null, 2)}\n`);
  console.log('perf2: wrote bench/results-perf2.json');
  clearTimeout(watchdog);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
