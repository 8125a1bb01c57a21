/**
 * Payload and transport benchmarks (issue 9), side by side in one run: fan-out to 1000
 * subscribers of Chorus with MessagePack vs JSON (100 B and 4 KB payloads), with
 * permessage-deflate on vs off, and SSE vs WebSocket. Same method as run.ts (server process on
 * core 0, this load generator on core 1, closed-loop publisher with a window of 64, 10
 * publications per event-loop turn); see bench/README.md.
 *
 *   node --import tsx bench/payloads.ts [--quick]
 */
import { writeFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { Packr } from 'msgpackr';
import type { PublishPlan } from './protocol.js';
import { BENCH_CHANNEL } from './protocol.js';
import { JWT_SECRET, ServerProcess, sleep } from './server-process.js';
import { SseWireClient } from './sse-wire.js';
import { Counters, WireClient, nowMs, openMany } from './wire.js';

const quick = process.argv.includes('--quick');
const SUBSCRIBERS = quick ? 200 : 1000;
const DURATION_MS = quick ? 1500 : 3000;
const DRAIN_MS = 5000;

interface Variant {
  name: string;
  /** Server environment. */
  env: Record<string, string>;
  transport: 'websocket' | 'sse';
  codec: 'json' | 'msgpack';
  deflate: boolean;
}

const ONLY_MEMORY = process.argv.includes('--memory-only');
const ONLY = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
const VARIANTS: Variant[] = [
  { name: 'WebSocket JSON', env: {}, transport: 'websocket', codec: 'json', deflate: false },
  { name: 'WebSocket MessagePack', env: {}, transport: 'websocket', codec: 'msgpack', deflate: false },
  { name: 'WebSocket JSON + deflate', env: { BENCH_COMPRESSION: '1' }, transport: 'websocket', codec: 'json', deflate: true },
  { name: 'SSE (JSON)', env: {}, transport: 'sse', codec: 'json', deflate: false },
];

const PAYLOADS = [100, 4096];
const packr = new Packr({ useRecords: false });
/** A MessagePack `message` frame starts with the map key `event` and the value `message`. */
const MSGPACK_MESSAGE = Buffer.from([0xa5, ...Buffer.from('event'), 0xa7, ...Buffer.from('message')]);

async function token(i: number): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(`b${i}`).sign(new TextEncoder().encode(JWT_SECRET));
}

interface Row {
  variant: string;
  payload: number;
  publications: number;
  deliveries: number;
  expected: number;
  deliveriesPerSec: number;
  serverCpuUsPerDelivery: number;
  bytesPerDelivery: number;
  serverCpuPct: number;
  loadCpuPct: number;
  /** Share of the publishing time the publisher waited for credit (subscribers behind). */
  stalledPct: number;
}

