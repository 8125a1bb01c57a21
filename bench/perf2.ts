/**
 * `npm run bench:perf2`: the issue-13 scenarios, Chorus side by side with a plain ws server and
 * Socket.IO where they apply. Servers on core 0 (with Redis, both nodes and redis-server), the
 * load generator on core 1, everything on 127.0.0.x. Every loop is bounded in count and time.
 *
 *   npm run bench:perf2                          # rate, redis, paired, idle (10k), latency, storm
 *   npm run bench:perf2 -- --only=rate,latency   # a subset of: rate, redis, paired, idle, latency, storm
 *   npm run bench:perf2 -- --idle=100000         # idle connections per server (several 127.0.0.x source addresses)
 *   npm run bench:perf2 -- --servers=chorus,ws   # a subset of chorus, ws, socketio
 *   npm run bench:perf2 -- --rounds=1            # connection-rate rounds (default 3)
 *   npm run bench:perf2 -- --quick               # small counts, a smoke run
 *
 * The npm script raises `ulimit -n` (the load generator holds one descriptor per connection, each
 * server one per connection). See bench/README.md ("Performance II") and docs/PERFORMANCE.md.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { SignJWT } from 'jose';
import { afterOpen, closeAll, measureConnections, pathFor, prepareFanout, runScenario, type LoadConfig } from './fanout.js';
import { UNPACED_ENV, fmt, printRows, startRedis, type BenchRedis } from './perf2-util.js';
import { sectionPaired } from './perf2-paired.js';
import type { ServerKind } from './protocol.js';
import { LABEL } from './report.js';
import { JWT_SECRET, PIN, ServerProcess, sleep } from './server-process.js';
import { sectionStorm } from './storm.js';
import { Counters, WireClient, openMany } from './wire.js';

const argv = process.argv.slice(2);
const arg = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = argv.includes('--quick');
const SECTIONS = (arg('only') ?? 'rate,redis,paired,idle,latency,storm').split(',');
const SERVERS = ((arg('servers') ?? 'chorus,ws,socketio').split(',') as ServerKind[]).filter((k) => ['chorus', 'ws', 'socketio'].includes(k));

const CONFIG = {
  /** Connection rate: connections opened, handshakes in flight. */
  rateConnections: quick ? 1000 : 5000,
  rateConcurrency: 200,
  /** Rounds of each connection-rate measurement (fresh processes each; the table shows the fastest). */
  rateRounds: Number(arg('rounds') ?? (quick ? 1 : 3)),
  /** Connections opened and closed on each fresh server before a connection-rate measurement (`--warmup=0`: measure a cold process). */
  rateWarmup: Number(arg('warmup') ?? (quick ? 500 : 5000)),
  /** Paired connection rate (bench/paired.ts): connections per side per round, measured rounds. */
  pairedConnections: quick ? 1000 : 3000,
  pairedRounds: Number(arg('paired-rounds') ?? (quick ? 1 : 7)),
  /** Idle connections per server for memory. */
  idle: Number(arg('idle') ?? (quick ? 2000 : 10000)),
  /** Low-rate latency: subscribers, publications per second (~100 B each), seconds, rounds. */
  latencySubscribers: quick ? 200 : 1000,
  latencyRate: 50,
  latencyMs: quick ? 2000 : 4000,
  latencyRounds: quick ? 1 : 3,
  /** An unmeasured round of this many ms per server first (warm processes, as for the connection rates). */
  latencyWarmupMs: quick ? 500 : 2000,
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

const results: Record<string, unknown> = {};

/**
 * Open and close `count` connections (the same for every server) before measuring: the rate is a
 * warm node's, as in a reconnect storm on a server that has been up for a while, not the
 * optimizing compiler's first second on a fresh process.
 */
async function warmUp(servers: ServerProcess[], tokens: string[], count: number): Promise<void> {
  const kind = servers[0]!.kind;
  const counters = new Counters();
  const opened = await openMany(
    count,
    CONFIG.rateConcurrency,
    (i) => new WireClient({ port: servers[i % servers.length]!.port, path: pathFor(kind, tokens[(tokens.length - 1 - i) % tokens.length]!), counters, engineIo: kind === 'socketio', timeoutMs: 30_000, localAddress: load.localAddress!(i) }),
    load.connectDeadlineMs,
    afterOpen(kind),
  );
  for (const c of opened.clients) c.destroy();
  for (const s of servers) await s.waitFor('connections', (c) => c === 0, 15000);
}

/** Handshakes/s over one or more nodes: connections spread round-robin, 200 in flight. */
async function connectionRate(servers: ServerProcess[], tokens: string[], count: number, redis?: BenchRedis) {
  const kind = servers[0]!.kind;
  if (CONFIG.rateWarmup > 0) await warmUp(servers, tokens, CONFIG.rateWarmup);
  const counters = new Counters();
  const redisCpuBefore = redis?.cpuMs() ?? 0;
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
  const redisCpuMs = redis ? redis.cpuMs() - redisCpuBefore : 0;
  const n = opened.clients.length;
  const row = {
    connections: n,
    failed: opened.failed,
    firstError: opened.firstError,
    handshakesPerSec: (n / opened.elapsedMs) * 1000,
    serverCpuMsPerHandshake: cpuMs / Math.max(1, n),
    /** redis-server's CPU per handshake (the Redis scenario), ms. */
    redisCpuMsPerHandshake: redisCpuMs / Math.max(1, n),
  };
  for (const c of opened.clients) c.destroy();
  for (const s of servers) await s.waitFor('connections', (c) => c === 0, 15000);
  return row;
}


