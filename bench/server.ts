/**
 * Benchmark server process: one of Chorus, a plain `ws` broadcast server or Socket.IO, listening
 * on 127.0.0.1, driven by bench/run.ts over the IPC channel. The publisher runs in this process
 * (Chorus: `server.publish`; ws: a loop of `ws.send`; Socket.IO: `io.to(room).emit`), so the
 * load process only reads.
 *
 * Run by run.ts as: taskset -c 0 node --expose-gc --import tsx bench/server.ts <kind>
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { createAdapter } from '@socket.io/redis-adapter';
import { WebSocketServer } from 'ws';
import { Server as SocketIoServer } from 'socket.io';
import { existsSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import v8 from 'node:v8';
import type { ServerOptions } from '../src/server/index.js';
import { nowMs } from './wire.js';
import type { ServerKind, ToServer, FromServer, PublishPlan } from './protocol.js';
import { BENCH_CHANNEL, BENCH_ROOM } from './protocol.js';

const kind = process.argv[2] as ServerKind;
/**
 * Chorus as users run it: the compiled dist/ (`npm run build`), unless BENCH_SOURCE=src or there
 * is no build. Under tsx, src/ is transformed with esbuild's keepNames, which gives every named
 * closure a property dictionary (~250 B each, measured): it would count against Chorus's memory.
 */
const fromDist = process.env.BENCH_SOURCE !== 'src' && existsSync(new URL('../dist/server/index.js', import.meta.url));
/**
 * BENCH_CHORUS_DIST: another compiled Chorus to run instead (a directory inside the repository,
 * relative to it, e.g. `dist-base` built from an earlier commit), for before/after comparisons.
 */
const otherDist = process.env.BENCH_CHORUS_DIST;
const root = otherDist ? `../${otherDist}` : fromDist ? '../dist' : '../src';
const { ChorusServer } = (await import(`${root}/server/index.js`)) as typeof import('../src/server/index.js');
const { RedisEngine } = (await import(`${root}/engines/redis/index.js`)) as typeof import('../src/engines/redis/index.js');
if (kind === 'chorus' && process.env.BENCH_QUIET !== '1') console.log(`bench server: Chorus from ${otherDist ? `${otherDist}/` : fromDist ? 'dist/' : 'src/ (tsx)'}`);
const secret = process.env.BENCH_JWT_SECRET ?? '';
/** BENCH_REDIS_URL: run on Redis (Chorus: RedisEngine; Socket.IO: @socket.io/redis-adapter). */
const redisUrl = process.env.BENCH_REDIS_URL;
/** BENCH_CHORUS_OPTIONS: JSON merged over the Chorus bench options (e.g. admission, heartbeat). */
const chorusOverrides = JSON.parse(process.env.BENCH_CHORUS_OPTIONS ?? '{}') as Partial<ServerOptions>;
/** BENCH_CHORUS_EXTRA: JSON merged last, over a scenario's own BENCH_CHORUS_OPTIONS (e.g. to measure a feature's cost). */
const chorusExtra = JSON.parse(process.env.BENCH_CHORUS_EXTRA ?? '{}') as Partial<ServerOptions>;

/**
 * BENCH_PROFILE_DIR: write a CPU profile (.cpuprofile) of each measured window (cpu-start to
 * cpu-read) there: only the measured work, without startup or warm-up.
 */
const profileDir = process.env.BENCH_PROFILE_DIR;
let profiler: inspector.Session | undefined;

function profileStart(): void {
  if (!profileDir) return;
  profiler = new inspector.Session();
  profiler.connect();
  profiler.post('Profiler.enable');
  profiler.post('Profiler.setSamplingInterval', { interval: 100 });
  profiler.post('Profiler.start');
}

function profileStop(): void {
  const session = profiler;
  if (!session || !profileDir) return;
  profiler = undefined;
  session.post('Profiler.stop', (err, result) => {
    if (!err) writeFileSync(`${profileDir}/${kind}-${process.pid}-${Date.now()}.cpuprofile`, JSON.stringify(result.profile));
    session.disconnect();
  });
}

function send(message: FromServer): void {
  process.send?.(message);
}

interface Target {
  /** Publish one message whose payload carries the publish time `t` and sequence `s`. */
  publish(data: { t: number; s: number; p: string }, channel?: string): void;
  subscribers(): number;
  connections(): number;
}

const httpServer = http.createServer();

