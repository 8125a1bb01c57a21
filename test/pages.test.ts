/**
 * The standalone server's pages in Chromium: the chat (two users, two rooms, presence, typing,
 * read receipts, history paging), the live dashboard (charts that move, a new viewer that starts
 * from history, a viewer that reconnects and fills the ticks it missed without a gap), and the
 * editor (CodeMirror on the server's real /yjs endpoint: two users, their cursors; the heavier
 * editing cases are in editor.test.ts). Needs
 * `npm run build` first (the pages load dist/web/). Screenshots go to test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../src/cli/config.js';
import { DASHBOARD_CHANNEL } from '../src/cli/dashboard-feed.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { DIST_ROOT } from '../src/cli/static.js';
import { editorText, launchChromium, pageSet, screenshot, signIn, WAIT, type PageSet } from './browser-helpers.js';
import { api, tempDir, until } from './helpers.js';

const API_KEY = 'pages-test-api-key';

describe('standalone pages in chromium', { timeout: 180_000 }, () => {
  let server: StandaloneHandle;
  let browser: Browser;
  let pages: PageSet;

  before(async () => {
    assert.ok(existsSync(`${DIST_ROOT}/web/chat.js`), 'dist/web/chat.js is missing: run `npm run build` before this test');
    const config = loadConfig(['--port', '0', '--host', '127.0.0.1', '--log-level', 'silent'], { CHORUS_API_KEY: API_KEY, CHORUS_DATA_DIR: tempDir('chorus-pages-') }, () => {
      throw new Error('no config file in this test');
    });
    server = await startStandalone(config, { dashboardIntervalMs: 200 });
    browser = await launchChromium();
    pages = pageSet(browser);
  });

  after(async () => {
    await pages?.close();
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  const messages = (page: Page) => page.locator('#messages .message');
  const message = (page: Page, text: string) =>
    page.locator('#messages .message', { has: page.locator('.text', { hasText: new RegExp(`^${text}$`) }) });
  const userOf = (page: Page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('chorus-demo-session') ?? '{}').user as string);

  it('chat: two users in two rooms with presence, typing, read receipts and history paging', async () => {
    // A room with 80 messages from before anyone opened it (published through the HTTP API).
    const post = (channel: string, data: unknown) => api(server.url, 'POST', '/api/publish', { channel, data }, API_KEY);
    assert.equal((await post('rooms:index', { id: 'archive', title: 'archive' })).status, 200);
    for (let i = 1; i <= 80; i++) assert.equal((await post('chat:archive', { text: `old ${i}` })).status, 200);

    const ada = await pages.open('Ada');
    const bob = await pages.open('Bob');
    await signIn(ada, server.url, 'Ada');
    await signIn(bob, server.url, 'Bob');
    await ada.locator('#state[data-state="connected"]').waitFor(WAIT);

    // Ada creates a room; Bob's room list gets it live and he switches to it.
    await ada.fill('#room-name', 'Design');
    await ada.press('#room-name', 'Enter');
    await ada.locator('#room-title', { hasText: '# Design' }).waitFor(WAIT);
    await bob.locator('#rooms [data-room="design"]').click();
    await bob.locator('#channel-name', { hasText: 'chat:design' }).waitFor(WAIT);

    // Presence: one fetch on subscribe plus join events.
    await ada.locator('#members .member .name', { hasText: 'Bob' }).waitFor(WAIT);
    await bob.locator('#members .member .name', { hasText: 'Ada' }).waitFor(WAIT);
    assert.equal(await ada.locator('#member-count').textContent(), '2');

    // Typing, then the message, then Ada's read receipt shows under it on Bob's page.
    await bob.locator('#text').pressSequentially('first design note');
    await ada.locator('#typing', { hasText: 'Bob is typing…' }).waitFor(WAIT);
    await bob.press('#text', 'Enter');
    await message(ada, 'first design note').waitFor(WAIT);
    await message(bob, 'first design note').locator('.seen', { hasText: 'Seen by Ada' }).waitFor(WAIT);
    await ada.waitForFunction(() => document.getElementById('typing')?.textContent === '', undefined, WAIT);
    // Bob's receipt for his own message is not shown (receipts of others only, never on their own messages).
    assert.equal(await message(ada, 'first design note').locator('.seen').count(), 0);

    // Two rooms: Bob goes back to the lobby and writes there; Ada (still in design) does not get it.
    await bob.locator('#rooms [data-room="lobby"]').click();
    await bob.locator('#channel-name', { hasText: 'chat:lobby' }).waitFor(WAIT);
    await ada.locator('#members .member .name', { hasText: 'Bob' }).waitFor({ state: 'detached', timeout: WAIT.timeout });
    await bob.fill('#text', 'lobby only');
    await bob.press('#text', 'Enter');
    await message(bob, 'lobby only').waitFor(WAIT);
    assert.equal(await message(ada, 'lobby only').count(), 0);
    // Ada switches to the lobby: the message is there from history, and Bob sees her receipt.
    await ada.locator('#rooms [data-room="lobby"]').click();
    await message(ada, 'lobby only').waitFor(WAIT);
    await message(bob, 'lobby only').locator('.seen', { hasText: 'Seen by Ada' }).waitFor(WAIT);
    await screenshot(bob, 'chat-receipts');

    // Paging: the archive opens with its newest 50; scrolling up loads the 30 before them.
    await bob.locator('#rooms [data-room="archive"]').click();
    await message(bob, 'old 80').waitFor(WAIT);
    assert.equal(await messages(bob).count(), 50);
    assert.equal(await message(bob, 'old 30').count(), 0);
    await bob.locator('#messages').evaluate((box) => (box.scrollTop = 0));
    await message(bob, 'old 1').waitFor(WAIT);
    await bob.locator('#messages').evaluate((box) => (box.scrollTop = 0));
    await bob.locator('#messages .history-start').waitFor(WAIT);
    const texts = await bob.locator('#messages .message .text').allTextContents();
    assert.deepEqual(texts, Array.from({ length: 80 }, (_, i) => `old ${i + 1}`));
    // A live message after paging lands at the end.
    await ada.locator('#rooms [data-room="archive"]').click();
    await message(ada, 'old 80').waitFor(WAIT);
    await ada.fill('#text', 'new in the archive');
    await ada.press('#text', 'Enter');
    await message(bob, 'new in the archive').waitFor(WAIT);
    assert.equal(await bob.locator('#messages .message .text').last().textContent(), 'new in the archive');
    await screenshot(ada, 'chat-archive');

    // A reload restores the session from sessionStorage; the page connects again with its token.
    await bob.reload();
    await bob.locator('#me-name', { hasText: 'Bob' }).waitFor(WAIT);
    await bob.locator('#state[data-state="connected"]').waitFor(WAIT);
    await bob.locator('#messages .message').first().waitFor(WAIT);

    assert.deepEqual(pages.errors, []);
  });

  it('dashboard: charts move, a new viewer starts from history, a reconnecting viewer fills the gap', async () => {
    const viewer = await pages.open('Viewer');
    await signIn(viewer, `${server.url}/dashboard`, 'Viewer');
    const charts = viewer.locator('#charts');
    await viewer.locator('#charts .chart canvas').nth(4).waitFor(WAIT);
    const offsets = async (): Promise<[number, number, number]> => {
      const [range, points] = await charts.evaluate((e) => [e.dataset.offsets ?? '', Number(e.dataset.points)] as const);
      const [first, last] = range.split('-').map(Number);
      return [first ?? NaN, last ?? NaN, points];
    };
    // The charts move: new ticks arrive and nothing is skipped.
    const [, firstLast] = await offsets();
    await until('new ticks on the page', async () => (await offsets())[1] >= firstLast + 3, WAIT.timeout, 50);
    let [first, last, points] = await offsets();
    assert.equal(points, last - first + 1);

    // The server drops the viewer without a reconnect hint; ticks go on meanwhile.
    const user = await userOf(viewer);
    assert.equal((await api(server.url, 'POST', '/api/disconnect', { user, reconnect: false }, API_KEY)).status, 200);
    await viewer.locator('#state[data-state="disconnected"]').waitFor(WAIT);
    const [, lastBefore] = await offsets();
    const missedFrom = server.dashboard.published;
    await until('ticks published while the viewer is away', () => server.dashboard.published >= missedFrom + 5, WAIT.timeout, 50);
    const top = (await server.chorus.history(DASHBOARD_CHANNEL, { limit: 0 })).offset;
    assert.ok(top >= lastBefore + 5);
    await viewer.click('#reconnect');
    await viewer.locator('#state[data-state="connected"][data-connects="2"]').waitFor(WAIT);
    await until('the missed ticks on the page', async () => (await offsets())[1] >= top, WAIT.timeout, 50);
    [first, last, points] = await offsets();
    assert.equal(points, last - first + 1, `a gap after the reconnect: ${points} points for offsets ${first}-${last}`);
    assert.ok(first <= lastBefore, 'the points from before the disconnect are still drawn');
    await screenshot(viewer, 'dashboard');

    // A viewer arriving now starts with the whole window from history.
    const late = await pages.open('Late viewer');
    await signIn(late, `${server.url}/dashboard`, 'Late');
    const lateCharts = late.locator('#charts');
    await late.locator('#charts .chart canvas').nth(4).waitFor(WAIT);
    const lateRange = await lateCharts.evaluate((e) => [e.dataset.offsets ?? '', Number(e.dataset.points)] as const);
    const [lateFirst, lateLast] = lateRange[0].split('-').map(Number);
    assert.equal(lateFirst, 1, 'history from the first tick');
    assert.equal(lateRange[1], (lateLast ?? 0) - (lateFirst ?? 0) + 1);
    assert.ok((lateLast ?? 0) >= top);

    assert.deepEqual(pages.errors, []);
  });

  it('editor: the bundle loads, CodeMirror runs, and the page links to the others', async () => {
    const page = await pages.open('Editor');
    await signIn(page, `${server.url}/editor`, 'Eve');
    await page.locator('#editor .cm-editor .cm-content').waitFor(WAIT);
    await page.locator('#editor .cm-content').click();
    await page.keyboard.type('hello from Eve');
    await page.locator('#editor .cm-content', { hasText: 'hello from Eve' }).waitFor(WAIT);
    await page.locator('#peers .peer', { hasText: 'Eve' }).waitFor(WAIT);
    for (const href of ['/', '/dashboard', '/editor']) assert.equal(await page.locator(`nav.pages a[href="${href}"]`).count(), 1);
    await screenshot(page, 'editor');
    assert.deepEqual(pages.errors, []);
  });

  it('editor: two pages edit one document on the server\'s /yjs endpoint and see each other\'s cursors', async () => {
    const urls: string[] = [];
    const open = async (name: string): Promise<Page> => {
      const page = await pages.open(`Editor ${name}`);
      page.on('websocket', (ws) => urls.push(ws.url()));
      await signIn(page, `${server.url}/editor#doc:plans`, name);
      await page.locator('#editor .cm-content').waitFor(WAIT);
      await page.locator('#sync[data-state="connected"]').waitFor(WAIT);
      return page;
    };
    const ada = await open('Ada');
    const bob = await open('Bob');
    assert.equal(urls.length, 2);
    for (const url of urls) assert.match(url, /\/yjs\/doc:plans\?token=ey/);

    await ada.locator('#editor .cm-content').click();
    await ada.keyboard.type('Plans: ');
    await bob.locator('#editor .cm-content', { hasText: 'Plans:' }).waitFor(WAIT);
    await bob.locator('#editor .cm-content').click();
    await bob.keyboard.press('End');
    // Both type at once; the texts converge.
    await Promise.all([ada.keyboard.type('ship it'), bob.keyboard.type(' soon')]);
    const text = editorText;
    await until('both editors show the same text', async () => (await text(ada)) === (await text(bob)), WAIT.timeout, 50);
    for (const word of ['Plans:', 'ship it', 'soon']) assert.ok((await text(ada)).includes(word), await text(ada));
    // The server holds the same text (the documents API reads its live state).
    const stored = await api(server.url, 'GET', '/api/documents/doc:plans?format=text&field=codemirror', undefined, API_KEY);
    assert.equal(stored.status, 200);
    assert.equal(stored.body, await text(ada));

    // Cursors with names and both peers listed, drawn without any style attribute.
    await ada.locator('#editor .cm-peer-caret .cm-peer-name', { hasText: 'Bob' }).waitFor(WAIT);
    await bob.locator('#editor .cm-peer-caret .cm-peer-name', { hasText: 'Ada' }).waitFor(WAIT);
    await ada.locator('#peers .peer', { hasText: 'Bob' }).waitFor(WAIT);
    assert.equal(await ada.locator('#editor .cm-peer-caret[style]').count(), 0);
    await screenshot(ada, 'editor-two-users');
    assert.deepEqual(pages.errors, []);
  });
});
