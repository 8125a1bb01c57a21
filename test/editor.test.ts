/**
 * The standalone server's `/editor` page in Chromium, on the server's real `/yjs` endpoint (the
 * CLI's `startStandalone`, documents in SQLite under a temporary CHORUS_DATA_DIR):
 * - two pages type at once at random places in the text (hundreds of edits) and end with the same
 *   text, holding every keystroke exactly once;
 * - a page goes offline, both edit, it comes back and the edits merge;
 * - the server restarts on the same data directory and a new page reads the texts intact.
 * Needs `npm run build` first (the page loads dist/web/). Screenshots go to test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page, WebSocketRoute } from 'playwright-core';
import { loadConfig, type StandaloneConfig } from '../src/cli/config.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { DIST_ROOT } from '../src/cli/static.js';
import { editorText, launchChromium, pageSet, screenshot, signIn, WAIT, type PageSet } from './browser-helpers.js';
import { tempDir, until } from './helpers.js';

const API_KEY = 'editor-test-api-key';
/** Keystrokes per page in the concurrent-typing test. */
const EDITS_PER_PAGE = 200;
/** The concurrent typing must be done within this, in ms (a bound, not a speed assertion). */
const TYPING_BUDGET_MS = 120_000;

/** A small seeded PRNG (mulberry32), so a failing run can be repeated with its seed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Screen boxes of the text in the editor: one per visual row of each line. */
function textBoxes(page: Page): Promise<Box[]> {
  return page.locator('#editor .cm-content').evaluate((content) => {
    const boxes: Array<{ x: number; y: number; width: number; height: number }> = [];
    for (const line of Array.from(content.querySelectorAll('.cm-line'))) {
      const range = document.createRange();
      range.selectNodeContents(line);
      for (const r of Array.from(range.getClientRects())) if (r.width > 1 && r.height > 1) boxes.push({ x: r.x, y: r.y, width: r.width, height: r.height });
    }
    return boxes;
  });
}

/**
 * Types `char` `count` times, each time after clicking a random spot of the text (so the caret
 * lands at a random position). Two clicks in a row are never within 3 px of each other: CodeMirror
 * would take them for a double click and select a word, which the next keystroke would replace.
 */
async function typeAtRandomSpots(page: Page, char: string, count: number, random: () => number, deadline: number): Promise<void> {
  let boxes: Box[] = [];
  let last = { x: -100, y: -100 };
  for (let i = 0; i < count; i++) {
    assert.ok(Date.now() < deadline, `typing "${char}" ran out of time after ${i} of ${count} edits`);
    if (i % 8 === 0) boxes = await textBoxes(page);
    const total = boxes.reduce((sum, b) => sum + b.width, 0);
    let spot = last;
    for (let tries = 0; tries < 20 && Math.abs(spot.x - last.x) < 3 && Math.abs(spot.y - last.y) < 3; tries++) {
      let at = random() * total;
      const box = boxes.find((b) => (at -= b.width) < 0) ?? boxes[boxes.length - 1]!;
      spot = { x: box.x + random() * box.width, y: box.y + box.height / 2 };
    }
    last = spot;
    await page.mouse.click(spot.x, spot.y);
    await page.keyboard.type(char);
  }
}

const count = (text: string, char: string) => text.split(char).length - 1;

/**
 * A switchable network for one page's `/yjs` sockets: online, each socket is passed through to
 * the server; offline, the open ones are cut and new ones are closed at once. (Chromium's own
 * offline mode, `context.setOffline`, does not touch WebSockets; it is switched too, so the page
 * also sees `navigator.onLine` false and its HTTP requests fail.)
 */
class Network {
  private online = true;
  private readonly sockets: Array<{ page: WebSocketRoute; server: WebSocketRoute }> = [];
  connections = 0;

  constructor(private readonly context: BrowserContext) {}

  async route(page: Page): Promise<void> {
    await page.routeWebSocket(/\/yjs\//, (ws) => {
      if (!this.online) {
        ws.close({ code: 1001, reason: 'offline' });
        return;
      }
      this.connections++;
      this.sockets.push({ page: ws, server: ws.connectToServer() });
    });
  }

  async goOffline(): Promise<void> {
    this.online = false;
    await this.context.setOffline(true);
    for (const { page, server } of this.sockets.splice(0)) {
      await page.close({ code: 1001, reason: 'offline' }).catch(() => undefined);
      await server.close().catch(() => undefined);
    }
  }

  async goOnline(): Promise<void> {
    this.online = true;
    await this.context.setOffline(false);
  }
}

