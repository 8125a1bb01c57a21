/**
 * The live dashboard of a cluster: two standalone nodes on one real redis-server each publish
 * their figures to `dash:nodes`; a viewer connected to one node sees both nodes, with a series
 * per node in every chart. Needs `npm run build` first (the page loads dist/web/).
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { loadConfig } from '../src/cli/config.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { launchChromium, pageSet, screenshot, WAIT, type PageSet } from './browser-helpers.js';
import { SECRET, signToken } from './helpers.js';
import { RedisProcess } from './redis-helpers.js';

describe('dashboard of a two-node cluster', { timeout: 120_000 }, () => {
  let redis: RedisProcess;
  const nodes: StandaloneHandle[] = [];
  let browser: Browser;
  let pages: PageSet;

  before(async () => {
    redis = await RedisProcess.start();
    for (const nodeId of ['node-a', 'node-b']) {
      const config = loadConfig(
        ['--port', '0', '--host', '127.0.0.1', '--log-level', 'silent'],
        { CHORUS_JWT_SECRET: SECRET, CHORUS_REDIS_URL: redis.url },
        () => {
          throw new Error('no config file in this test');
        },
      );
      nodes.push(await startStandalone({ ...config, server: { ...config.server, nodeId } }, { dashboardIntervalMs: 250 }));
    }
    browser = await launchChromium();
    pages = pageSet(browser);
  });

  after(async () => {
    await pages?.close();
    await browser?.close().catch(() => undefined);
    for (const node of nodes) await node.close();
    await redis?.stop();
  });

  it("a viewer on one node charts both nodes' figures", async () => {
    const page = await pages.open('Viewer');
    await page.goto(`${nodes[0]!.url}/dashboard`);
    // A JWT key is configured, so no demo sign-in: the page takes a token.
    await page.locator('#token-box summary').click();
    await page.fill('#token', await signToken('viewer', { claims: { info: { name: 'Viewer' } } }));
    await page.click('#token-button');
    await page.locator('#charts .chart canvas').nth(4).waitFor(WAIT);
    await page.locator('#tiles .tile', { hasText: 'Nodes' }).locator('.value', { hasText: /^2$/ }).waitFor(WAIT);
    const legend = await page.locator('[data-chart="conns"] .u-legend').innerText();
    assert.match(legend, /node-a connections/);
    assert.match(legend, /node-b connections/);
    await screenshot(page, 'dashboard-cluster');
    assert.deepEqual(pages.errors, []);
  });
});