type RateRow = Awaited<ReturnType<typeof connectionRate>>;

/** Rounds of a connection-rate measurement, servers interleaved; the row shows the fastest round (least disturbed) and the range. */
async function rateRounds(kinds: ServerKind[], open: (kind: ServerKind) => Promise<RateRow>): Promise<Record<string, RateRow[]>> {
  const out: Record<string, RateRow[]> = {};
  for (let round = 1; round <= CONFIG.rateRounds; round++) {
    for (const kind of kinds) (out[kind] ??= []).push(await open(kind));
  }
  return out;
}

function rateRow(label: string, rounds: RateRow[], withRedis = false): string[] {
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
    ...(withRedis ? redisCells(best, rounds) : []),
  ];
}

function redisCells(best: RateRow, rounds: RateRow[]): string[] {
  const cpu = rounds.map((r) => r.redisCpuMsPerHandshake);
  return [fmt(best.redisCpuMsPerHandshake, 3), rounds.length > 1 ? `${fmt(Math.min(...cpu), 3)}–${fmt(Math.max(...cpu), 3)}` : '-'];
}

const RATE_HEADERS = ['server', 'connections', 'handshakes/s (best round)', 'range', 'server CPU ms/handshake', 'range'];

async function sectionRate(tokens: string[]) {
  const out = await rateRounds(SERVERS, async (kind) => {
    const server = await ServerProcess.start(kind, kind === 'chorus' ? UNPACED_ENV : {});
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
    const env = { BENCH_REDIS_URL: redis.url, ...(kind === 'chorus' ? UNPACED_ENV : {}) };
    const nodes = [await ServerProcess.start(kind, env), await ServerProcess.start(kind, env)];
    try {
      console.log(`perf2: connection rate, ${LABEL[kind]}, 2 nodes + Redis ...`);
      return await connectionRate(nodes, tokens, CONFIG.rateConnections, redis);
    } finally {
      for (const n of nodes) await n.stop();
      await redis.stop();
    }
  });
  results.redis = out;
  printRows(
    `Connection rate: 2 nodes + redis-server, all on one core; ${CONFIG.rateConnections} connections spread over both, ${CONFIG.rateConcurrency} in flight; ${CONFIG.rateRounds} rounds, servers interleaved (CPU: both nodes)`,
    [...RATE_HEADERS, 'redis-server CPU ms/handshake', 'range'],
    kinds.filter((k) => out[k]).map((k) => rateRow(`${LABEL[k]}${k === 'socketio' ? ' + redis adapter' : ' + Redis engine'}`, out[k]!, true)),
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
      // The same again on the same process: the first round's figures include one-time growth
      // (V8's young generation grows from ~15 to ~31 MB under the handshakes' allocation, code is
      // compiled), which a long-running node has already paid; the second is what one more
      // connection costs.
      const again = await measureConnections(server, tokens, CONFIG.idle, { ...load, concurrency: CONFIG.rateConcurrency });
      out[kind] = { ...r, connectSec, secondRound: again };
      rows.push([
        LABEL[kind],
        `${fmt(r.idle)}${r.failed ? ` (${r.failed} failed: ${r.error})` : ''}`,
        fmt(r.heapBytesPerConn / 1024, 2),
        fmt(r.rssBytesPerConn / 1024, 2),
        fmt(again.heapBytesPerConn / 1024, 2),
        fmt(again.rssBytesPerConn / 1024, 2),
        fmt(r.handshakesPerSec),
        fmt(connectSec, 1),
      ]);
    } finally {
      await server.stop();
    }
  }
  results.idle = out;
  printRows(`Idle connections: ${fmt(CONFIG.idle)} per server (authenticated; Chorus with its personal channel), after GC`, ['server', 'connections', 'heap KB/conn (fresh process)', 'RSS KB/conn (fresh process)', 'heap KB/conn (second round)', 'RSS KB/conn (second round)', 'handshakes/s', 'connect + measure s'], rows);
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
      const server = await ServerProcess.start(kind, kind === 'chorus' ? UNPACED_ENV : {});
      console.log(`perf2: ${LABEL[kind]}: ${CONFIG.latencySubscribers} subscribers ...`);
      setups.push(await prepareFanout(server, tokens, CONFIG.latencySubscribers, { ...load, concurrency: 50, localAddress: undefined }));
    }
    await sleep(300);
    const plan = { mode: 'rate' as const, rate: CONFIG.latencyRate, max: 100000, durationMs: CONFIG.latencyMs };
    // Warm every server's publish path first (V8 compiles it during the first seconds, more for
    // the server with more code), the same for all; the rounds below are measured.
    for (const setup of setups) await runScenario(setup, 'warm-up', { ...plan, durationMs: CONFIG.latencyWarmupMs }, 0, load);
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
  printRows(`Low-rate latency: ${CONFIG.latencySubscribers} subscribers x ${CONFIG.latencyRate} msg/s of ~100 B, ${CONFIG.latencyMs / 1000} s per round after a ${CONFIG.latencyWarmupMs / 1000} s warm-up round, servers interleaved; best round by p99`, ['server', 'p50 ms', 'p99 ms', 'p99 per round', 'B/delivery', 'server CPU µs/delivery', 'missing'], rows);
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
  await run('paired', () => sectionPaired(tokens, CONFIG, results));
  await run('idle', () => sectionIdle(tokens));
  await run('idle', () => sectionIdleCpu(tokens));
  await run('latency', () => sectionLatency(tokens));
  await run('storm', () => sectionStorm(tokens, CONFIG, results));
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
