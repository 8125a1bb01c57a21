/**
 * Helpers for cluster tests with REAL processes: Chorus nodes spawned as `node dist/cli/main.js`
 * (one OS process each, sharing a real redis-server), and a tiny TCP load balancer that sends
 * each new connection to the next node that accepts it (round robin), so a client whose node
 * died reconnects to another one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_KEY, SECRET, withTimeout } from './helpers.js';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');

/** The nodes run the BUILT server: fail clearly when dist/ is missing or older than src/. */
function assertBuilt(): void {
  const stale: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const out = join(ROOT, 'dist', path.slice(join(ROOT, 'src').length).replace(/\.ts$/, '.js'));
        if (!existsSync(out) || statSync(out).mtimeMs < statSync(path).mtimeMs) stale.push(path.slice(ROOT.length + 1));
      }
    }
  };
  walk(join(ROOT, 'src'));
  if (stale.length > 0) {
    throw new Error(`dist/ is missing or older than ${stale.slice(0, 3).join(', ')}: run \`npx tsc -p tsconfig.build.json\` (npm test builds first)`);
  }
}
let built = false;

/** Every process and server started here, so a failing test still cleans up (see `cleanupAll`). */
interface Stoppable {
  stop(): Promise<void>;
  forceStop(): void;
}
const live = new Set<Stoppable>();
process.once('exit', () => {
  for (const item of live) item.forceStop();
});

/** Stop everything still running (call from an `after` hook). */
export async function cleanupAll(): Promise<void> {
  await Promise.allSettled([...live].map((item) => item.stop()));
}

export interface NodeOptions {
  /** The Redis URL (CHORUS_REDIS_URL). */
  redisUrl: string;
  /** Config file contents (written to a temp JSON file, passed as CHORUS_CONFIG). */
  config?: Record<string, unknown>;
  /** LOG_LEVEL. Default `info`. */
  logLevel?: string;
  /** Extra environment. */
  env?: Record<string, string>;
}

/** One Chorus node: `node dist/cli/main.js` on 127.0.0.1 and a free port. */
export class ChorusNode {
  /** Parsed JSON log lines (stdout). */
  readonly logs: Array<Record<string, any>> = [];
  /** Every line the process wrote, stdout and stderr. */
  readonly rawLines: string[] = [];
  port = 0;
  private readonly dir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<unknown> | undefined;
  private logWaiters: Array<{ match: (l: Record<string, any>) => boolean; resolve: (l: Record<string, any>) => void }> = [];

