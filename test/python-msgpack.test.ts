// An independent Python client speaking chorus.v1.msgpack, written from docs/PROTOCOL.md
// (sections 1.4, 2.2, 2.3) with Debian's python3-msgpack and python3-websockets.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { signToken, startServer, type TestServer } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PYTHON = '/usr/bin/python3';

const skipReason = !existsSync(PYTHON)
  ? `${PYTHON} not found`
  : spawnSync(PYTHON, ['-c', 'import websockets, msgpack'], { timeout: 10_000 }).status !== 0
    ? `${PYTHON} lacks websockets or msgpack (apt-get install python3-websockets python3-msgpack)`
    : false;

describe('Python speaks chorus.v1.msgpack from the docs', { skip: skipReason }, () => {
  let server: TestServer;
  let lines: Array<{ step: string; ok: boolean; [k: string]: unknown }> = [];
  let stderr = '';
  let code: number | null = null;

  before(async () => {
    server = await startServer({ limits: { maxQueuedBytes: 8 * 1024 * 1024, rateBurst: 200 } });
    const config = {
      url: server.wsUrl,
      channel: 'chat:pymp',
      fileBytes: 1024 * 1024,
      tokens: { a: await signToken('py-mp-a'), b: await signToken('py-mp-b') },
    };
    await new Promise<void>((resolve, reject) => {
      const child = spawn(PYTHON, ['test/py/msgpack_scenario.py'], { cwd: ROOT, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
      let stdout = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', reject);
      child.on('close', (c) => {
        clearTimeout(timer);
        code = c;
        lines = stdout
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l));
        resolve();
      });
      child.stdin.end(JSON.stringify(config));
    });
  });

  after(async () => {
    await server?.close();
  });

  const step = (name: string) => {
    const line = lines.find((l) => l.step === name);
    assert.ok(line, `step ${name} missing; stderr:\n${stderr}`);
    assert.equal(line.ok, true, `step ${name} failed: ${JSON.stringify(line)}`);
    return line;
  };

  it('negotiates chorus.v1.msgpack and reads binary MessagePack frames', () => {
    assert.equal(step('negotiate').subprotocol, 'chorus.v1.msgpack');
  });
  it('sends two frames in one message and gets both replies', () => void step('batched-requests'));
  it('a 1 MiB file in 48 KiB bin chunks arrives byte-identical as bin and as {"$bin"} base64', () => {
    assert.deepEqual(step('file').types, ['bytes']);
  });
  it('{"$bin"} from a JSON client arrives as bin', () => void step('json-to-bin'));
  it('text on a MessagePack connection is BAD_FRAME', () => void step('bad-frames'));
  it('an unknown subprotocol offer gets no subprotocol and JSON', () => void step('unknown-offer'));
  it('exits 0', () => {
    step('summary');
    assert.equal(code, 0, stderr);
  });
});
