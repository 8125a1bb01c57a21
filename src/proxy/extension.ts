/**
 * The proxy extension: delegates decisions to the application's backend over HTTP.
 * - connect: `authenticate` (a ChorusServer option) asks the backend who a connecting client is;
 *   with a JWT key configured, a request carrying a token is verified locally instead.
 * - subscribe / publish: `onSubscribe` (client subscriptions) and `beforePublish` (client
 *   publications, which the backend may replace).
 * - rpc: `onUnhandledEvent`, every application event no `server.on` handler takes.
 * - refresh: connections with an expiry are refreshed by the backend shortly before it.
 * Every call goes through one `ProxyCaller` (bounded concurrency and time, metrics).
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Connection, Extension, Identity } from '../server/index.js';
import { ProxyCaller } from './caller.js';
import { connectBody, identityFromResult } from './identity.js';
import type { ProxyOptions } from './options.js';
import { RefreshScheduler } from './refresh.js';

export interface ProxyExtensionOptions extends ProxyOptions {
  logger: Logger;
  /** The server's metrics registry (`server.metrics.registry`). */
  registry?: Registry;
  /** Verifies a JWT locally (requests that carry one skip the connect proxy). Absent: every token goes to the backend. */
  verifyToken?: (token: string) => Promise<Identity>;
  /** Clock, ms since the Unix epoch. Default `Date.now`. */
  now?: () => number;
}

/** Who the connection is, for every call after connect. */
function who(connection: Connection): Record<string, unknown> {
  return { client: connection.id, user: connection.user, info: connection.info ?? null };
}

export class ProxyExtension implements Extension {
  readonly name = 'proxy';
  readonly caller: ProxyCaller;
  private readonly connectHeaders: readonly string[];
  private readonly verifyToken: ((token: string) => Promise<Identity>) | undefined;
  private readonly refresher: RefreshScheduler | undefined;

  constructor(options: ProxyExtensionOptions) {
    this.caller = new ProxyCaller({ ...options, logger: options.logger });
    this.connectHeaders = options.connect?.headers ?? [];
    this.verifyToken = options.verifyToken;
    if (this.caller.has('refresh')) this.refresher = new RefreshScheduler(this.caller, options.now ?? Date.now, options.logger);
  }

  /**
   * The `authenticate` option of ChorusServer when a connect proxy is configured (undefined
   * otherwise). `req` is absent for a `refresh` frame carrying a new token.
   */
  get authenticate(): ((token: string | undefined, req?: IncomingMessage) => Promise<Identity>) | undefined {
    if (!this.caller.has('connect')) return undefined;
    return async (token, req) => {
      if (token !== undefined && this.verifyToken) return this.verifyToken(token);
      const result = await this.caller.call('connect', connectBody(req, token, this.connectHeaders));
      const identity = identityFromResult(result, true);
      if (typeof identity === 'string') throw this.caller.malformed('connect', identity);
      return identity as Identity;
    };
  }

  onConnect({ connection }: { connection: Connection }): void {
    this.refresher?.add(connection);
  }

  onDisconnect({ connection }: { connection: Connection }): void {
    this.refresher?.delete(connection);
  }

  async onSubscribe(ctx: { connection: Connection; channel: string; serverSide: boolean }): Promise<void> {
    if (ctx.serverSide || !this.caller.has('subscribe')) return;
    await this.caller.call('subscribe', { ...who(ctx.connection), channel: ctx.channel });
  }

  async beforePublish(ctx: { connection?: Connection; channel: string; data: unknown; ephemeral: boolean; source: string }): Promise<void | { data: unknown }> {
    if (ctx.source !== 'client' || !ctx.connection || !this.caller.has('publish')) return;
    const result = await this.caller.call('publish', { ...who(ctx.connection), channel: ctx.channel, data: ctx.data, ephemeral: ctx.ephemeral });
    if ('data' in result) return { data: result.data };
  }

  get onUnhandledEvent(): Extension['onUnhandledEvent'] {
    if (!this.caller.has('rpc')) return undefined;
    return async ({ connection, event, data }) => this.caller.call('rpc', { ...who(connection), event, data });
  }

  onDestroy(): void {
    this.refresher?.close();
    this.caller.close();
  }
}