function chorusTarget(): Target {
  const chorus = new ChorusServer({
    auth: { secret },
    logger: { level: 'warn' },
    // The default 30 s heartbeat would put a `ping` frame in every socket mid-run, which the load
    // generator (counting frames, not parsing them) would take for deliveries.
    heartbeat: { intervalMs: 600_000, timeoutMs: 1_200_000 },
    // BENCH_COMPRESSION=1: permessage-deflate with the default settings (bench/payloads.ts).
    compression: process.env.BENCH_COMPRESSION === '1',
    // Capacity, not pacing: the load generator opens connections as fast as it can and does not
    // honour Retry-After (a paced server would refuse some with 503; see bench:perf2's storm).
    admission: { ratePerSecond: 0, maxPending: 0 },
    // Room for 4 KB publications to 1000 subscribers in the closed loop's window.
    limits: { maxQueuedBytes: 4 * 1024 * 1024 },
    namespaces: [
      { pattern: 'user:*', personal: true, publish: 'none' },
      { pattern: 'bench:*', publish: 'none' },
      // The reconnect storm: channels with history, recovered after the node dies.
      { pattern: 'storm:*', publish: 'none', historySize: 1000 },
    ],
    // BENCH_REDIS_PREFIX: the engine's key prefix (two servers on one redis-server that must not share state, bench/ab.ts).
    ...(redisUrl ? { engine: new RedisEngine({ url: redisUrl, ...(process.env.BENCH_REDIS_PREFIX ? { prefix: process.env.BENCH_REDIS_PREFIX } : {}) }) } : {}),
    ...chorusOverrides,
    ...chorusExtra,
  });
  chorus.attach(httpServer);
  let errors = 0;
  return {
    publish(data, channel = BENCH_CHANNEL) {
      chorus.publish(channel, data).catch((err: unknown) => {
        if (errors++ === 0) console.error('bench server: publish failed', err);
      });
    },
    subscribers: () => chorus.hub.channels.get(BENCH_CHANNEL)?.size ?? 0,
    connections: () => chorus.connections.size,
  };
}

function wsTarget(): Target {
  const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });
  const subscribers = new Set<import('ws').WebSocket>();
  wss.on('connection', (ws) => {
    ws.on('message', (message) => {
      if (message.toString() === 'subscribe') subscribers.add(ws);
    });
    ws.on('close', () => subscribers.delete(ws));
    ws.on('error', () => {});
  });
  return {
    publish(data) {
      // The naive broadcast: the same string, one ws.send (one frame, one write) per subscriber.
      const text = JSON.stringify(data);
      for (const ws of subscribers) ws.send(text);
    },
    subscribers: () => subscribers.size,
    connections: () => wss.clients.size,
  };
}

function socketIoTarget(): Target {
  const io = new SocketIoServer(httpServer, { transports: ['websocket'], serveClient: false });
  if (redisUrl) {
    const pub = new Redis(redisUrl);
    io.adapter(createAdapter(pub, pub.duplicate()));
  }
  io.on('connection', (socket) => {
    socket.on('sub', () => void socket.join(BENCH_ROOM));
  });
  return {
    publish(data) {
      io.to(BENCH_ROOM).emit('m', data);
    },
    subscribers: () => io.sockets.adapter.rooms.get(BENCH_ROOM)?.size ?? 0,
    connections: () => io.of('/').sockets.size,
  };
}

const target = kind === 'chorus' ? chorusTarget() : kind === 'ws' ? wsTarget() : socketIoTarget();
/** Chat-like text padding (compresses about as well as real messages, unlike a run of one letter). */
function padding(bytes: number): string {
  const words = 'the quick brown fox 0123 jumps over lazy dogs while 4567 people chat about lunch and code reviews ';
  let text = '';
  for (let i = 0; text.length < bytes; i++) text += words.slice((i * 7) % 40) + i.toString(36) + ' ';
  return text.slice(0, bytes);
}

function gcMemory(): { heapUsed: number; rss: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  const { heapUsed, rss } = process.memoryUsage();
  // BENCH_HEAP_SNAPSHOT_DIR: a heap snapshot at each memory reading (bench/heap-diff.ts compares two).
  if (process.env.BENCH_HEAP_SNAPSHOT_DIR) v8.writeHeapSnapshot(`${process.env.BENCH_HEAP_SNAPSHOT_DIR}/${kind}-${process.pid}-${++snapshots}.heapsnapshot`);
  return { heapUsed, rss };
}

let snapshots = 0;

/** The running publisher: stops by itself at `max` publications or after `durationMs`. */
let credit = 0;
let pump: (() => void) | undefined;

