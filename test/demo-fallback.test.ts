/**
 * The chat demo (web/, served by the standalone server) in Chromium with the WebSocket blocked
 * (`page.routeWebSocket`): the page falls back to HTTP streaming by itself, chats with a page on
 * a normal WebSocket, and gets every message sent while its stream was cut once it reconnects.
 * Needs `npm run build` first (the page is the built bundle).
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { loadConfig } from '../src/cli/config.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { DIST_ROOT } from '../src/cli/static.js';
import { ARTIFACTS, chromiumMissing, launchChromium } from './page-helpers.js';
import { tempDir } from './helpers.js';

const WAIT = { timeout: 20_000 };

describe('chat demo with the WebSocket blocked', { skip: chromiumMissing, timeout: 120_000 }, () => {
  let server: StandaloneHandle;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(`${DIST_ROOT}/client/index.js`), 'dist/ is missing: run `npm run build` before this test');
    const config = loadConfig(['--port', '0', '--host', '127.0.0.1', '--log-level', 'silent'], { CHORUS_DATA_DIR: tempDir('chorus-fallback-') }, () => {
      throw new Error('no config file in this test');
    });
    server = await startStandalone(config);
    browser = await launchChromium();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  async function openPage(name: string, blocked: boolean): Promise<Page> {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT.timeout);
    page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
    // A proxy that kills every WebSocket before it reaches the server.
    if (blocked) await page.routeWebSocket(/\/ws/, (ws) => ws.close({ code: 1011, reason: 'blocked' }));
    await page.goto(server.url);
    await page.fill('#name', name);
    await page.click('#signin-button');
    await page.locator('#state[data-state="connected"]').waitFor(WAIT);
    return page;
  }

  const message = (page: Page, author: string, text: string) =>
    page.locator('#messages .message', { has: page.locator('.author', { hasText: author }) }).filter({ hasText: text });

  it('chats over the fallback and recovers what was sent while the stream was cut', async () => {
    const ada = await openPage('Ada', true);
    const bob = await openPage('Bob', false);
    const kinds = [...server.chorus.connections].map((c) => c.transport.kind).filter((k) => k !== 'sse');
    assert.ok(kinds.includes('http-stream'), `Ada is on the fallback: ${kinds.join(', ')}`);
    assert.ok(kinds.includes('websocket'), 'Bob is on a WebSocket');

    await ada.fill('#text', 'hello over http');
    await ada.locator('#text').press('Enter');
    await message(bob, 'Ada', 'hello over http').waitFor(WAIT);
    await bob.fill('#text', 'hello over ws');
    await bob.locator('#text').press('Enter');
    await message(ada, 'Bob', 'hello over ws').waitFor(WAIT);

    // The server cuts Ada's stream; Bob keeps talking while her page reconnects.
    const stream = [...server.chorus.connections].find((c) => c.transport.kind === 'http-stream')!;
    stream.terminate(1006, 'cut');
    for (let i = 0; i < 3; i++) {
      await bob.fill('#text', `while cut ${i}`);
      await bob.locator('#text').press('Enter');
      await message(bob, 'Bob', `while cut ${i}`).waitFor(WAIT);
    }
    for (let i = 0; i < 3; i++) await message(ada, 'Bob', `while cut ${i}`).waitFor(WAIT);
    await ada.locator('#state[data-state="connected"]').waitFor(WAIT);
    assert.equal(await ada.locator('#messages .message', { hasText: 'while cut 0' }).count(), 1, 'no duplicate');
    await ada.screenshot({ path: `${ARTIFACTS}/demo-fallback-ada.png` });
    await bob.screenshot({ path: `${ARTIFACTS}/demo-fallback-bob.png` });
    assert.deepEqual(pageErrors, []);
  });
});
