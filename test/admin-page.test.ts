/**
 * The admin console (`/admin`) of the standalone server: sign-in with the API key to an
 * HttpOnly, SameSite=Strict session (a wrong key refused, the key kept nowhere in the page), the
 * CSRF rules of its POSTs (no token, wrong token, foreign Origin: refused), and in Chromium a
 * connection opened by the test shown live, inspected (presence, history after a test
 * publication) and disconnected. Needs `npm run build` first. Screenshots in test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { loadConfig } from '../src/cli/config.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { DIST_ROOT } from '../src/cli/static.js';
import { launchChromium, pageSet, screenshot, WAIT, type PageSet } from './browser-helpers.js';
import { tempDir, TestSocket, withTimeout } from './helpers.js';

const API_KEY = 'admin-test-api-key-0123456789';

describe('admin console', { timeout: 180_000 }, () => {
  let server: StandaloneHandle;
  let browser: Browser;
  let pages: PageSet;

  before(async () => {
    assert.ok(existsSync(`${DIST_ROOT}/web/admin.js`), 'dist/web/admin.js is missing: run `npm run build` before this test');
    const config = loadConfig(['--port', '0', '--host', '127.0.0.1', '--log-level', 'silent'], { CHORUS_API_KEY: API_KEY, CHORUS_DATA_DIR: tempDir('chorus-admin-') }, () => {
      throw new Error('no config file in this test');
    });
    server = await startStandalone(config, { dashboardIntervalMs: 1000 });
    browser = await launchChromium();
    // 401s of the session check before sign-in and of the wrong key are expected.
    pages = pageSet(browser, [/HTTP 401 for .*\/admin\/api\/session$/, /401 \(Unauthorized\)/]);
  });

  after(async () => {
    await pages?.close();
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  /** A connection of a demo user, subscribed to `chat:lobby`. */
  async function openConnection(name: string): Promise<{ socket: TestSocket; user: string }> {
    const res = await fetch(`${server.url}/demo/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
    const { token, user } = (await res.json()) as { token: string; user: string };
    const socket = await TestSocket.connect(`${server.url.replace('http', 'ws')}/ws`, token);
    await socket.ok('subscribe', { channel: 'chat:lobby' });
    return { socket, user };
  }

  async function signInByFetch(): Promise<{ cookie: string; csrf: string; setCookie: string }> {
    const res = await fetch(`${server.url}/admin/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: API_KEY }) });
    assert.equal(res.status, 200);
    const setCookie = res.headers.get('set-cookie') ?? '';
    const { csrf } = (await res.json()) as { csrf: string };
    return { cookie: setCookie.split(';')[0]!, csrf, setCookie };
  }

  it('sessions: HttpOnly SameSite=Strict cookie, a wrong key refused, POSTs without the CSRF token or from another origin refused', async () => {
    const wrong = await fetch(`${server.url}/admin/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'nope' }) });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('set-cookie'), null);
    assert.equal((await fetch(`${server.url}/admin/api/overview`)).status, 401, 'no session, no data');

    const { cookie, csrf, setCookie } = await signInByFetch();
    assert.match(setCookie, /^chorus_admin=[\w-]{43}; Path=\/admin; HttpOnly; SameSite=Strict; Max-Age=1800$/);
    assert.ok(!setCookie.includes(API_KEY));

    const post = (path: string, headers: Record<string, string>) =>
      fetch(`${server.url}/admin/api${path}`, { method: 'POST', headers: { 'content-type': 'application/json', cookie, ...headers }, body: JSON.stringify({ user: 'nobody' }) });
    const noToken = await post('/disconnect', {});
    assert.equal(noToken.status, 403);
    assert.equal(((await noToken.json()) as any).error.code, 'PERMISSION_DENIED');
    assert.equal((await post('/disconnect', { 'x-chorus-csrf': 'x'.repeat(43) })).status, 403, 'a wrong token');
    assert.equal((await post('/disconnect', { 'x-chorus-csrf': csrf, origin: 'http://evil.example' })).status, 403, 'another origin');
    assert.equal((await post('/disconnect', { 'x-chorus-csrf': csrf, 'sec-fetch-site': 'cross-site' })).status, 403, 'a cross-site fetch');
    const ok = await post('/disconnect', { 'x-chorus-csrf': csrf, origin: server.url });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { disconnected: 0, nodes: [server.chorus.options.nodeId], missing: [] });

    // Signing out ends the session server-side.
    assert.equal((await post('/signout', { 'x-chorus-csrf': csrf })).status, 200);
    assert.equal((await fetch(`${server.url}/admin/api/overview`, { headers: { cookie } })).status, 401);
  });

  it('chromium: a wrong key is refused; the console shows a connection opened by the test, inspects its channel and disconnects it', async () => {
    const { socket, user } = await openConnection('Victor');
    const page = await pages.open('admin');
    await page.goto(`${server.url}/admin`);
    await page.locator('#signin').waitFor({ state: 'visible', ...WAIT });

    for (const href of ['/', '/dashboard', '/editor', '/admin']) assert.equal(await page.locator(`nav.pages a[href="${href}"]`).count(), 1);
    await page.fill('#api-key', 'not-the-key');
    await page.click('#signin-button');
    await page.locator('#signin-error', { hasText: 'Wrong API key.' }).waitFor(WAIT);
    assert.equal(await page.locator('#console').isVisible(), false);

    await page.fill('#api-key', API_KEY);
    await page.click('#signin-button');
    await page.locator('#console').waitFor({ state: 'visible', ...WAIT });
    assert.equal(await page.inputValue('#api-key'), '', 'the key is cleared from the form');
    // The session cookie is HttpOnly: the page cannot read it; the key is in no URL or storage.
    assert.equal(await page.evaluate(() => document.cookie), '');
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
    assert.ok(!page.url().includes(API_KEY));

    // The test's connection, live.
    const connectionRow = page.locator(`#connections tr[data-user="${user}"]`);
    await connectionRow.waitFor(WAIT);
    await page.locator('#channels td', { hasText: 'chat:lobby' }).waitFor(WAIT);

    // Publish a test message: the connection receives it; inspecting the channel shows presence and history.
    await page.fill('#publish-channel', 'chat:lobby');
    await page.fill('#publish-text', 'hello from the console');
    await page.click('#publish-form button');
    await page.locator('#action-result', { hasText: 'Published to chat:lobby at offset 1' }).waitFor(WAIT);
    await socket.find((f) => f.event === 'message' && (f.data as any).data.text === 'hello from the console');
    await page.locator('#channels tr', { hasText: 'chat:lobby' }).locator('button', { hasText: 'Inspect' }).click();
    await page.locator('#presence .member .name', { hasText: user }).waitFor(WAIT);
    await page.locator('#history li', { hasText: 'hello from the console' }).waitFor(WAIT);
    await screenshot(page, 'admin');

    // Disconnect it from its row.
    await connectionRow.locator('button', { hasText: 'Disconnect' }).click();
    await page.locator('#action-result', { hasText: `Disconnected 1 connection(s) of ${user} on 1 node(s).` }).waitFor(WAIT);
    const closed = await withTimeout(socket.closed, 5000, 'the connection closed');
    assert.equal(closed.code, 4500);
    await connectionRow.waitFor({ state: 'detached', ...WAIT });
    // The inspected channel stays live: its presence empties.
    await page.locator('#presence .member').waitFor({ state: 'detached', ...WAIT });
    await screenshot(page, 'admin-after-disconnect');
    assert.deepEqual(pages.errors, []);
  });
});

