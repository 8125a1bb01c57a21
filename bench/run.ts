/**
 * `npm run bench`: Chorus vs a plain ws broadcast server vs Socket.IO, side by side, in one run.
 * See bench/README.md for the method. Every loop is bounded in count and time.
 *
 *   npm run bench                       # the full run (about 2 minutes on 2 cores)
 *   npm run bench -- --quick            # a short smoke run while developing
 *   npm run bench -- --only=chorus,ws   # a subset of servers
 *   npm run bench -- --no-idle          # skip the idle-connection (memory, connection rate) part
 *   npm run bench -- --no-fanout        # only the idle-connection part
 *   npm run bench -- --rounds=1         # fan-out rounds (default 3; the table shows the fastest)
 *   npm run bench -- --scenario=fixed   # only fan-out scenarios whose name contains this
 *   BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" npm run bench -- --only=chorus   # profile the server
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { SignJWT } from 'jose';
import { type PublishPlan, type ServerKind } from './protocol.js';
import { JWT_SECRET, PIN, ServerProcess, sleep } from './server-process.js';
import { LABEL, bestRound, printConnect, printFanout, type ConnectResult, type FanoutResult } from './report.js';
import { closeAll, measureConnections, prepareFanout, runScenario, type FanoutSetup } from './fanout.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const only = argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',') as ServerKind[] | undefined;
const skipIdle = argv.includes('--no-idle');
const skipFanout = argv.includes('--no-fanout');
const scenarioFilter = argv.find((a) => a.startsWith('--scenario='))?.slice('--scenario='.length);
const KINDS: ServerKind[] = (only ?? ['chorus', 'ws', 'socketio']).filter((k) => ['chorus', 'ws', 'socketio'].includes(k));

const CONFIG = {
  /** Subscribers of the one fan-out channel. */
  subscribers: quick ? 200 : 1000,
  /** One in this many subscribers records latency (keeps the load generator cheap). */
  latencyEvery: 20,
  /** Idle connections for the memory measurement (also timed: connection rate). */
  idle: quick ? 300 : 2000,
  /** Handshakes in flight at once. */
  concurrency: 50,
  /** Time limit for opening a batch of connections, ms. */
  connectDeadlineMs: 20000,
  /** Each fan-out scenario runs this many rounds, servers interleaved; the table shows the fastest round. */
  rounds: Number(argv.find((a) => a.startsWith('--rounds='))?.slice('--rounds='.length) ?? (quick ? 1 : 3)) || 1,
  /** After the publisher stops, wait at most this long for outstanding deliveries, ms. */
  drainMs: 5000,
  scenarios: [
    {
      name: 'saturate, 1 pub/turn',
      plan: { mode: 'window', window: 64, burst: 1, max: 100000, durationMs: quick ? 1500 : 3000 },
    },
    {
      name: 'saturate, 10 pubs/turn',
      plan: { mode: 'window', window: 64, burst: 10, max: 100000, durationMs: quick ? 1500 : 3000 },
    },
    {
      name: 'fixed 20 pubs/s',
      plan: { mode: 'rate', rate: 20, max: 1000, durationMs: quick ? 1500 : 3000 },
    },
  ] satisfies Array<{ name: string; plan: PublishPlan }>,
  /** The whole run is abandoned after this long (nothing should come close), ms. */
  globalLimitMs: 6 * 60 * 1000,
};


async function main(): Promise<void> {
  const watchdog = setTimeout(() => {
    console.error(`bench: over the ${CONFIG.globalLimitMs / 1000} s limit, giving up`);
    process.exit(1);
  }, CONFIG.globalLimitMs);
  watchdog.unref();

  const key = new TextEncoder().encode(JWT_SECRET);
  const count = Math.max(CONFIG.idle, CONFIG.subscribers);
  const tokens = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      new SignJWT({ name: `bench ${i}` }).setProtectedHeader({ alg: 'HS256' }).setSubject(`u${i}`).setExpirationTime('1h').sign(key),
    ),
  );

  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    pinned: PIN ? 'server on core 0, load on core 1 (taskset)' : 'not pinned',
    loadAverage: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
  console.log(`bench: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}, ${machine.pinned}${quick ? ', QUICK' : ''}`);

  const connect: Partial<Record<ServerKind, ConnectResult>> = {};
  const fanout: Partial<Record<ServerKind, FanoutResult[]>> = {};
  const rounds: Partial<Record<ServerKind, FanoutResult[]>> = {};

  // 1. Idle connections: a fresh server process per server, one after another.
  if (!skipIdle) {
    for (const kind of KINDS) {
      const server = await ServerProcess.start(kind);
      try {
        console.log(`bench: ${LABEL[kind]}: ${CONFIG.idle} idle connections ...`);
        connect[kind] = await measureConnections(server, tokens, CONFIG.idle, CONFIG);
      } catch (err) {
        console.error(`bench: ${kind} idle connections failed:`, err);
      } finally {
        await server.stop();
      }
    }
  }

  // 2. Fan-out: all servers up at once (each on core 0, idle unless driven), subscribers connected
  //    to each; rounds interleave the servers so that other load on the machine hits them alike.
  if (!skipFanout) {
    const setups: FanoutSetup[] = [];
    try {
      for (const kind of KINDS) {
        const server = await ServerProcess.start(kind);
        console.log(`bench: ${LABEL[kind]}: connecting ${CONFIG.subscribers} subscribers ...`);
        setups.push(await prepareFanout(server, tokens, CONFIG.subscribers, CONFIG));
      }
      await sleep(300);
      const scenarios = CONFIG.scenarios.filter((s) => !scenarioFilter || s.name.includes(scenarioFilter));
      for (let round = 1; round <= CONFIG.rounds; round++) {
        console.log(`bench: fan-out round ${round}/${CONFIG.rounds} ...`);
        for (const { name, plan } of scenarios) {
          for (const setup of setups) {
            const result = await runScenario(setup, name, plan, round, CONFIG);
            (rounds[setup.server.kind] ??= []).push(result);
          }
        }
      }
      for (const kind of KINDS) {
        fanout[kind] = scenarios.flatMap(({ name, plan }) => {
          const mine = (rounds[kind] ?? []).filter((r) => r.scenario === name);
          return mine.length ? [bestRound(mine, plan.mode)] : [];
        });
      }
    } catch (err) {
      console.error('bench: fan-out failed:', err);
    } finally {
      for (const setup of setups) {
        await closeAll(setup.server, setup.clients).catch(() => {});
        await setup.server.stop();
      }
    }
  }

  printFanout(fanout, rounds, { subscribers: CONFIG.subscribers, rounds: CONFIG.rounds, latencyEvery: CONFIG.latencyEvery, scenarios: CONFIG.scenarios, kinds: KINDS });
  printConnect(connect, { concurrency: CONFIG.concurrency, kinds: KINDS });

  const loadAverageAfter = os.loadavg().map((l) => Number(l.toFixed(2)));
  console.log(`\nload average (1/5/15 min) before: ${machine.loadAverage.join(' ')}, after: ${loadAverageAfter.join(' ')}`);
  const out = { date: new Date().toISOString(), quick, machine: { ...machine, loadAverageAfter }, config: CONFIG, connect, fanout, rounds };
  writeFileSync(new URL('results.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
  console.log('\nbench: wrote bench/results.json');
  clearTimeout(watchdog);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
