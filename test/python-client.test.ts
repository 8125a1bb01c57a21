// An independent Python client, written from docs/PROTOCOL.md alone, run against a real server.
// It proves a third party can interoperate using only the protocol document.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { signToken, startServer, type TestServer } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PYTHON = '/usr/bin/python3';
const SCRIPT = 'test/py/scenario.py';
const TIMEOUT_MS = 30_000;

interface StepLine {
  step: string;
  ok: boolean;
  errors?: string[];
  [key: string]: unknown;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: StepLine[];
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Spawn the Python scenario with its config on stdin; kill it if it outlives the timeout. */
function runScenario(config: unknown, timeoutMs = TIMEOUT_MS): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SCRIPT], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines: StepLine[] = [];
      for (const line of stdout.split('\n')) {
        if (!line.trim()) continue;
        try {
          lines.push(JSON.parse(line) as StepLine);
        } catch {
          lines.push({ step: 'unparsable', ok: false, errors: [line] });
        }
      }
      resolve({ code, signal, lines, stdout, stderr, timedOut });
    });
    child.stdin.end(JSON.stringify(config));
  });
}

/** Debian's python3 with python3-websockets (asyncio API) is required; skip, loudly, without it. */
const skipReason = !existsSync(PYTHON)
  ? `${PYTHON} not found`
  : spawnSync(PYTHON, ['-c', 'import websockets'], { timeout: 10_000 }).status !== 0
    ? `${PYTHON} has no websockets module (apt-get install python3-websockets)`
    : false;

describe('independent Python client (written from PROTOCOL.md)', { skip: skipReason }, () => {
  let server: TestServer;
  let result: RunResult;
  const step = (name: string): StepLine => {
    const line = result.lines.find((l) => l.step === name);
    assert.ok(line, `step ${name} missing from output:\n${result.stdout}\n${result.stderr}`);
    return line;
  };
  const assertOk = (name: string): StepLine => {
    const line = step(name);
    assert.equal(line.ok, true, `step ${name} failed: ${JSON.stringify(line.errors, null, 2)}`);
    return line;
  };

  before(async () => {
    server = await startServer();
    const users = { a: 'py-a', b: 'py-b' };
    const config = {
      url: server.wsUrl,
      users,
      channel: 'chat:py',
      tokens: {
        a: await signToken(users.a, { claims: { name: 'Ada' } }),
        b: await signToken(users.b, { claims: { info: { name: 'Bob' } } }),
      },
      badToken: await signToken(users.b, { secret: 'a-different-secret-0123456789-abcdefghij' }),
      timeoutSeconds: 25,
    };
    result = await runScenario(config);
  });

  after(async () => {
    await server?.close();
  });

  it('runs to completion and exits 0', () => {
    assert.equal(result.timedOut, false, `scenario timed out; output so far:\n${result.stdout}\n${result.stderr}`);
    const failed = result.lines.filter((l) => !l.ok);
    assert.deepEqual(failed, [], `failed steps:\n${JSON.stringify(failed, null, 2)}\nstderr:\n${result.stderr}`);
    assert.equal(result.code, 0, `exit code ${result.code}; stderr:\n${result.stderr}`);
    assert.deepEqual(result.lines.at(-1), { step: 'summary', ok: true });
  });

  it('connects with ?token= and reads the connected frame', () => {
    const line = assertOk('connect');
    assert.equal((line.clients as string[]).length, 2);
  });

  it('(a) delivers 20 publications in order with contiguous offsets equal to the publish acks', () => {
    const sub = assertOk('a.subscribe');
    const pub = assertOk('a.publish20');
    const offsets = pub.offsets as number[];
    assert.equal(offsets.length, 20);
    assert.equal(offsets[0], (sub.ack as { offset: number }).offset + 1);
    offsets.forEach((o, i) => i > 0 && assert.equal(o, offsets[i - 1]! + 1));
    assertOk('a.idempotency');
  });

  it('(b) recovers exactly the missed publications after a reconnect with since', () => {
    const line = assertOk('b.recover');
    const since = line.since as { offset: number; epoch: string };
    const ack = line.ack as { offset: number; epoch: string; recovered: boolean };
    assert.equal(ack.recovered, true);
    assert.equal(ack.offset, since.offset + 5);
    assert.equal(ack.epoch, since.epoch);
    assertOk('b.history-paging');
  });

  it('(c) fills a live gap with history so the app sees every message once, in order', () => {
    const line = assertOk('c.live-gap');
    const gap = line.gap as { from: number; to: number; filled: number; pages: number };
    assert.equal(gap.filled, 3);
    assert.equal(gap.to - gap.from, 4);
    assert.ok(gap.pages >= 2);
  });

  it('(d) answers bad frames, unknown events and a wrong epoch as documented', () => {
    assertOk('d.bad-frame');
    assertOk('d.abuse-limit');
    assertOk('d.unknown-event');
    assertOk('d.wrong-epoch');
  });

  it('batching, ping, header authentication and handshake rejection', () => {
    assertOk('e.batching-and-ping');
    assertOk('e.header-auth');
    assertOk('close');
  });
});
