/**
 * The live dashboard under load: N viewers (default 500) follow `dash:nodes` the way the page
 * does (history, then a subscription from its top) while, optionally, Chromium watches
 * /dashboard. Bounded: `--seconds` (default 20, at most 300) of watching, then a report.
 *
 *   node --import tsx bench/dashboard-load.ts [--viewers 500] [--slow 10] [--seconds 20] [--no-browser] [--url http://host:port]
 *
 * Without `--url` it starts `node dist/cli/main.js` (run `npm run build` first) in a child
 * process on a free port, pinned to core 0 when `taskset` is there (this process to core 1),
 * with a JWT secret it signs the viewers' tokens with. With `--url`, set CHORUS_JWT_SECRET to
 * that server's secret. The browser's screenshot goes to test-artifacts/dashboard-load.png.
 *
 * Reported: viewers connected, ticks each received (every viewer should see every tick: a
 * missing offset counts as a gap), and the server's own figures from its last tick.
 *
 * Slow viewers (`--slow`, default 10, needs the spawned server): raw WebSockets that subscribe
 * to `dash:nodes` and `dash:bench`, then stop reading. While they do, this script publishes
 * keyed 32 KB filler figures to `dash:bench` (up to 40 per second, 8 keys) through the HTTP API, so
 * their queues overflow. `dash:*` is `latest-per-key`: they should all stay connected, and once
 * they read again every offset must be a message or inside a `skipped` notice, in order.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { ChorusClient, type WebSocketConstructor } from '../src/client/index.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const CHANNEL = 'dash:nodes';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const VIEWERS = Math.min(5000, Math.max(1, Number(flag('viewers') ?? 500)));
const SECONDS = Math.min(300, Math.max(3, Number(flag('seconds') ?? 20)));
const BROWSER = !process.argv.includes('--no-browser') && existsSync('/usr/bin/chromium');
const SECRET = process.env.CHORUS_JWT_SECRET ?? 'dashboard-load-secret-0123456789abcdef';
const SLOW = Math.min(100, Math.max(0, Number(flag('slow') ?? 10)));
const API_KEY = 'dashboard-load-api-key-0123456789';
const FILLER_CHANNEL = 'dash:bench';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function pin(pid: number, core: number): void {
  if (os.cpus().length < 2) return;
  try {
    execFileSync('taskset', ['-a', '-cp', String(core), String(pid)], { stdio: 'ignore' });
  } catch {
    // no taskset: unpinned
  }
}

async function startServer(): Promise<{ url: string; child: ChildProcess }> {
  if (!existsSync(`${root}dist/cli/main.js`)) throw new Error('dist/cli/main.js is missing: run `npm run build` first');
  const child = spawn(process.execPath, [`${root}dist/cli/main.js`], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', CHORUS_JWT_SECRET: SECRET, CHORUS_API_KEY: API_KEY },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.on('exit', () => child.kill('SIGKILL'));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start in 20 s')), 20_000);
    let buffer = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'listening' && entry.url) {
            clearTimeout(timer);
            resolve(entry.url);
          }
        } catch {
          // not a log line
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  child.stdout?.resume(); // keep draining the connection logs
  pin(child.pid as number, 0);
  return { url, child };
}

function token(user: string, name = user): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ info: { name } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(user)
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(new TextEncoder().encode(SECRET));
}

interface Viewer {
  client: ChorusClient;
  /** Offsets received live, after the history read. */
  first: number | undefined;
  last: number | undefined;
  count: number;
}

async function viewer(wsUrl: string, i: number): Promise<Viewer> {
  const jwt = await token(`viewer-${i}`);
  const client = new ChorusClient({ url: wsUrl, token: jwt, getToken: () => token(`viewer-${i}`), WebSocket: WebSocket as unknown as WebSocketConstructor });
  const v: Viewer = { client, first: undefined, last: undefined, count: 0 };
  client.connect();
  const head = await client.history(CHANNEL, { limit: 0 });
  const sub = client.subscribe(CHANNEL, { since: { offset: head.offset, epoch: head.epoch } });
  sub.on('message', (m) => {
    if (m.offset === undefined) return;
    v.first ??= m.offset;
    v.last = m.offset;
    v.count++;
  });
  await new Promise<void>((resolve, reject) => {
    sub.once('subscribed', () => resolve());
    sub.once('error', reject);
  });
  return v;
}

