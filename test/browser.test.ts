/**
 * The demo page in a real browser: Debian chromium driven by playwright-core. Two pages sign
 * in (demo mode), see each other in presence, chat, see the typing indicator, and survive a
 * server-initiated reconnect. Needs `npm run build` first (the page loads dist/client).
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { loadConfig } from '../src/cli/config.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { DIST_ROOT } from '../src/cli/static.js';
import { tempDir } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const WAIT = { timeout: 15_000 };
const API_KEY = 'browser-test-api-key';

function apiPost(url: string, path: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      `${url}${path}`,
      { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

describe('demo page in chromium', { timeout: 120_000 }, () => {
  let server: StandaloneHandle;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(
      existsSync(`${DIST_ROOT}/client/index.js`),
      'dist/client/index.js is missing: run `npm run build` before this test',
    );
    const config = loadConfig(['--port', '0', '--host', '127.0.0.1', '--log-level', 'silent'], { CHORUS_API_KEY: API_KEY, CHORUS_DATA_DIR: tempDir('chorus-browser-') }, () => {
      throw new Error('no config file in this test');
    });
    assert.equal(config.demo, true);
    server = await startStandalone(config);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  async function openPage(name: string): Promise<Page> {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT.timeout);
    page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`${name} console: ${msg.text()}`);
    });
    page.on('response', (res) => {
      if (res.status() >= 400) pageErrors.push(`${name}: HTTP ${res.status()} for ${res.url()}`);
    });
    await page.goto(server.url);
    await page.fill('#name', name);
    await page.click('#signin-button');
    await page.locator('#state[data-state="connected"]').waitFor(WAIT);
    assert.equal(await page.locator('#me-name').textContent(), name);
    return page;
  }

  const member = (page: Page, name: string) => page.locator('#members .member .name', { hasText: name });
  const message = (page: Page, author: string, text: string) =>
    page.locator('#messages .message', { has: page.locator('.author', { hasText: author }) }).filter({ hasText: text });

  it('two users see each other, chat, see typing, and reconnect', async () => {
    const ada = await openPage('Ada');
    const bob = await openPage('Bob');

    // Presence, both ways (Bob's list comes from the presence request, Ada's from the join event).
    await member(ada, 'Bob').waitFor(WAIT);
    await member(bob, 'Ada').waitFor(WAIT);
    await member(ada, 'Ada').waitFor(WAIT);
    assert.equal(await ada.locator('#member-count').textContent(), '2');

    // Typing indicator: Ada types, Bob sees it.
    await ada.locator('#text').pressSequentially('hello from Ada');
    await bob.locator('#typing', { hasText: 'Ada is typing…' }).waitFor(WAIT);

    // Ada sends; Bob sees the message with her name, and the indicator goes away.
    await ada.locator('#text').press('Enter');
    await message(bob, 'Ada', 'hello from Ada').waitFor(WAIT);
    await message(ada, 'Ada', 'hello from Ada').waitFor(WAIT);
    await bob.waitForFunction(() => document.getElementById('typing')?.textContent === '', undefined, WAIT);
    assert.equal(await ada.locator('#messages .message.mine').count(), 1);

    // User text is rendered as text, never as HTML.
    const evil = '<img src=x onerror="window.__xss=1">';
    await bob.fill('#text', evil);
    await bob.click('#send-button');
    await message(ada, 'Bob', evil).waitFor(WAIT);
    assert.equal(await ada.locator('#messages img').count(), 0);
    assert.equal(await ada.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);

    // Reconnect: the server drops Bob's connections with "may reconnect" (4004); the page
    // goes back to connected on its own, resubscribes, and still receives messages.
    const bobUser = await bob.evaluate(() => JSON.parse(sessionStorage.getItem('chorus-demo-session') ?? '{}').user as string);
    assert.ok(bobUser);
    const dropped = await apiPost(server.url, '/api/disconnect', { user: bobUser, reconnect: true });
    assert.equal(dropped.status, 200, dropped.body);
    await bob.locator('#state[data-state="connected"][data-connects="2"]').waitFor(WAIT);
    await ada.fill('#text', 'welcome back');
    await ada.locator('#text').press('Enter');
    await message(bob, 'Ada', 'welcome back').waitFor(WAIT);
    await member(ada, 'Bob').waitFor(WAIT);

    assert.deepEqual(pageErrors, []);
  });
});
