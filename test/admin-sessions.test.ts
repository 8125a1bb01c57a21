/**
 * The admin console's session limits at their edges, with an injected clock and a fake host:
 * the idle timeout, the number of sessions, and failed sign-ins per minute.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { AdminConsole, type AdminHost, type AdminOptions } from '../src/cli/admin.js';

const KEY = 'admin-key-0123456789';

async function serve(options: AdminOptions): Promise<{ url: string; close(): Promise<void> }> {
  const host: AdminHost = {
    options: { apiKey: KEY, nodeId: 'n1' },
    logger: pino({ level: 'silent' }),
    cluster: {
      nodes: async () => [],
      channels: async () => ({ channels: [], nodes: ['n1'] }),
      request: async () => ({ count: 0, nodes: ['n1'], missing: [] }),
    },
    presence: async (channel) => ({ channel, members: [] }),
    history: async (channel) => ({ channel, publications: [] }),
    publish: async () => ({ offset: 1, epoch: 'e' }),
  };
  const admin = new AdminConsole(host, options);
  const server = http.createServer((req, res) => void admin.handle(req, res, new URL(req.url!, 'http://x').pathname));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function signIn(url: string, key = KEY): Promise<{ status: number; cookie: string }> {
  const res = await fetch(`${url}/admin/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) });
  await res.text();
  return { status: res.status, cookie: (res.headers.get('set-cookie') ?? '').split(';')[0]! };
}

const overview = async (url: string, cookie: string) => (await fetch(`${url}/admin/api/overview`, { headers: { cookie } })).status;

describe('admin console sessions', () => {
  test('idleTimeoutMs: a session idle exactly that long lives; one more ms and it is gone', async () => {
    let now = 1_000_000;
    const s = await serve({ idleTimeoutMs: 1000, now: () => now });
    try {
      const { cookie } = await signIn(s.url);
      now += 1000;
      assert.equal(await overview(s.url, cookie), 200, 'at the limit');
      now += 1001;
      assert.equal(await overview(s.url, cookie), 401, 'one ms past it');
    } finally {
      await s.close();
    }
  });

  test('maxSessions: one more sign-in ends the oldest session', async () => {
    const s = await serve({ maxSessions: 2 });
    try {
      const a = await signIn(s.url);
      const b = await signIn(s.url);
      assert.equal(await overview(s.url, a.cookie), 200);
      const c = await signIn(s.url);
      assert.equal(await overview(s.url, a.cookie), 401, 'the oldest ended');
      assert.equal(await overview(s.url, b.cookie), 200);
      assert.equal(await overview(s.url, c.cookie), 200);
    } finally {
      await s.close();
    }
  });

  test('maxFailedSignInsPerMinute: that many wrong keys are 401, then 429 until a minute after the first', async () => {
    let now = 5_000_000;
    const s = await serve({ maxFailedSignInsPerMinute: 2, now: () => now });
    try {
      assert.equal((await signIn(s.url, 'wrong')).status, 401);
      assert.equal((await signIn(s.url, 'wrong')).status, 401);
      assert.equal((await signIn(s.url, 'wrong')).status, 429);
      assert.equal((await signIn(s.url)).status, 429, 'even the right key waits');
      now += 60_000;
      assert.equal((await signIn(s.url)).status, 200, 'a minute later');
    } finally {
      await s.close();
    }
  });
});