interface SlowViewer {
  ws: WebSocket;
  socket: { pause(): void; resume(): void };
  frames: Array<{ event: string; data?: any; id?: string }>;
  closedWith: number | undefined;
  /** Each channel's offset at subscribe time. */
  start: Map<string, number>;
}

/** A raw WebSocket viewer that subscribes to both channels and then stops reading. */
async function slowViewer(wsUrl: string, i: number): Promise<SlowViewer> {
  const ws = new WebSocket(`${wsUrl}?token=${await token(`slow-${i}`)}`);
  const v: SlowViewer = { ws, socket: undefined as never, frames: [], closedWith: undefined, start: new Map() };
  ws.on('message', (data: Buffer) => {
    for (const line of data.toString().split('\n')) if (line) v.frames.push(JSON.parse(line));
  });
  ws.on('close', (code) => (v.closedWith = code));
  ws.on('error', () => {});
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  for (const channel of [CHANNEL, FILLER_CHANNEL]) {
    const id = `s-${channel}`;
    ws.send(JSON.stringify({ event: 'subscribe', id, data: { channel } }));
    for (let t = 0; t < 500 && !v.frames.some((f) => f.id === id); t++) await sleep(10);
    const ack = v.frames.find((f) => f.id === id);
    if (ack?.event !== 'ack') throw new Error(`slow viewer ${i}: subscribe ${channel} failed: ${JSON.stringify(ack)}`);
    v.start.set(channel, ack.data.offset);
  }
  v.socket = (ws as unknown as { _socket: SlowViewer['socket'] })._socket;
  v.socket.pause();
  return v;
}

/** Offsets a slow viewer accounted for on a channel: exact (in order, messages or skipped) or not. */
function accountFor(v: SlowViewer, channel: string): { exact: boolean; last: number; skipped: number; messages: number } {
  let position = v.start.get(channel) ?? 0;
  let exact = true;
  let skipped = 0;
  let messages = 0;
  for (const f of v.frames) {
    if (f.data?.channel !== channel) continue;
    if (f.event === 'message') {
      if (f.data.offset !== position + 1) exact = false;
      position = f.data.offset;
      messages++;
    } else if (f.event === 'skipped') {
      if (f.data.from !== position + 1) exact = false;
      skipped += f.data.to - f.data.from + 1;
      position = f.data.to;
    }
  }
  return { exact, last: position, skipped, messages };
}

/** Publish keyed filler figures to `dash:bench` through the HTTP API until `until`. */
async function fill(url: string, until: number): Promise<number> {
  const payload = 'f'.repeat(32 * 1024);
  let last = 0;
  for (let i = 0; Date.now() < until && i < 100_000; i++) {
    const res = await fetch(`${url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: FILLER_CHANNEL, key: `k${i % 8}`, data: { i, payload } }),
    });
    const body = (await res.json()) as { offset?: number; error?: unknown };
    if (body.offset === undefined) throw new Error(`filler publish failed: ${JSON.stringify(body)}`);
    last = body.offset;
    await sleep(25);
  }
  return last;
}

async function watchInBrowser(url: string, seconds: number): Promise<string | undefined> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${url}/dashboard`);
    await page.locator('#token-box summary').click();
    await page.fill('#token', await token('browser-watcher', 'Browser'));
    await page.click('#token-button');
    await page.locator('#charts .chart canvas').nth(4).waitFor({ timeout: 15_000 });
    await sleep(seconds * 1000);
    mkdirSync(`${root}test-artifacts`, { recursive: true });
    const path = `${root}test-artifacts/dashboard-load.png`;
    await page.screenshot({ path, fullPage: true });
    return path;
  } finally {
    await browser.close();
  }
}

