/**
 * Chromium for page tests: Debian's /usr/bin/chromium driven by playwright-core (never a
 * downloaded browser). Every page records its errors (uncaught exceptions, console errors,
 * HTTP >= 400) so a test can assert there were none, and `screenshot` saves a PNG under
 * test-artifacts/ (git-ignored) for a person to look at.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const WAIT = { timeout: 15_000 };
export const ARTIFACTS = resolve(fileURLToPath(new URL('../test-artifacts/', import.meta.url)));

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
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
}

export interface PageSet {
  /** A page in a fresh context (own sessionStorage), its errors recorded under `name`. */
  open(name: string, viewport?: { width: number; height: number }): Promise<Page>;
  /** Errors of every page so far, each prefixed with the page's name. */
  errors: string[];
  close(): Promise<void>;
}

/** `ignore`: error texts that are expected (e.g. a socket to an endpoint that does not exist yet). */
export function pageSet(browser: Browser, ignore: RegExp[] = []): PageSet {
  const contexts: BrowserContext[] = [];
  const errors: string[] = [];
  const record = (text: string): void => {
    if (!ignore.some((re) => re.test(text))) errors.push(text);
  };
  return {
    errors,
    async open(name, viewport = { width: 1280, height: 800 }) {
      const context = await browser.newContext({ viewport });
      contexts.push(context);
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT.timeout);
      page.on('pageerror', (err) => record(`${name}: ${err.message}`));
      page.on('console', (msg) => {
        if (msg.type() === 'error') record(`${name} console: ${msg.text()}`);
      });
      page.on('response', (res) => {
        if (res.status() >= 400) record(`${name}: HTTP ${res.status()} for ${res.url()}`);
      });
      return page;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => undefined);
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: resolve(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Signs in on any of the standalone's pages with the demo sign-in. */
export async function signIn(page: Page, url: string, name: string): Promise<void> {
  await page.goto(url);
  await page.fill('#name', name);
  await page.click('#signin-button');
  await page.locator('#me-name', { hasText: name }).waitFor(WAIT);
}

/**
 * The text of the standalone editor page's document as CodeMirror shows it: its lines without
 * the other users' cursor widgets (name tags). For documents that fit in the editor's viewport.
 */
export function editorText(page: Page): Promise<string> {
  return page.locator('#editor .cm-content').evaluate((content) => {
    const copy = content.cloneNode(true) as HTMLElement;
    copy.querySelectorAll('.cm-peer-caret').forEach((caret) => caret.remove());
    return Array.from(copy.querySelectorAll('.cm-line'), (line) => line.textContent).join('\n');
  });
}
