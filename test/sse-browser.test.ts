/**
 * A bare browser EventSource on /sse (no Chorus client) loses nothing across a server-side
 * disconnect: it reconnects by itself with Last-Event-ID and the server fills the gap on every
 * channel, in order, without duplicates.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { signToken } from './helpers.js';
import { ARTIFACTS, chromiumMissing, launchChromium, startPageServer, type PageServer } from './page-helpers.js';

const PAGE = `<!doctype html><meta charset="utf-8"><title>sse</title><pre id="log"></pre><script>
  window.frames_ = []; window.opens = 0;
  const params = new URLSearchParams(location.search);
  const es = new EventSource('/sse?channel=chat:b1&channel=chat:b2&token=' + encodeURIComponent(params.get('token')));
  es.onopen = () => window.opens++;
  es.onmessage = (e) => { const f = JSON.parse(e.data); window.frames_.push(f); document.getElementById('log').textContent += e.data.slice(0, 120) + '\\n'; };
</script>`;

describe('a bare EventSource in Chromium', { skip: chromiumMissing, timeout: 120_000 }, () => {
  let server: PageServer;
  let browser: Browser;

  before(async () => {
    server = await startPageServer({ '/sse.html': { type: 'text/html', body: PAGE } });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await server?.close();
  });

  test('loses nothing across a server-side disconnect (Last-Event-ID resume on both channels)', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${server.url}/sse.html?token=${await signToken('ada')}`);
    const count = (event: string) => page.evaluate((e) => (window as any).frames_.filter((f: any) => f.event === e).length, event);
    await page.waitForFunction(() => (window as any).frames_.filter((f: any) => f.event === 'subscribed').length === 2, undefined, { timeout: 15_000 });
    for (let i = 0; i < 5; i++) for (const c of ['chat:b1', 'chat:b2']) await server.chorus.publish(c, { i });
    await page.waitForFunction(() => (window as any).frames_.filter((f: any) => f.event === 'message').length === 10, undefined, { timeout: 15_000 });
    // The server ends the stream (a disconnect frame, reconnect allowed); publications keep coming
    // while the EventSource waits its retry delay.
    await server.chorus.disconnectUser('ada', { reconnect: true });
    for (let i = 5; i < 12; i++) for (const c of ['chat:b1', 'chat:b2']) await server.chorus.publish(c, { i });
    await page.waitForFunction(() => (window as any).frames_.filter((f: any) => f.event === 'subscribed').length === 4, undefined, { timeout: 15_000 });
    for (let i = 12; i < 14; i++) for (const c of ['chat:b1', 'chat:b2']) await server.chorus.publish(c, { i });
    await page.waitForFunction(() => (window as any).frames_.filter((f: any) => f.event === 'message').length === 28, undefined, { timeout: 15_000 });
    const frames = (await page.evaluate(() => (window as any).frames_)) as any[];
    for (const channel of ['chat:b1', 'chat:b2']) {
      const messages = frames.filter((f) => f.event === 'message' && f.data.channel === channel);
      assert.deepEqual(messages.map((m) => m.data.data.i), [...Array(14).keys()], channel);
      const offsets = messages.map((m) => m.data.offset);
      offsets.forEach((o, k) => k > 0 && assert.equal(o, offsets[k - 1] + 1));
    }
    const resumed = frames.filter((f) => f.event === 'subscribed').slice(2);
    assert.ok(resumed.every((f) => f.data.recovered === true), JSON.stringify(resumed));
    assert.equal(await count('connected'), 2, 'one reconnect');
    assert.equal(frames.find((f) => f.event === 'disconnect').data.code, 4004);
    assert.equal(await page.evaluate(() => (window as any).opens), 2);
    await page.screenshot({ path: `${ARTIFACTS}/sse-eventsource.png` });
    assert.deepEqual(errors, []);
    await page.close();
  });
});
