/**
 * `chorus init`: each template generated into a temporary directory, installed with Chorus from
 * this checkout (`npm pack` of it: run `npm run build` first), started with `npm start` on a
 * free port, and driven in Chromium. npm reads the npm cache first (`--prefer-offline`) and
 * skips install scripts (no native builds: the templates need none of them).
 */
import { strict as assert } from 'node:assert';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { runInit, parseInitArgs, InitError, TEMPLATES } from '../src/cli/init.js';
import { DIST_ROOT, PACKAGE_ROOT } from '../src/cli/static.js';
import { launchChromium, pageSet, screenshot, WAIT, type PageSet } from './browser-helpers.js';

const run = promisify(execFile);
/** npm install of one app, at most (ms). */
const INSTALL_TIMEOUT_MS = 240_000;

/** The environment for npm and the apps: without the test runner's own variables. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return env;
}

interface App {
  url: string;
  child: ChildProcess;
  output: string[];
}

/** `npm start` in `dir` (its own process group), resolved once it prints its URL. */
function startApp(dir: string): Promise<App> {
  const child = spawn('npm', ['start', '--silent'], { cwd: dir, env: childEnv({ PORT: '0' }), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${dir}: no "listening on" line within 60 s:\n${output.join('')}`)), 60_000);
    const onData = (chunk: Buffer): void => {
      output.push(chunk.toString());
      const match = /listening on (http:\/\/\S+)/.exec(output.join(''));
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ url: match[1], child, output });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${dir}: npm start exited with ${code}:\n${output.join('')}`));
    });
  });
}