async function main(): Promise<void> {
  pin(process.pid, 1);
  const external = flag('url');
  const server = external ? { url: external.replace(/\/$/, ''), child: undefined } : await startServer();
  const wsUrl = `${server.url.replace(/^http/, 'ws')}/ws`;
  process.stdout.write(`dashboard-load: ${VIEWERS} viewers against ${server.url} for ${SECONDS} s${BROWSER ? ', Chromium watching' : ''}\n`);

  const started = Date.now();
  const viewers: Viewer[] = [];
  for (let i = 0; i < VIEWERS; i += 50) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(50, VIEWERS - i) }, (_, j) => viewer(wsUrl, i + j)));
    for (const r of batch) if (r.status === 'fulfilled') viewers.push(r.value);
  }
  process.stdout.write(`  connected ${viewers.length}/${VIEWERS} viewers in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  const slowCount = external ? 0 : SLOW;
  const slow = await Promise.all(Array.from({ length: slowCount }, (_, i) => slowViewer(wsUrl, i)));

  const screenshot = BROWSER ? watchInBrowser(server.url, SECONDS).catch((err: Error) => `browser failed: ${err.message}`) : sleep(SECONDS * 1000);
  const filled = slowCount > 0 ? fill(server.url, Date.now() + SECONDS * 1000) : Promise.resolve(0);
  const shot = await screenshot;
  const lastFiller = await filled;
  if (slowCount > 0) {
    const connected = slow.filter((v) => v.closedWith === undefined).length;
    for (const v of slow) v.socket.resume();
    // Read until each connected slow viewer reached the last filler offset (bounded: 30 s).
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && slow.some((v) => v.closedWith === undefined && accountFor(v, FILLER_CHANNEL).last < lastFiller)) await sleep(50);
    const results = slow.map((v) => accountFor(v, FILLER_CHANNEL));
    const ticks = slow.map((v) => accountFor(v, CHANNEL));
    process.stdout.write(
      `  slow viewers (stopped reading for ${SECONDS} s while ${lastFiller - (slow[0]?.start.get(FILLER_CHANNEL) ?? 0)} x 32 KB were published): ` +
        `${connected}/${slowCount} still connected; ` +
        `exact sequences: ${results.filter((r) => r.exact && r.last === lastFiller).length} on ${FILLER_CHANNEL}, ${ticks.filter((r) => r.exact).length} on ${CHANNEL}; ` +
        `skipped offsets per viewer: median ${results.map((r) => r.skipped).sort((a, b) => a - b)[Math.floor(results.length / 2)] ?? 0}\n`,
    );
    for (const v of slow) v.ws.close();
  }

  // Each viewer should hold a gap-free run of offsets.
  const counts = viewers.map((v) => v.count).sort((a, b) => a - b);
  const gaps = viewers.filter((v) => v.first !== undefined && v.last !== undefined && v.last - v.first + 1 !== v.count).length;
  const median = counts[Math.floor(counts.length / 2)] ?? 0;
  const figures = viewers[0] ? (await viewers[0].client.history(CHANNEL, { limit: 1, reverse: true })).publications[0]?.data : undefined;
  process.stdout.write(
    `  ticks per viewer: min ${counts[0] ?? 0}, median ${median}, max ${counts[counts.length - 1] ?? 0}; viewers with a gap: ${gaps}\n` +
      `  still connected: ${viewers.filter((v) => v.client.state === 'connected').length}\n` +
      `  server's last tick: ${JSON.stringify(figures)}\n` +
      (typeof shot === 'string' ? `  ${shot.startsWith('browser failed') ? shot : `screenshot: ${shot}`}\n` : ''),
  );
  for (const v of viewers) v.client.close();
  if (server.child) {
    server.child.kill('SIGTERM');
    await new Promise((resolve) => server.child?.once('exit', resolve));
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`dashboard-load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