async function run(variant: Variant, tokens: string[]): Promise<Row[]> {
  const server = await ServerProcess.start('chorus', variant.env);
  const counters = new Counters();
  const destroy: Array<() => void> = [];
  try {
    if (variant.transport === 'sse') {
      for (let i = 0; i < SUBSCRIBERS; i++) {
        const client = new SseWireClient(server.port, `/sse?channel=${BENCH_CHANNEL}&token=${tokens[i]}`, counters);
        await client.start();
        destroy.push(() => client.destroy());
      }
    } else {
      const headers =
        (variant.codec === 'msgpack' ? 'Sec-WebSocket-Protocol: chorus.v1.msgpack\r\n' : '') +
        (variant.deflate ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : '');
      const opened = await openMany(
        SUBSCRIBERS,
        50,
        (i) =>
          new WireClient({
            port: server.port,
            path: `/ws?token=${tokens[i]}`,
            counters,
            headers,
            ...(variant.codec === 'msgpack' ? { countPattern: MSGPACK_MESSAGE } : {}),
            ...(variant.deflate ? { inflate: true } : {}),
          }),
        60_000,
      );
      for (const client of opened.clients) {
        destroy.push(() => client.destroy());
        const subscribe = { event: 'subscribe', data: { channel: BENCH_CHANNEL } };
        if (variant.codec === 'msgpack') client.sendBinary(packr.pack(subscribe));
        else client.sendText(JSON.stringify(subscribe));
      }
    }
    const subscribers = await server.waitFor('subscribers', (n) => n >= SUBSCRIBERS, 30_000);
    // Let the `subscribed` replies arrive before counting (they would count as deliveries).
    await sleep(1000);
    const rows: Row[] = [];
    for (const padBytes of PAYLOADS) {
      const plan: PublishPlan = { mode: 'window', window: 64, burst: 10, max: 100_000, durationMs: DURATION_MS, padBytes };
      counters.reset();
      let lastChunkAt = nowMs();
      let lastCredit = plan.window;
      counters.onChunk = () => {
        lastChunkAt = nowMs();
        const upTo = Math.floor(counters.deliveries / subscribers) + plan.window;
        if (upTo >= lastCredit + 8) {
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
      while (counters.deliveries < expected && performance.now() - drainStart < DRAIN_MS) await sleep(5);
      counters.onChunk = undefined;
      const serverCpu = await server.request({ type: 'cpu-read' }, 'cpu');
      const load = process.cpuUsage(loadCpu);
      const elapsedMs = lastChunkAt - started;
      const wallMs = nowMs() - started;
      rows.push({
        variant: variant.name,
        payload: padBytes,
        publications: published.count,
        deliveries: counters.deliveries,
        expected,
        deliveriesPerSec: (counters.deliveries / elapsedMs) * 1000,
        serverCpuUsPerDelivery: (serverCpu.cpuMs * 1000) / Math.max(1, counters.deliveries),
        bytesPerDelivery: counters.bytes / Math.max(1, counters.deliveries),
        serverCpuPct: (serverCpu.cpuMs / wallMs) * 100,
        loadCpuPct: ((load.user + load.system) / 1000 / wallMs) * 100,
        stalledPct: (published.stalledMs / Math.max(1, published.elapsedMs)) * 100,
      });
      await sleep(300);
    }
    return rows;
  } finally {
    for (const d of destroy) d();
    await server.stop();
  }
}

interface MemoryRow {
  compression: boolean;
  connections: number;
  heapKbPerConn: number;
  rssKbPerConn: number;
}

/**
 * Server memory per connection with and without permessage-deflate: 1000 WebSocket subscribers
 * (offering the extension), each sent five 4 KB publications (so every compressed connection has
 * used its deflate state), measured after two forced GCs against the server before connecting.
 */
async function measureMemory(compression: boolean, tokens: string[]): Promise<MemoryRow> {
  const server = await ServerProcess.start('chorus', compression ? { BENCH_COMPRESSION: '1' } : {});
  const counters = new Counters();
  const clients: WireClient[] = [];
  try {
    const before = await server.request({ type: 'memory' }, 'memory', 20000);
    const opened = await openMany(
      SUBSCRIBERS,
      50,
      (i) => new WireClient({ port: server.port, path: `/ws?token=${tokens[i]}`, counters, headers: 'Sec-WebSocket-Extensions: permessage-deflate\r\n', inflate: true }),
      60_000,
    );
    clients.push(...opened.clients);
    for (const client of clients) client.sendText(JSON.stringify({ event: 'subscribe', data: { channel: BENCH_CHANNEL } }));
    const subscribers = await server.waitFor('subscribers', (n) => n >= clients.length, 30_000);
    await sleep(1000);
    counters.reset();
    await server.request({ type: 'publish', plan: { mode: 'rate', rate: 50, max: 5, durationMs: 2000, padBytes: 4096 } }, 'published', 15000);
    const drainStart = performance.now();
    while (counters.deliveries < 5 * subscribers && performance.now() - drainStart < DRAIN_MS) await sleep(10);
    const after = await server.request({ type: 'memory' }, 'memory', 20000);
    return {
      compression,
      connections: clients.length,
      heapKbPerConn: (after.heapUsed - before.heapUsed) / 1024 / clients.length,
      rssKbPerConn: (after.rss - before.rss) / 1024 / clients.length,
    };
  } finally {
    for (const client of clients) client.destroy();
    await server.stop();
  }
}

async function main(): Promise<void> {
  const tokens = await Promise.all(Array.from({ length: SUBSCRIBERS }, (_, i) => token(i)));
  const rows: Row[] = [];
  for (const variant of VARIANTS.filter((v) => !ONLY_MEMORY && (!ONLY || v.name.toLowerCase().includes(ONLY.toLowerCase())))) {
    process.stdout.write(`${variant.name} ... `);
    rows.push(...(await run(variant, tokens)));
    console.log('done');
  }
  const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  console.log(`\n${SUBSCRIBERS} subscribers, saturate 10 pubs/turn, window 64, ${DURATION_MS} ms per row\n`);
  console.log('| transport / codec | payload B | pubs | deliveries/s | server CPU µs/delivery | B/delivery (wire) | server CPU % | load CPU % | stalled % | missing |');
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of rows) {
    console.log(
      `| ${r.variant} | ${r.payload} | ${fmt(r.publications)} | ${fmt(r.deliveriesPerSec)} | ${fmt(r.serverCpuUsPerDelivery, 2)} | ${fmt(r.bytesPerDelivery)} | ${fmt(r.serverCpuPct)} | ${fmt(r.loadCpuPct)} | ${fmt(r.stalledPct)} | ${fmt(r.expected - r.deliveries)} |`,
    );
  }
  const memory: MemoryRow[] = [];
  if (!process.argv.includes('--no-memory')) {
    for (const compression of [false, true]) memory.push(await measureMemory(compression, tokens));
    console.log('\n| permessage-deflate | connections | server heap KB/conn | server RSS KB/conn |');
    console.log('|---|--:|--:|--:|');
    for (const m of memory) console.log(`| ${m.compression ? 'on' : 'off'} | ${fmt(m.connections)} | ${fmt(m.heapKbPerConn, 1)} | ${fmt(m.rssKbPerConn, 1)} |`);
  }
  writeFileSync(new URL('./payloads-results.json', import.meta.url), JSON.stringify({ when: new Date().toISOString(), subscribers: SUBSCRIBERS, rows, memory }, null, 2));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