function runPublisher(plan: PublishPlan): void {
  const started = nowMs();
  const cpu = process.cpuUsage();
  let seq = 0;
  let finished = false;
  /** Time the window publisher spent waiting for credit (the receivers were behind). */
  let stalledMs = 0;
  let waitingSince: number | undefined;
  const deadline = started + plan.durationMs;
  const finish = () => {
    if (finished) return;
    finished = true;
    pump = undefined;
    clearTimeout(stopTimer);
    const used = process.cpuUsage(cpu);
    if (waitingSince !== undefined) stalledMs += nowMs() - waitingSince;
    send({ type: 'published', count: seq, elapsedMs: nowMs() - started, cpuMs: (used.user + used.system) / 1000, stalledMs });
  };
  const stopTimer = setTimeout(finish, plan.durationMs + 50);
  const pad = padding(plan.padBytes ?? 64);
  const channels = plan.mode === 'rate' ? plan.channels : undefined;
  const publishOne = () => {
    const s = seq++;
    target.publish({ t: nowMs(), s, p: pad }, channels ? channels[s % channels.length] : undefined);
  };

  if (plan.mode === 'window') {
    credit = plan.window;
    let scheduled = false;
    const step = () => {
      scheduled = false;
      if (waitingSince !== undefined) {
        stalledMs += nowMs() - waitingSince;
        waitingSince = undefined;
      }
      if (finished) return;
      if (seq >= plan.max || nowMs() >= deadline) return finish();
      for (let n = 0; n < plan.burst && seq < credit && seq < plan.max; n++) publishOne();
      // One burst per event-loop turn; wait for credit when the window is used up.
      if (seq < credit && seq < plan.max) schedule();
      else if (seq >= plan.max) finish();
      else waitingSince = nowMs();
    };
    const schedule = () => {
      if (scheduled || finished) return;
      scheduled = true;
      setImmediate(step);
    };
    pump = schedule;
    schedule();
  } else {
    const tick = () => {
      if (finished) return;
      const elapsed = nowMs() - started;
      const due = Math.min(plan.max, Math.floor((elapsed / 1000) * plan.rate) + 1);
      while (seq < due) publishOne();
      if (seq >= plan.max || nowMs() >= deadline) return finish();
      setTimeout(tick, 1);
    };
    tick();
  }
}

process.on('message', (message: ToServer) => {
  switch (message.type) {
    case 'stats':
      send({ type: 'stats', subscribers: target.subscribers(), connections: target.connections() });
      break;
    case 'memory':
      send({ type: 'memory', ...gcMemory() });
      break;
    case 'cpu-start':
      cpuMark = process.cpuUsage();
      profileStart();
      send({ type: 'ok' });
      break;
    case 'cpu-read': {
      const used = process.cpuUsage(cpuMark);
      profileStop();
      if (process.env.BENCH_CPU_SPLIT === '1') console.log(`${kind} cpu user ${(used.user / 1000).toFixed(0)} ms, system ${(used.system / 1000).toFixed(0)} ms`);
      send({ type: 'cpu', cpuMs: (used.user + used.system) / 1000 });
      break;
    }
    case 'publish':
      runPublisher(message.plan);
      break;
    case 'lag-start':
      lag?.disable();
      lag = monitorEventLoopDelay({ resolution: 10 });
      lag.enable();
      send({ type: 'ok' });
      break;
    case 'lag-read': {
      const ms = (ns: number) => ns / 1e6;
      send({ type: 'lag', p50Ms: ms(lag?.percentile(50) ?? 0), p99Ms: ms(lag?.percentile(99) ?? 0), maxMs: ms(lag?.max ?? 0) });
      break;
    }
    case 'credit':
      if (message.upTo > credit) {
        credit = message.upTo;
        pump?.();
      }
      break;
    case 'exit':
      process.exit(0);
  }
});
let cpuMark = process.cpuUsage();
let lag: IntervalHistogram | undefined;
process.on('disconnect', () => process.exit(0));

/**
 * The listen backlog (BENCH_BACKLOG, default 4096 for every server): Node's default of 511 lets
 * a reconnect storm overflow the accept queue, and the clients whose SYNs are dropped retry
 * after 1, 3, 7 s... before any server code sees them (docs/PERFORMANCE.md). The kernel caps it
 * at net.core.somaxconn.
 */
const backlog = Number(process.env.BENCH_BACKLOG ?? 4096);

httpServer.listen({ port: 0, host: '127.0.0.1', backlog }, () => {
  send({ type: 'ready', port: (httpServer.address() as AddressInfo).port, pid: process.pid });
});
