/**
 * Chromium with the WebSocket blocked (`page.routeWebSocket`): a minimal chat page built on the
 * Chorus client falls back to HTTP streaming, chats with a page on a normal WebSocket, and loses
 * nothing when the server cuts its stream (it reconnects and recovers). The page is served by the
 * test itself with the client bundled by esbuild (the chat demo in web/ is tested elsewhere).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { signToken, upgradeStatus } from './helpers.js';
import { ARTIFACTS, chromiumMissing, launchChromium, startPageServer, type PageServer } from './page-helpers.js';

const PAGE = `<!doctype html><meta charset="utf-8"><title>chat</title><ul id="log"></ul><script type="module">
  import { ChorusClient } from '/client.js';
  const params = new URLSearchParams(location.search);
  const client = new ChorusClient({
    url: 'ws://' + location.host + '/ws', token: params.get('token'),
    minReconnectDelayMs: 50, maxReconnectDelayMs: 200, timeoutMs: 3000,
  });
  window.got = [];
  window.recoveryFailed = 0;
  const room = client.subscribe('chat:room');
  room.on('message', (m) => { window.got.push(m.data.text); const li = document.createElement('li'); li.textContent = m.data.text; document.getElementById('log').append(li); });
  room.on('recovery-failed', () => window.recoveryFailed++);
  window.say = (text) => client.publish('chat:room', { text });
  window.client = client;
  client.connect();
</script>`;

/** A page on another origin than the server, on the HTTP-streaming transport only, recording its retries. */
const PACED_PAGE = `<!doctype html><meta charset="utf-8"><title>paced</title><p id="state">connecting</p><script type="module">
  import { ChorusClient } from '/client.js';
  const params = new URLSearchParams(location.search);
  window.delays = [];
  window.errors = [];
  const client = new ChorusClient({
    url: params.get('ws'), token: params.get('token'), transports: ['http-stream'],
    random: () => 0.25, minReconnectDelayMs: 60000, maxReconnectDelayMs: 120000, timeoutMs: 5000,
  });
  client.on('connecting', (d) => window.delays.push(d.delayMs));
  client.on('error', (e) => window.errors.push(e.message));
  client.on('connected', () => (document.getElementById('state').textContent = 'connected over ' + client.transport));
  window.client = client;
  client.connect();
</script>`;

describe('the client in Chromium with the WebSocket blocked', { skip: chromiumMissing, timeout: 120_000 }, () => {
  let server: PageServer;
  let browser: Browser;
  let bundle = '';

  before(async () => {
    const result = await build({ entryPoints: ['src/client/index.ts'], bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent' });
    bundle = result.outputFiles[0]!.text;
    server = await startPageServer({
      '/chat.html': { type: 'text/html', body: PAGE },
      '/client.js': { type: 'text/javascript', body: () => bundle },
    });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  async function open(user: string, blocked: boolean): Promise<{ page: Page; errors: string[] }> {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    if (blocked) {
      // A proxy that kills every WebSocket before the server is reached.
      await page.routeWebSocket(/\/ws/, (ws) => ws.close({ code: 1011, reason: 'blocked' }));
    }
    await page.goto(`${server.url}/chat.html?token=${await signToken(user)}`);
    await page.waitForFunction(() => (window as any).client?.state === 'connected', undefined, { timeout: 20_000 });
    return { page, errors };
  }

  test('a page on another origin is paced by Retry-After on the HTTP-streaming transport (CORS exposes it)', async () => {
    const pages = await startPageServer({
      '/paced.html': { type: 'text/html', body: PACED_PAGE },
      '/client.js': { type: 'text/javascript', body: () => bundle },
    });
    let now = 1_800_000_000_000;
    const chorus = await startPageServer({}, { allowedOrigins: [pages.url], clock: () => now, admission: { ratePerSecond: 1, burst: 1 } });
    const context = await browser.newContext();
    try {
      // Someone else takes the one handshake the clock allows.
      const taken = await upgradeStatus(`${chorus.url.replace('http:', 'ws:')}/ws?token=${await signToken('bob', { expSeconds: null })}`);
      assert.equal(taken.status, 101);
      const page = await context.newPage();
      const ws = `${chorus.url.replace('http:', 'ws:')}/ws`;
      await page.goto(`${pages.url}/paced.html?ws=${encodeURIComponent(ws)}&token=${await signToken('ada', { expSeconds: null })}`);
      await page.waitForFunction(() => (window as any).delays.length >= 2, undefined, { timeout: 10_000 });
      // Retry-After: 1 -> 1000 ms + 0.25 * 1000 ms of jitter; without CORS the page could not read it and would back off 60 s.
      assert.equal(await page.evaluate(() => (window as any).delays[1]), 1250);
      assert.match(await page.evaluate(() => (window as any).errors[0]), /Unexpected server response: 503 .*OVER_CAPACITY/);
      now += 1000;
      await page.waitForFunction(() => (window as any).client.state === 'connected', undefined, { timeout: 10_000 });
      assert.equal(await page.evaluate(() => (window as any).client.transport), 'http-stream');
      await page.screenshot({ path: `${ARTIFACTS}/fallback-paced.png` });
    } finally {
      await context.close();
      await chorus.close();
      await pages.close();
    }
  });

  test('falls back to HTTP streaming, chats, and recovers after the stream is cut', async () => {
    const blocked = await open('ada', true);
    const normal = await open('bob', false);
    assert.equal(await blocked.page.evaluate(() => (window as any).client.transport), 'http-stream');
    assert.equal(await normal.page.evaluate(() => (window as any).client.transport), 'websocket');
    const kinds = [...server.chorus.connections].map((c) => c.transport.kind).sort();
    assert.deepEqual(kinds, ['http-stream', 'websocket']);
    await blocked.page.waitForFunction(() => (window as any).client.getSubscription('chat:room').state === 'subscribed');
    await normal.page.waitForFunction(() => (window as any).client.getSubscription('chat:room').state === 'subscribed');
    await blocked.page.evaluate(() => (window as any).say('hi from the fallback'));
    await normal.page.evaluate(() => (window as any).say('hi from the websocket'));
    for (const { page } of [blocked, normal]) {
      await page.waitForFunction(() => (window as any).got.length === 2);
    }
    // The server cuts the fallback stream; bob keeps talking meanwhile.
    const stream = [...server.chorus.connections].find((c) => c.transport.kind === 'http-stream')!;
    stream.terminate(1006, 'cut');
    for (let i = 0; i < 5; i++) await normal.page.evaluate((n) => (window as any).say(`while cut ${n}`), i);
    await blocked.page.waitForFunction(() => (window as any).got.length === 7, undefined, { timeout: 20_000 });
    const seen = (await blocked.page.evaluate(() => (window as any).got)) as string[];
    assert.deepEqual(seen.slice(2), [0, 1, 2, 3, 4].map((n) => `while cut ${n}`));
    assert.equal(await blocked.page.evaluate(() => (window as any).recoveryFailed), 0);
    assert.equal(await blocked.page.evaluate(() => (window as any).client.transport), 'http-stream');
    await blocked.page.screenshot({ path: `${ARTIFACTS}/fallback-chat.png` });
    await normal.page.screenshot({ path: `${ARTIFACTS}/fallback-chat-peer.png` });
    assert.deepEqual([...blocked.errors, ...normal.errors], []);
  });
});