async function stopApp(app: App | undefined): Promise<void> {
  if (!app?.child.pid || app.child.exitCode !== null) return;
  const exited = new Promise((resolve) => app.child.once('exit', resolve));
  process.kill(-app.child.pid, 'SIGTERM'); // npm and the app: the group this test started
  const timer = setTimeout(() => app.child.pid && process.kill(-app.child.pid, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}


describe('chorus init', () => {
  it('parses its arguments and refuses bad ones with a code', () => {
    const o = parseInitArgs(['my-app', '--template', 'chat', '--chorus', '^1.0.0'], '/tmp');
    assert.deepEqual(o, { dir: '/tmp/my-app', template: 'chat', name: 'my-app', chorusSpec: '^1.0.0', force: false });
    assert.equal(parseInitArgs(['x', '--template=editor', '--name', 'notes'], '/tmp').name, 'notes');
    const bad: Array<[string[], string]> = [
      [['--template', 'chat'], 'INIT_USAGE'],
      [['app'], 'INIT_USAGE'],
      [['app', '--template', 'blog'], 'INIT_BAD_TEMPLATE'],
      [['app', '--template', 'chat', '--name', 'Bad Name'], 'INIT_BAD_NAME'],
      [['app', '--template', 'chat', '--wat'], 'INIT_USAGE'],
      [['app', 'other', '--template', 'chat'], 'INIT_USAGE'],
    ];
    for (const [argv, code] of bad) assert.throws(() => parseInitArgs(argv, '/tmp'), (err: unknown) => err instanceof InitError && err.code === code, argv.join(' '));
  });

  it('refuses a non-empty directory unless --force', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chorus-init-'));
    try {
      const out: string[] = [];
      const io = { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => out.push(t) }, cwd: dir };
      assert.equal(await runInit(['app', '--template', 'chat'], io), 0);
      assert.ok(existsSync(join(dir, 'app/.gitignore')));
      assert.equal(await runInit(['app', '--template', 'chat'], io), 1);
      assert.match(out.join(''), /is not empty/);
      assert.equal(await runInit(['app', '--template', 'dashboard', '--force'], io), 0);
      const pkg = JSON.parse(readFileSync(join(dir, 'app/package.json'), 'utf8')) as { name: string; dependencies: Record<string, string> };
      assert.equal(pkg.name, 'app');
      assert.equal(pkg.dependencies.chorus, `file:${PACKAGE_ROOT.replace(/\/$/, '')}`, 'from a clone, the app depends on the clone');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('chorus init apps, installed and driven in chromium', { timeout: 900_000 }, () => {
  let tmp: string;
  let tarball: string;
  let browser: Browser;
  let pages: PageSet;
  const apps: App[] = [];

  before(async () => {
    assert.ok(existsSync(join(DIST_ROOT, 'client/index.js')), 'dist/ is missing: run `npm run build` before this test');
    tmp = await mkdtemp(join(tmpdir(), 'chorus-templates-'));
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', tmp], { cwd: PACKAGE_ROOT, env: childEnv() });
    tarball = join(tmp, stdout.trim().split('\n').pop() as string);
    assert.ok(existsSync(tarball), `npm pack wrote ${tarball}`);
    browser = await launchChromium();
    pages = pageSet(browser);
  });

  after(async () => {
    for (const app of apps) await stopApp(app);
    await pages?.close();
    await browser?.close().catch(() => undefined);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  async function generate(template: (typeof TEMPLATES)[number]): Promise<string> {
    const dir = join(tmp, `${template}-app`);
    const out: string[] = [];
    const io = { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => out.push(t) }, cwd: tmp };
    assert.equal(await runInit([dir, '--template', template, '--chorus', `file:${tarball}`], io), 0, out.join(''));
    for (const file of ['package.json', 'server.js', 'README.md', 'public/index.html']) assert.ok(existsSync(join(dir, file)), `${template}: ${file}`);
    assert.doesNotMatch(readFileSync(join(dir, 'public/index.html'), 'utf8'), /\{\{name\}\}/);
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, env: childEnv(), timeout: INSTALL_TIMEOUT_MS });
    return dir;
  }

  it('chat: two users chat with presence and typing; a late joiner gets the history', async () => {
    const app = await startApp(await generate('chat'));
    apps.push(app);
    const join = async (name: string) => {
      const page = await pages.open(`chat ${name}`);
      await page.goto(app.url);
      await page.fill('#name', name);
      await page.press('#name', 'Enter');
      await page.locator('#state[data-state="connected"]').waitFor(WAIT);
      return page;
    };
    const ada = await join('Ada');
    const bob = await join('Bob');
    await ada.locator('#members li', { hasText: 'Bob' }).waitFor(WAIT);
    await bob.locator('#members li', { hasText: 'Ada' }).waitFor(WAIT);
    await ada.locator('#text').pressSequentially('hi Bob');
    await bob.locator('#typing', { hasText: 'Ada is typing…' }).waitFor(WAIT);
    await ada.press('#text', 'Enter');
    await bob.locator('#messages li', { hasText: 'hi Bob' }).waitFor(WAIT);
    await bob.waitForFunction(() => document.getElementById('typing')?.textContent === '', undefined, WAIT);
    const cy = await join('Cy');
    await cy.locator('#messages li', { hasText: 'hi Bob' }).waitFor(WAIT);
    assert.equal(await cy.locator('#messages li', { hasText: 'hi Bob' }).count(), 1);
    await ada.locator('#count', { hasText: '3' }).waitFor(WAIT);
    await screenshot(ada, 'template-chat');
    assert.deepEqual(pages.errors, []);
  });

  it('dashboard: the chart fills from history and moves', async () => {
    const app = await startApp(await generate('dashboard'));
    apps.push(app);
    const page = await pages.open('dashboard');
    await page.goto(app.url);
    await page.locator('#state[data-state="connected"]').waitFor(WAIT);
    await page.locator('#chart canvas').waitFor(WAIT);
    const points = () => page.locator('#chart').evaluate((e) => Number(e.dataset.points));
    const start = await points();
    await page.waitForFunction((n) => Number(document.getElementById('chart')?.dataset.points) >= n + 2, start, WAIT);
    // A second viewer starts with the points so far (from history), not an empty chart.
    const late = await pages.open('dashboard late');
    await late.goto(app.url);
    await late.waitForFunction((n) => Number(document.getElementById('chart')?.dataset.points) >= n + 2, start, WAIT);
    await screenshot(page, 'template-dashboard');
    assert.deepEqual(pages.errors, []);
  });

  it('editor: installs and bundles its page; two users edit one document on its /yjs endpoint', async () => {
    const dir = await generate('editor');
    await run('npm', ['run', 'build', '--silent'], { cwd: dir, env: childEnv(), timeout: 120_000 });
    assert.ok(existsSync(join(dir, 'public/editor.js')));
    const app = await startApp(dir);
    apps.push(app);
    const open = async (name: string) => {
      const page = await pages.open(`editor ${name}`);
      await page.goto(app.url);
      await page.fill('#name', name);
      await page.press('#name', 'Enter');
      await page.locator('#status[data-state="connected"]').waitFor(WAIT);
      return page;
    };
    const ada = await open('Ada');
    const bob = await open('Bob');
    await ada.locator('.cm-content').click();
    await ada.keyboard.type('written by Ada');
    await bob.locator('.cm-content', { hasText: 'written by Ada' }).waitFor(WAIT);
    await bob.locator('.cm-ySelectionInfo', { hasText: 'Ada' }).waitFor({ state: 'attached', timeout: WAIT.timeout });
    await screenshot(bob, 'template-editor');
    assert.deepEqual(pages.errors, []);
  });
});
