/**
 * The reconnect storm of `npm run bench:perf2` (bench/README.md, "Performance II"): 2 Chorus nodes
 * on Redis, real Chorus clients on node A, existing subscribers on B; SIGKILL A and measure how
 * the clients come back on B and how B's existing clients fare. Bounded in count and time.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { ChorusClient } from '../src/client/index.js';
import { pathFor } from './fanout.js';
import { fmt, printRows, startRedis } from './perf2-util.js';
import { ServerProcess, sleep } from './server-process.js';
import { Counters, LatencyRecorder, WireClient, openMany } from './wire.js';

export interface StormConfig {
  /** Clients on the node that dies. */
  stormClients: number;
  /** Raw subscribers of the fan-out channel on the survivor. */
  stormExisting: number;
  /** History channels the storm clients subscribe to (client i: storm:c{i % channels}). */
  stormChannels: number;
  /** Publications per second over the storm channels. */
  stormPublishRate: number;
  /** Every client must be back within this, ms. */
  stormDeadlineMs: number;
}

const load = { localAddress: (i: number) => `127.0.0.${1 + (i % 8)}` };

export async function sectionStorm(tokens: string[], config: StormConfig, results: Record<string, unknown>): Promise<void> {
  const CONFIG = config;
  const redis = await startRedis();
  // Default admission (the knob under test): the bench server's base options turn pacing off to
  // measure capacity, so the storm's nodes ask for the defaults back (`admission: {}`).
  const env = { BENCH_REDIS_URL: redis.url, BENCH_CHORUS_OPTIONS: JSON.stringify({ admission: {} }) };
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
    const balancedFetch = (url: string, init?: RequestInit) => fetch(url.replace(/:\d+\//, `:${target}/`), init);
    const stats = { paced503: 0, otherErrors: 0, connectTimeouts: 0, connected: 0, recoveredTrue: 0, recoveredFalse: 0, lost: 0 };
    let phase: 'setup' | 'storm' = 'setup';
    /** Client 'error' events during the storm other than 503s, by message. */
    const errorKinds = new Map<string, number>();
    const back = new Set<number>();
    const subscribed = new Set<number>();
    const stormStartedAt = { t: 0 };
    let lastBackAt = 0;
    console.log(`perf2: storm: connecting ${fmt(CONFIG.stormClients)} Chorus clients to node A ...`);
    for (let i = 0; i < CONFIG.stormClients; i++) {
      const client = new ChorusClient({
        url: `ws://127.0.0.1:${a.port}/ws`,
        WebSocket: Balanced as never,
        // The HTTP-streaming fallback goes through the same "load balancer".
        fetch: balancedFetch as never,
        token: tokens[i]!,
        minReconnectDelayMs: 500,
        maxReconnectDelayMs: 10_000,
      });
      client.on('error', (err) => {
        if (/Unexpected server response: 503/.test(err.message)) stats.paced503++;
        else if (phase === 'storm') {
          stats.otherErrors++;
          const kind = err.message.replace(/\d+/g, 'N').slice(0, 60);
          errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
        }
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
      otherErrorKinds: Object.fromEntries(errorKinds),
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
      ['other client errors', `${fmt(out.otherErrors)}${out.otherErrors ? `: ${[...errorKinds].map(([m, n]) => `${fmt(n)} "${m}"`).join(', ')}` : ''}`],
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
