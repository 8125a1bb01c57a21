import type { IncomingMessage } from 'node:http';
import { ChorusError, ErrorCode } from '../protocol/index.js';
import { toChorusError } from './errors.js';
import type { Connection } from './connection.js';
import type { Identity } from './options.js';

/** Where a publication came from. */
export type PublishSource = 'client' | 'api' | 'server';

export interface UpgradeContext {
  req: IncomingMessage;
  identity: Identity;
}
export interface ConnectContext {
  connection: Connection;
}
export interface SubscribeContext {
  connection: Connection;
  channel: string;
  /** True for server-side subscriptions (personal channel, API, handler code). */
  serverSide: boolean;
}
export interface PublishContext {
  /** The publishing connection; absent for API and server publications. */
  connection?: Connection;
  channel: string;
  data: unknown;
  source: PublishSource;
  ephemeral: boolean;
}
export interface AfterPublishContext extends PublishContext {
  offset?: number;
  epoch?: string;
}
export interface UnhandledEventContext {
  connection: Connection;
  /** The application event name (never a reserved protocol event). */
  event: string;
  /** The frame's `data` (null when absent). */
  data: unknown;
}
export interface PresenceEventContext {
  type: 'join' | 'leave';
  channel: string;
  user: string;
  info?: Record<string, unknown>;
}
export interface LocalChannelContext {
  channel: string;
  /** True: the channel got its first subscriber on this node; false: its last one on this node left. */
  occupied: boolean;
}
export interface DisconnectContext {
  connection: Connection;
  code: number;
  reason: string;
}

/**
 * An extension: optional async hooks run in priority order (higher first, default 0). A hook
 * that throws denies the operation; throw a ChorusError to choose the code the client sees.
 * `beforePublish` may return `{ data }` to replace the payload. `afterPublish` and
 * `onDisconnect` errors are logged and do not undo anything.
 */
export interface Extension {
  /** Shown in logs when a hook fails. */
  name?: string;
  /** Higher runs first. Default 0. */
  priority?: number;
  /** After authentication, before the upgrade; a throw rejects the handshake with HTTP 403. */
  onUpgrade?(ctx: UpgradeContext): void | Promise<void>;
  /** After the `connected` frame was queued. A throw closes the connection with 4500. */
  onConnect?(ctx: ConnectContext): void | Promise<void>;
  onSubscribe?(ctx: SubscribeContext): void | Promise<void>;
  beforePublish?(ctx: PublishContext): void | { data: unknown } | Promise<void | { data: unknown }>;
  afterPublish?(ctx: AfterPublishContext): void | Promise<void>;
  onDisconnect?(ctx: DisconnectContext): void | Promise<void>;
  /**
   * An application event no `server.on` handler takes. The first extension (by priority) with
   * this hook answers: its return value is the ack, a throw the error reply (a ChorusError keeps
   * its code). Without any, the client gets UNKNOWN_EVENT.
   */
  onUnhandledEvent?(ctx: UnhandledEventContext): unknown;
  /** A join/leave event was sent; runs on the one node that made the change. Errors are logged. */
  onPresence?(ctx: PresenceEventContext): void | Promise<void>;
  /** A channel's local subscriber set was created or emptied on this node. Errors are logged. */
  onLocalChannel?(ctx: LocalChannelContext): void | Promise<void>;
  /** Called on server close: release timers and connections the extension owns. */
  onDestroy?(): void | Promise<void>;
}

type HookName = Exclude<keyof Extension, 'name' | 'priority'>;

/** A hook's throw as the error the client sees. */
function asDenial(err: unknown): ChorusError {
  return toChorusError(err) ?? new ChorusError(ErrorCode.PERMISSION_DENIED, 'denied by the server');
}

/** Holds extensions sorted by priority and runs one hook across all of them. */
export class Hooks {
  private extensions: Extension[] = [];

  add(extension: Extension): void {
    this.extensions = [...this.extensions, extension].sort((a, b) => (b.priority ?? 0) - (a.priority ?? 0));
  }

  has(hook: HookName): boolean {
    return this.extensions.some((e) => typeof e[hook] === 'function');
  }

  async run<H extends HookName>(hook: H, ctx: Parameters<NonNullable<Extension[H]>>[0]): Promise<void> {
    for (const extension of this.extensions) {
      const fn = extension[hook] as ((c: unknown) => unknown) | undefined;
      if (fn) await fn.call(extension, ctx);
    }
  }

  /** Run a notification hook (it cannot deny anything) in the background; failures go to `onError`. */
  notify<H extends HookName>(hook: H, ctx: Parameters<NonNullable<Extension[H]>>[0], onError: (err: unknown) => void): void {
    if (this.has(hook)) this.run(hook, ctx).catch(onError);
  }

  /**
   * Run a hook that may deny the operation: a thrown coded error keeps its code, anything else
   * becomes PERMISSION_DENIED (the extension's message is not shown to the client).
   */
  async deny<H extends HookName>(hook: H, ctx: Parameters<NonNullable<Extension[H]>>[0]): Promise<void> {
    try {
      await this.run(hook, ctx);
    } catch (err) {
      throw asDenial(err);
    }
  }

  /** Run beforePublish across extensions, threading replaced data through; throws like `deny`. */
  async beforePublish(ctx: PublishContext): Promise<unknown> {
    let data = ctx.data;
    for (const extension of this.extensions) {
      if (!extension.beforePublish) continue;
      let result: void | { data: unknown };
      try {
        result = await extension.beforePublish({ ...ctx, data });
      } catch (err) {
        throw asDenial(err);
      }
      if (result && typeof result === 'object' && 'data' in result) data = result.data;
    }
    return data;
  }

  /** The first extension that answers unhandled events, if any. */
  unhandledEventHandler(): Extension | undefined {
    return this.extensions.find((e) => typeof e.onUnhandledEvent === 'function');
  }

  all(): readonly Extension[] {
    return this.extensions;
  }
}
