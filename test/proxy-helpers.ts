/** A fake application backend (node:http on 127.0.0.1, port 0) and a Chorus server using the proxy extension. */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ProxyExtension } from '../src/proxy/extension.js';
import type { ProxyOptions } from '../src/proxy/options.js';
import { Authenticator } from '../src/server/auth.js';
import { SECRET, startServer, type TestServer } from './helpers.js';

export interface BackendCall {
  path: string;
  body: any;
  raw: string;
  headers: http.IncomingHttpHeaders;
}

/** How the backend answers one call: a status and body, or `hang` (never answer). */
export type Reply = { status?: number; body: unknown } | { raw: string; status?: number } | 'hang';

export class Backend {
  readonly calls: BackendCall[] = [];
  /** Answer per path; the default allows with an empty result. */
  readonly routes = new Map<string, (call: BackendCall) => Reply | Promise<Reply>>();
  private readonly hanging = new Set<http.ServerResponse>();
  private waiters: Array<() => void> = [];

  private constructor(
    readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(): Promise<Backend> {
    let backend!: Backend;
    const server = http.createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8').on('data', (c: string) => (raw += c));
      req.on('end', () => void backend.answer(req, res, raw));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    backend = new Backend(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return backend;
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse, raw: string): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      body = undefined;
    }
    const call: BackendCall = { path: req.url ?? '', body, raw, headers: req.headers };
    this.calls.push(call);
    for (const w of this.waiters.splice(0)) w();
    const route = this.routes.get(call.path);
    const reply = route ? await route(call) : { body: { result: {} } };
    if (reply === 'hang') {
      this.hanging.add(res);
      return;
    }
    res.writeHead(reply.status ?? 200, { 'content-type': 'application/json' });
    res.end('raw' in reply ? reply.raw : JSON.stringify(reply.body));
  }

  /** Resolves once `n` calls to `path` arrived. */
  async waitForCalls(path: string, n = 1, ms = 5000): Promise<BackendCall[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const matching = this.calls.filter((c) => c.path === path);
      if (matching.length >= n) return matching;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} calls to ${path}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export interface ProxyTestServer extends TestServer {
  proxy: ProxyExtension;
  registry: Registry;
  proxyLogs: Array<Record<string, unknown>>;
  proxyRawLogs: string[];
}

/** A Chorus server with the proxy extension; `jwt: true` also verifies JWTs locally (SECRET). */
export async function startProxyServer(options: ProxyOptions, extra: { jwt?: boolean; now?: () => number } = {}): Promise<ProxyTestServer> {
  const proxyLogs: Array<Record<string, unknown>> = [];
  const proxyRawLogs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        proxyRawLogs.push(line);
        proxyLogs.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  const registry = new Registry();
  const verifier = new Authenticator({ secret: SECRET });
  const proxy = new ProxyExtension({
    ...options,
    logger: pino({ level: 'debug' }, sink),
    registry,
    ...(extra.jwt ? { verifyToken: (token: string) => verifier.verify(token) } : {}),
    ...(extra.now ? { now: extra.now } : {}),
  });
  const auth = proxy.authenticate;
  const server = await startServer({ metricsRegistry: registry, processMetrics: false, ...(auth ? { authenticate: auth } : {}) });
  server.chorus.use(proxy);
  return Object.assign(server, { proxy, registry, proxyLogs, proxyRawLogs });
}
