/**
 * examples/fastapi end to end: the Python backend (Debian's python3-fastapi + python3-uvicorn)
 * next to a standalone Chorus node configured by examples/fastapi/chorus.json (ports rewritten).
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../src/cli/config.js';
import { startStandalone, type StandaloneHandle } from '../src/cli/standalone.js';
import { TestSocket, until, upgradeStatus, withTimeout } from './helpers.js';
import { freePort } from './redis-helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PYTHON = '/usr/bin/python3';
const missing = spawnSync(PYTHON, ['-c', 'import fastapi, uvicorn, httpx'], { timeout: 20_000 }).status !== 0;

describe('examples/fastapi with a Chorus node', { timeout: 90_000, skip: missing ? 'needs Debian python3-fastapi, python3-uvicorn, python3-httpx' : false }, () => {
  let backendPort: number;
  let backendUrl: string;
  let python: ChildProcess;
  let chorus: StandaloneHandle;
  let dir: string;
  const pythonOutput: string[] = [];

  before(async () => {
    backendPort = await freePort();
    backendUrl = `http://127.0.0.1:${backendPort}`;
    dir = mkdtempSync(join(tmpdir(), 'chorus-fastapi-'));
    const example = readFileSync(join(ROOT, 'examples/fastapi/chorus.json'), 'utf8').replaceAll('127.0.0.1:8000', `127.0.0.1:${backendPort}`);
    const configPath = join(dir, 'chorus.json');
    writeFileSync(configPath, example);
    const config = loadConfig(['--config', configPath, '--port', '0', '--host', '127.0.0.1'], {}, (p) => readFileSync(p, 'utf8'));
    const logger = pino({ level: 'warn' }, new Writable({ write: (_c, _e, cb) => cb() }));
    chorus = await startStandalone(config, { logger });
    python = spawn(PYTHON, [join(ROOT, 'examples/fastapi/app.py')], {
      env: { PATH: process.env.PATH ?? '', PORT: String(backendPort), CHORUS_URL: chorus.url, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    python.stderr!.setEncoding('utf8').on('data', (c: string) => pythonOutput.push(c));
    const listening = new Promise<void>((resolve, reject) => {
      python.stdout!.setEncoding('utf8').on('data', (c: string) => {
        pythonOutput.push(c);
        if (c.includes('"listening"')) resolve();
      });
      python.once('exit', (code) => reject(new Error(`the backend exited (${code}): ${pythonOutput.join('')}`)));
    });
    await withTimeout(listening, 20_000, 'the FastAPI backend');
  });

  after(async () => {
    python?.kill('SIGTERM');
    if (python && python.exitCode === null) await once(python, 'exit');
    await chorus?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function login(user: string): Promise<string> {
    const res = await fetch(`${backendUrl}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password: `${user}-password` }) });
    assert.equal(res.status, 200);
    const cookie = res.headers.get('set-cookie') ?? '';
    const session = /session=([^;]+)/.exec(cookie)?.[1];
    assert.ok(session, `a session cookie: ${cookie}`);
    return `session=${session}`;
  }

  const wsUrl = (): string => `${chorus.url.replace('http', 'ws')}/ws`;

  it('session cookie -> connect proxy: the user and their rooms, no JWT; no cookie is a 401', async () => {
    assert.equal((await upgradeStatus(wsUrl())).status, 401);
    assert.equal((await upgradeStatus(wsUrl(), { cookie: 'session=forged' })).status, 401);
    const ada = await TestSocket.connect(wsUrl(), undefined, { headers: { cookie: await login('ada') } });
    const connected = (await ada.find((f) => f.event === 'connected')).data as any;
    assert.equal(connected.user, 'ada');
    assert.ok(connected.expiresAt > Date.now());
    assert.deepEqual(connected.subscriptions.map((s: any) => s.channel).sort(), ['chat:ada-bob', 'chat:ada-only', 'chat:general', 'user:ada']);
    ada.close();
  });

  it('rpc saves a message and publishes it through the HTTP API; the subscribe proxy keeps non-members out', async () => {
    const ada = await TestSocket.connect(wsUrl(), undefined, { headers: { cookie: await login('ada') } });
    const bob = await TestSocket.connect(wsUrl(), undefined, { headers: { cookie: await login('bob') } });
    const ack = await ada.ok('chat.send', { room: 'general', text: 'hello from ada' });
    assert.equal(ack.id, 1);
    assert.equal(typeof ack.offset, 'number');
    const message = await bob.find((f) => f.event === 'message' && (f.data as any).channel === 'chat:general');
    assert.deepEqual((message.data as any).data, { id: 1, room: 'general', user: 'ada', name: 'Ada Lovelace', text: 'hello from ada' });
    const saved = (await (await fetch(`${backendUrl}/messages/general`)).json()) as any[];
    assert.deepEqual(saved.map((m) => m.text), ['hello from ada']);
    // bob is not in ada-only: neither the rpc nor a subscribe gets him in.
    const denied = await bob.request('chat.send', { room: 'ada-only', text: 'sneaky' });
    assert.deepEqual([denied.event, (denied.data as any).code], ['error', 'PERMISSION_DENIED']);
    const sub = await bob.request('subscribe', { channel: 'chat:ada-only' });
    assert.deepEqual([sub.event, (sub.data as any).code], ['error', 'PERMISSION_DENIED']);
    // Clients cannot publish to chat:* directly (publish: "none"): messages go through the backend.
    const direct = await bob.request('publish', { channel: 'chat:general', data: { text: 'direct' } });
    assert.equal((direct.data as any).code, 'PERMISSION_DENIED');
    const unknown = await ada.request('chat.nope', {});
    assert.equal((unknown.data as any).code, 'UNKNOWN_EVENT');
    ada.close();
    bob.close();
  });

  it('webhooks: the backend receives signed events and rejects a bad signature', async () => {
    let events: any[] = [];
    // The webhooks arrive asynchronously in another process: poll its record (bounded).
    await until(
      'the webhook events',
      async () => {
        events = (await (await fetch(`${backendUrl}/hook-events`)).json()) as any[];
        return events.some((e) => e.type === 'presence.join' && e.user === 'bob') && events.some((e) => e.type === 'channel.vacated' && e.channel === 'chat:ada-only');
      },
      15_000,
      50,
    );
    assert.ok(events.some((e) => e.type === 'channel.occupied' && e.channel === 'chat:general'), JSON.stringify(events));
    assert.ok(events.some((e) => e.type === 'presence.join' && e.channel === 'chat:general' && e.user === 'bob'));
    assert.ok(events.some((e) => e.type === 'channel.vacated' && e.channel === 'chat:ada-only'));
    const forged = await fetch(`${backendUrl}/chorus/hooks`, { method: 'POST', headers: { 'x-chorus-signature': 'sha256=00' }, body: '{"events":[]}' });
    assert.equal(forged.status, 401);
  });
});
