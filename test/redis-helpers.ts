import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTimeout } from './helpers.js';

/** A free TCP port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface RedisProcessOptions {
  /** Append-only file with fsync on every write: a restart keeps every key. Default false (no persistence). */
  persistence?: boolean;
  /** `requirepass`. */
  password?: string;
  port?: number;
}

/** A real redis-server (Debian's package) on 127.0.0.1 and a free port, for tests. */
export class RedisProcess {
  private process: ChildProcess | undefined;
  readonly dir: string;

  private constructor(
    readonly port: number,
    private readonly options: RedisProcessOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'chorus-redis-'));
  }

  static async start(options: RedisProcessOptions = {}): Promise<RedisProcess> {
    const redis = new RedisProcess(options.port ?? (await freePort()), options);
    await redis.launch();
    return redis;
  }

  get url(): string {
    return this.options.password ? `redis://:${this.options.password}@127.0.0.1:${this.port}` : `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  private async launch(): Promise<void> {
    const args = [
      '--port', String(this.port),
      '--bind', '127.0.0.1',
      '--dir', this.dir,
      '--save', '',
      '--appendonly', this.options.persistence ? 'yes' : 'no',
      '--appendfsync', 'always',
      '--daemonize', 'no',
      '--protected-mode', 'no',
      '--loglevel', 'warning',
    ];
    if (this.options.password) args.push('--requirepass', this.options.password);
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    // Ready when it accepts a TCP connection and answers PING.
    await withTimeout(
      (async () => {
        for (let i = 0; i < 500; i++) {
          if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
          if (await this.ping()) return;
          await new Promise((r) => setTimeout(r, 10));
        }
        throw new Error(`redis-server did not start: ${output}`);
      })(),
      10000,
      'redis-server start',
    );
  }

  /** Send a raw command and return the raw reply (enough for PING, FLUSHALL, CLIENT ...). */
  async command(...parts: string[]): Promise<string> {
    const socket = net.connect(this.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    let reply = '';
    const done = new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => {
        reply += c.toString();
        if (reply.endsWith('\r\n')) resolve();
      });
      socket.on('close', () => resolve());
    });
    const all = this.options.password ? [['AUTH', this.options.password], parts] : [parts];
    for (const cmd of all) socket.write(`*${cmd.length}\r\n${cmd.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
    await withTimeout(done, 5000, `redis ${parts[0]}`);
    socket.destroy();
    return reply;
  }

  private async ping(): Promise<boolean> {
    try {
      return (await this.command('PING')).includes('PONG');
    } catch {
      return false;
    }
  }

  /** Send a signal to the server process (SIGSTOP / SIGCONT to pause and resume it). */
  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal);
  }

  /** Stop the process (SIGKILL: no save on shutdown) and wait for it to exit. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Kill and start again on the same port: keys survive only with `persistence`. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
