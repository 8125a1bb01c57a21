import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { FromServer, ServerKind, ToServer } from './protocol.js';

/** HS256 secret shared by the Chorus bench server and the tokens the load generator signs. */
export const JWT_SECRET = 'bench-secret-bench-secret-bench-secret!';

const here = fileURLToPath(new URL('.', import.meta.url));

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Pin this (load) process to core 1 and the server to core 0, when there are two cores and taskset. */
export const PIN = (() => {
  if (os.cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** A server under test in a child process (bench/server.ts), driven over IPC. */
export class ServerProcess {
  private readonly waiters: Array<{ type: FromServer['type']; resolve: (m: FromServer) => void }> = [];
  private exited = false;

  private constructor(
    readonly kind: ServerKind,
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  /** @param env extra environment for the server process (e.g. BENCH_COMPRESSION=1, BENCH_REDIS_URL, BENCH_CHORUS_OPTIONS) */
  static async start(kind: ServerKind, env: Record<string, string> = {}): Promise<ServerProcess> {
    // BENCH_SERVER_NODE_ARGS: extra flags for the server process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    const extra = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const nodeArgs = [...extra, '--expose-gc', '--import', 'tsx', `${here}server.ts`, kind];
    const [command, args] = PIN ? ['taskset', ['-c', '0', process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
    const child = spawn(command as string, args as string[], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...env, BENCH_JWT_SECRET: JWT_SECRET, NODE_ENV: 'production' },
    });
    const ready = await new Promise<FromServer & { type: 'ready' }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${kind} server did not start in 20 s`)), 20000);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
      child.on('message', (m: FromServer) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve(m);
        }
      });
    });
    const server = new ServerProcess(kind, child, ready.port);
    const killOnExit = () => child.kill('SIGKILL');
    process.on('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    child.on('message', (m: FromServer) => {
      const i = server.waiters.findIndex((w) => w.type === m.type);
      if (i !== -1) server.waiters.splice(i, 1)[0]!.resolve(m);
    });
    child.on('exit', () => (server.exited = true));
    return server;
  }

  send(message: ToServer): void {
    if (!this.exited) this.child.send(message);
  }

  /** Send a request and wait (bounded) for the reply of the given type. */
  request<T extends FromServer['type']>(message: ToServer, type: T, timeoutMs = 10000): Promise<Extract<FromServer, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.kind} server: no "${type}" reply in ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<FromServer, { type: T }>);
        },
      });
      this.send(message);
    });
  }

  stats() {
    return this.request({ type: 'stats' }, 'stats');
  }

  /** Poll until `pick(stats)` satisfies `done`, at most `timeoutMs`. Returns the last value. */
  async waitFor(pick: 'subscribers' | 'connections', done: (n: number) => boolean, timeoutMs = 10000): Promise<number> {
    const started = performance.now();
    for (;;) {
      const value = (await this.stats())[pick];
      if (done(value) || performance.now() - started > timeoutMs) return value;
      await sleep(50);
    }
  }

  /** SIGKILL the server (a node dying) and wait for it to exit. */
  async kill(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGKILL');
    await Promise.race([exited, sleep(3000)]);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.send({ type: 'exit' });
    await Promise.race([exited, sleep(3000)]);
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

