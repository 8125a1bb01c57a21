/**
 * The live dashboard under load: N viewers (default 500) follow `dash:nodes` the way the page
 * does (history, then a subscription from its top) while, optionally, Chromium watches
 * /dashboard. Bounded: `--seconds` (default 20, at most 300) of watching, then a report.
 *
 *   node --import tsx bench/dashboard-load.ts [--viewers 500] [--seconds 20] [--no-browser] [--url http://host:port]
 *
 * Without `--url` it starts `node dist/cli/main.js` (run `npm run build` first) in a child
 * process on a free port, pinned to core 0 when `taskset` is there (this process to core 1),
 * with a JWT secret it signs the viewers' tokens with. With `--url`, set CHORUS_JWT_SECRET to
 * that server's secret. The browser's screenshot goes to test-artifacts/dashboard-load.png.
 *
 * Reported: viewers connected, ticks each received (every viewer should see every tick: a
 * missing offset counts as a gap), and the server's own figures from its last tick.
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
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', CHORUS_JWT_SECRET: SECRET },
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

  const screenshot = BROWSER ? watchInBrowser(server.url, SECONDS).catch((err: Error) => `browser failed: ${err.message}`) : sleep(SECONDS * 1000);
  const shot = await screenshot;

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
