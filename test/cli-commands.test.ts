import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

describe('chorus subcommands', { timeout: 60_000 }, () => {
  it('chorus --help lists the commands and the server options', async () => {
    const { code, stdout } = await run(['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /Usage: chorus \[command\]/);
    assert.match(stdout, /^ {2}serve {2}run the server/m);
    assert.match(stdout, /--port <n>/);
  });

  it('chorus serve --help prints the server usage', async () => {
    const { code, stdout } = await run(['serve', '--help']);
    assert.equal(code, 0);
    assert.match(stdout, /^Usage: chorus \[serve\] \[options\]/);
    assert.doesNotMatch(stdout, /Commands:/);
  });

  it('an unknown command exits 1 naming it and the known ones', async () => {
    const { code, stderr, stdout } = await run(['frobnicate', '--port', '0']);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(stderr, /^chorus: unknown command "frobnicate"; commands: serve/);
  });

  it('chorus serve passes its flags on (a bad one is a config error naming it)', async () => {
    const { code, stderr } = await run(['serve', '--port', 'abc']);
    assert.equal(code, 1);
    assert.match(stderr, /^chorus: config error: invalid option --port: must be an integer from 0 to 65535, got "abc"/);
  });
});