  private constructor(
    readonly name: string,
    private readonly options: NodeOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `chorus-node-${name}-`));
  }

  static async start(name: string, options: NodeOptions): Promise<ChorusNode> {
    if (!built) {
      assertBuilt();
      built = true;
    }
    const node = new ChorusNode(name, options);
    live.add(node);
    try {
      await node.launch();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private async launch(): Promise<void> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('CHORUS_') && k !== 'PORT' && k !== 'HOST') env[k] = v;
    Object.assign(env, {
      PORT: '0',
      HOST: '127.0.0.1',
      CHORUS_REDIS_URL: this.options.redisUrl,
      CHORUS_JWT_SECRET: SECRET,
      CHORUS_API_KEY: API_KEY,
      LOG_LEVEL: this.options.logLevel ?? 'info',
      ...this.options.env,
    });
    if (this.options.config) {
      const file = join(this.dir, 'config.json');
      writeFileSync(file, JSON.stringify({ nodeId: this.name, ...this.options.config }));
      env.CHORUS_CONFIG = file;
    }
    const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    this.child = child;
    this.exited = once(child, 'exit').catch(() => undefined);
    const onLines = (stream: NodeJS.ReadableStream, json: boolean) => {
      let buffer = '';
      stream.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          this.rawLines.push(line);
          if (!json) continue;
          let parsed: Record<string, any>;
          try {
            parsed = JSON.parse(line) as Record<string, any>;
          } catch {
            continue;
          }
          this.logs.push(parsed);
          const waiters = this.logWaiters;
          this.logWaiters = [];
          for (const w of waiters) {
            if (w.match(parsed)) w.resolve(parsed);
            else this.logWaiters.push(w);
          }
        }
      });
    };
    onLines(child.stdout!, true);
    onLines(child.stderr!, false);
    const failed = this.exited.then(() => {
      throw new Error(`node ${this.name} exited before listening:\n${this.rawLines.join('\n')}`);
    });
    const listening = await withTimeout(Promise.race([this.waitForLog((l) => l.msg === 'listening', 20000), failed]), 20000, `node ${this.name} listening`);
    this.port = Number(listening.port);
  }

  /** A log line matching (already written, or the next one), within `ms`. */
  waitForLog(match: (line: Record<string, any>) => boolean, ms = 5000): Promise<Record<string, any>> {
    const found = this.logs.find(match);
    if (found) return Promise.resolve(found);
    return withTimeout(new Promise((r) => this.logWaiters.push({ match, resolve: r })), ms, `log line on node ${this.name}`);
  }

  /** Send a signal (SIGKILL to crash it). Resolves once the process exited for SIGKILL/SIGTERM. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.child!.kill(signal);
    await withTimeout(this.exited!, 15000, `node ${this.name} exit`);
  }

  /** SIGTERM (graceful), then SIGKILL if it does not exit in time; removes the temp dir. */
  async stop(): Promise<void> {
    if (this.running) {
      this.child!.kill('SIGTERM');
      try {
        await withTimeout(this.exited!, 5000, `node ${this.name} exit`);
      } catch {
        this.forceStop();
        await this.exited;
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  forceStop(): void {
    if (this.running) this.child!.kill('SIGKILL');
  }
}

/** Start several nodes in parallel, named as given (the name is also the config's nodeId). */
export async function startNodes<const T extends readonly string[]>(names: T, options: NodeOptions): Promise<{ -readonly [K in keyof T]: ChorusNode }> {
  const started = await Promise.allSettled(names.map((name) => ChorusNode.start(name, options)));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw failed.reason;
  }
  return started.map((r) => (r as PromiseFulfilledResult<ChorusNode>).value) as { -readonly [K in keyof T]: ChorusNode };
}

/**
 * A TCP load balancer on 127.0.0.1: each accepted connection is forwarded to the next backend
 * (round robin); a backend whose connect fails is skipped for this connection.
 */
export class LoadBalancer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private next = 0;
  port = 0;
  /** Backend index each forwarded connection went to, in order. */
  readonly routed: number[] = [];

  private constructor(private readonly backends: Array<() => number>) {
    this.server = net.createServer((client) => this.forward(client));
  }

  /** `backends`: functions returning each backend's current port (nodes may be replaced). */
  static async start(backends: Array<() => number>): Promise<LoadBalancer> {
    const lb = new LoadBalancer(backends);
    live.add(lb);
    lb.server.listen(0, '127.0.0.1');
    await once(lb.server, 'listening');
    lb.port = (lb.server.address() as net.AddressInfo).port;
    return lb;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  }

  private forward(client: net.Socket): void {
    this.track(client);
    client.pause();
    const start = this.next;
    this.next = (this.next + 1) % this.backends.length;
    const attempt = (tried: number) => {
      if (client.destroyed) return;
      if (tried >= this.backends.length) {
        client.destroy();
        return;
      }
      const index = (start + tried) % this.backends.length;
      const upstream = net.connect(this.backends[index]!(), '127.0.0.1');
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        this.routed.push(index);
        this.track(upstream);
        client.pipe(upstream);
        upstream.pipe(client);
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
        client.resume();
      });
      upstream.once('error', () => {
        if (!connected) attempt(tried + 1);
      });
    };
    attempt(0);
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
    live.delete(this);
  }

  forceStop(): void {
    for (const socket of this.sockets) socket.destroy();
    this.server.close();
  }
}

/**
 * One raw command to a Redis on 127.0.0.1 (no password), reading one complete RESP reply:
 * a simple string, error or integer as its text line (e.g. `+OK`, `:1`), a bulk string as its content.
 */
export async function redisCommand(port: number, ...parts: string[]): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  try {
    await withTimeout(once(socket, 'connect'), 5000, 'redis connect');
    let reply = Buffer.alloc(0);
    const done = new Promise<string>((resolvePromise, reject) => {
      socket.on('data', (chunk: Buffer) => {
        reply = Buffer.concat([reply, chunk]);
        const eol = reply.indexOf('\r\n');
        if (eol < 0) return;
        const head = reply.subarray(0, eol).toString();
        if (head[0] !== '$') return resolvePromise(head);
        const length = Number(head.slice(1));
        if (length < 0) return resolvePromise('');
        if (reply.length >= eol + 2 + length + 2) resolvePromise(reply.subarray(eol + 2, eol + 2 + length).toString());
      });
      socket.on('close', () => reject(new Error(`redis closed the connection before replying to ${parts[0]}`)));
    });
    socket.write(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
    return await withTimeout(done, 5000, `redis ${parts[0]}`);
  } finally {
    socket.destroy();
  }
}

/** `CLIENT LIST` as records (id, name, ...). */
export async function clientList(port: number): Promise<Array<Record<string, string>>> {
  const raw = await redisCommand(port, 'CLIENT', 'LIST');
  return raw
    .split(/\r?\n/)
    .filter((line) => line.includes('id='))
    .map((line) => {
      const record: Record<string, string> = {};
      for (const part of line.trim().split(' ')) {
        const eq = part.indexOf('=');
        if (eq > 0) record[part.slice(0, eq)] = part.slice(eq + 1);
      }
      return record;
    })
    .filter((c) => c.name);
}

export { until, nextEvent } from './helpers.js';