describe('the /editor page in chromium, on the standalone server', { timeout: 300_000 }, () => {
  let config: StandaloneConfig;
  let dataDir: string;
  let server: StandaloneHandle;
  let browser: Browser;
  let pages: PageSet;
  /** Each test's document and its final text, read back after the restart. */
  const finals = new Map<string, string>();

  before(async () => {
    assert.ok(existsSync(`${DIST_ROOT}/web/editor.js`), 'dist/web/editor.js is missing: run `npm run build` before this test');
    dataDir = tempDir('chorus-editor-');
    config = loadConfig(['--port', '0', '--host', '127.0.0.1', '--log-level', 'silent'], { CHORUS_API_KEY: API_KEY, CHORUS_DATA_DIR: dataDir }, () => {
      throw new Error('no config file in this test');
    });
    server = await startStandalone(config);
    browser = await launchChromium();
    pages = pageSet(browser);
  });

  after(async () => {
    await pages?.close();
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  async function openEditor(name: string, document: string, setup?: (page: Page) => Promise<void>): Promise<Page> {
    const page = await pages.open(`${name} (${document})`, { width: 900, height: 900 });
    await setup?.(page);
    await signIn(page, `${server.url}/editor#${document}`, name);
    await page.locator('#editor .cm-content').waitFor(WAIT);
    await page.locator('#sync[data-state="connected"]').waitFor(WAIT);
    return page;
  }

  /** The server's text of a document (the documents API reads its live or stored state). */
  async function serverText(document: string): Promise<string> {
    const res = await fetch(`${server.url}/api/documents/${encodeURIComponent(document)}?format=text&field=codemirror`, {
      headers: { authorization: `Bearer ${API_KEY}` },
    });
    assert.equal(res.status, 200);
    return res.text();
  }

  it(`two pages type at random places at once (${EDITS_PER_PAGE} keystrokes each) and end with the same text`, async () => {
    const document = 'doc:race';
    const seed = Math.floor(Math.random() * 2 ** 32);
    const ada = await openEditor('Ada', document);
    const bob = await openEditor('Bob', document);
    await ada.locator('#editor .cm-content').click();
    await ada.keyboard.type('Go! ');
    await until('Bob has the start', async () => (await editorText(bob)) === 'Go! ', WAIT.timeout, 20);
    await bob.locator('#peers .peer', { hasText: 'Ada' }).waitFor(WAIT);

    // The test types faster than people do (each keystroke is an update and a cursor awareness
    // message), so a page may go past the default 50 messages/s and be closed with 4529 now and
    // then: the provider reconnects and re-syncs, and the texts must still converge.
    const deadline = Date.now() + TYPING_BUDGET_MS;
    await Promise.all([
      typeAtRandomSpots(ada, 'a', EDITS_PER_PAGE, seeded(seed), deadline),
      typeAtRandomSpots(bob, 'b', EDITS_PER_PAGE, seeded(seed ^ 0x9e3779b9), deadline),
    ]);

    const length = 4 + 2 * EDITS_PER_PAGE;
    await until(
      `both pages hold all ${length} characters (seed ${seed})`,
      async () => {
        const [a, b] = await Promise.all([editorText(ada), editorText(bob)]);
        return a === b && a.length === length;
      },
      30_000,
      50,
    ).catch(async (err: Error) => {
      const texts = await Promise.all([editorText(ada), editorText(bob), serverText(document), ada.locator("#sync").getAttribute("data-state").then(String), bob.locator("#sync").getAttribute("data-state").then(String)]);
      throw new Error(`${err.message}; Ada, Bob, server: ${texts.map((t) => `${t.length} ${JSON.stringify(t)}`).join(' | ')}`);
    });
    const text = await editorText(ada);
    // Every keystroke exactly once: none lost, none doubled, none replaced.
    assert.equal(count(text, 'a'), EDITS_PER_PAGE, `seed ${seed}: ${text}`);
    assert.equal(count(text, 'b'), EDITS_PER_PAGE, `seed ${seed}: ${text}`);
    // Typed at random places, so the two users' letters are interleaved, not two blocks.
    const runs = text.replace(/[^ab]/g, '').match(/a+|b+/g)?.length ?? 0;
    assert.ok(runs > 40, `seed ${seed}: only ${runs} runs of a/b in ${text}`);
    assert.equal(await serverText(document), text);
    await screenshot(ada, 'editor-race-ada');
    await screenshot(bob, 'editor-race-bob');
    finals.set(document, text);
    assert.deepEqual(pages.errors, []);
  });

  it('a page goes offline, both edit, it comes back and the edits merge', async () => {
    const document = 'doc:offline';
    const ada = await openEditor('Ada', document);
    let network!: Network;
    const bob = await openEditor('Bob', document, async (page) => {
      network = new Network(page.context());
      await network.route(page);
    });
    await ada.locator('#editor .cm-content').click();
    await ada.keyboard.type('shared start.');
    await until('Bob has the start', async () => (await editorText(bob)) === 'shared start.', WAIT.timeout, 20);

    await network.goOffline();
    await bob.locator('#sync:not([data-state="connected"])').waitFor(WAIT);
    // Bob edits at the start, Ada at the end, each unaware of the other.
    await bob.locator('#editor .cm-content').click();
    await bob.keyboard.press('Control+Home');
    await bob.keyboard.type('[offline Bob] ');
    await ada.keyboard.press('Control+End');
    await ada.keyboard.type(' [online Ada]');
    await until('Ada has her edit', async () => (await editorText(ada)).endsWith(' [online Ada]'), WAIT.timeout, 20);
    await until('the server has Ada\'s edit', async () => (await serverText(document)).endsWith(' [online Ada]'), WAIT.timeout, 20);
    assert.equal(await editorText(bob), '[offline Bob] shared start.', 'offline, Bob sees only his own edit');
    assert.ok(!(await editorText(ada)).includes('offline Bob'), 'Bob\'s offline edit cannot have reached Ada');
    assert.ok(!(await serverText(document)).includes('offline Bob'));
    await screenshot(bob, 'editor-offline-bob');

    const before = network.connections;
    await network.goOnline();
    const merged = '[offline Bob] shared start. [online Ada]';
    await until('both pages have both edits', async () => (await editorText(ada)) === merged && (await editorText(bob)) === merged, 20_000, 50);
    assert.ok(network.connections > before, 'Bob reconnected through the network switch');
    await bob.locator('#sync[data-state="connected"]').waitFor(WAIT);
    assert.equal(await serverText(document), merged);
    await screenshot(bob, 'editor-offline-merged');
    finals.set(document, merged);
    assert.deepEqual(pages.errors, []);
  });

  it('a page whose demo token cannot be renewed while offline retries with backoff and reconnects once online', async () => {
    const document = 'doc:renew';
    const STORAGE_KEY = 'chorus-demo-session';
    let network!: Network;
    const dan = await openEditor('Dan', document, async (page) => {
      network = new Network(page.context());
      await network.route(page);
    });
    // The stored demo token is made to look close to expiry (the server still accepts it), so
    // every reconnect renews it first through POST /demo/token; reloaded, the page reads it back.
    const stored = () => dan.evaluate((key) => JSON.parse(sessionStorage.getItem(key) ?? 'null') as { token: string } | null, STORAGE_KEY);
    const oldToken = (await stored())!.token;
    await dan.evaluate((key) => {
      const session = JSON.parse(sessionStorage.getItem(key)!) as { exp: number };
      session.exp = Math.floor(Date.now() / 1000) + 30;
      sessionStorage.setItem(key, JSON.stringify(session));
    }, STORAGE_KEY);
    await dan.reload();
    await dan.locator('#sync[data-state="connected"]').waitFor(WAIT);

    await network.goOffline();
    // The renewal failed (the page stopped its provider: a stale token would only be refused).
    await dan.locator('#editor-error', { hasText: 'Could not renew your sign-in' }).waitFor(WAIT);
    await dan.locator('#sync:not([data-state="connected"])').waitFor(WAIT);
    await dan.locator('#editor .cm-content').click();
    await dan.keyboard.type('written while offline');
    await screenshot(dan, 'editor-renew-offline');

    const before = network.connections;
    await network.goOnline();
    // Only a later renewal, tried again with backoff, can reconnect it: the next retry comes
    // within the backoff ceiling (30 s at most).
    await dan.locator('#sync[data-state="connected"]').waitFor({ timeout: 45_000 });
    assert.ok(network.connections > before, 'reconnected');
    assert.notEqual((await stored())!.token, oldToken, 'with a renewed token');
    await until('the server has the offline edit', async () => (await serverText(document)) === 'written while offline', WAIT.timeout, 50);
    await screenshot(dan, 'editor-renew-online');
    // Offline, the failed renewals are logged by Chromium; nothing else may be.
    assert.deepEqual(pages.errors.filter((e) => !/ERR_INTERNET_DISCONNECTED/.test(e)), []);
  });

  it('after a server restart on the same data directory, a new page reads the texts intact', async () => {
    assert.equal(finals.size, 2, 'the tests before this one wrote the documents');
    await pages.close();
    pages = pageSet(browser);
    await server.close();
    assert.ok(existsSync(join(dataDir, 'documents.sqlite')), 'documents are stored under CHORUS_DATA_DIR');
    // The same config: the same demo secret and data directory (port 0 picks a new port).
    server = await startStandalone(config);
    for (const [document, text] of finals) assert.equal(await serverText(document), text, `${document} from the store`);

    const cyd = await openEditor('Cyd', 'doc:race');
    await until('the race text is back', async () => (await editorText(cyd)) === finals.get('doc:race'), WAIT.timeout, 50);
    await cyd.locator('#editor .cm-content').click();
    await cyd.keyboard.press('Control+End');
    await cyd.keyboard.type(' Cyd');
    await until('the server has the new edit', async () => (await serverText('doc:race')) === `${finals.get('doc:race')} Cyd`, WAIT.timeout, 50);
    await screenshot(cyd, 'editor-after-restart');
    await cyd.evaluate(() => (location.hash = '#doc:offline'));
    await until('the offline text is back', async () => (await editorText(cyd)) === finals.get('doc:offline'), WAIT.timeout, 50);
    await screenshot(cyd, 'editor-after-restart-offline');
    assert.deepEqual(pages.errors, []);
  });
});
