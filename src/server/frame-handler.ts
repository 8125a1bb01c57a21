import type { Logger } from 'pino';
import {
  ChorusError,
  ClientEvent,
  DOCUMENT_EVENTS,
  Disconnect,
  ErrorCode,
  RESERVED_EVENTS,
  ServerEvent,
  withReason,
  type ConnectedData,
  type Frame,
  type StreamPosition,
  type SubscribeResult,
} from '../protocol/index.js';
import type { Authenticator } from './auth.js';
import type { Connection } from './connection.js';
import { toChorusError } from './errors.js';
import { channelOf, objectData, optionalBoolean, optionalPosition } from './frame-fields.js';
import type { Hooks } from './hooks.js';
import type { Hub } from './hub.js';
import type { LimitReporter } from './limit-reporter.js';
import type { Metrics } from './metrics.js';
import type { ResolvedNamespace } from './options.js';
import type { Permissions } from './permissions.js';
import { checkKey, type Publisher } from './publisher.js';
import type { ProtocolFrameHandler } from './seams.js';
import { notDocument } from './channels.js';
import { validate, type StandardSchemaV1 } from './schema.js';

/** Context given to application event handlers; `S` is the server (ChorusServer). */
export interface HandlerContextOf<S> {
  /** The connection that sent the event: `emit`, `subscribe` via the server, `close`. */
  connection: Connection;
  /** The server, to publish, broadcast, subscribe or disconnect. */
  server: S;
  /** The event name. */
  event: string;
}

export type EventHandlerOf<S, T = unknown> = (data: T, ctx: HandlerContextOf<S>) => unknown | Promise<unknown>;

export interface HandlerOptions<S extends StandardSchemaV1 = StandardSchemaV1> {
  /** Validate `data` with any Standard Schema validator (zod, valibot, ...); failures reply BAD_REQUEST. */
  schema?: S;
}

/** A registered application event handler. */
export interface HandlerEntry<S> {
  handler: EventHandlerOf<S>;
  options: HandlerOptions;
}

/** Throws a TypeError unless `event` may name an application event handler. */
export function assertHandlerName(event: string): void {
  if (typeof event !== 'string' || event.length === 0 || event.length > 128) {
    throw new TypeError('event name must be a string of 1 to 128 characters');
  }
  if (RESERVED_EVENTS.has(event) || DOCUMENT_EVENTS.has(event)) throw new TypeError(`"${event}" is a reserved protocol event`);
}

/** What the frame handler needs from its server (kept narrow: no reaching into the server). */
export interface FrameContext<S> {
  /** Handed to application handlers as `ctx.server`. */
  readonly server: S;
  readonly nodeId: string;
  readonly heartbeat: { readonly intervalMs: number; readonly timeoutMs: number };
  /** Subscribe each connection to `user:<id>` on connect. */
  readonly personalChannel: boolean;
  readonly maxSubscriptionsPerConnection: number;
  /** Clock skew tolerated on token expiry, in ms. */
  readonly clockToleranceMs: number;
  now(): number;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'messagesIn' | 'bytesIn' | 'limitHits'>;
  readonly reporter: LimitReporter;
  readonly permissions: Permissions;
  readonly hub: Pick<Hub, 'subscribe' | 'unsubscribe'>;
  readonly hooks: Pick<Hooks, 'has' | 'run' | 'deny' | 'unhandledEventHandler'>;
  readonly publisher: Pick<Publisher, 'fromClient'>;
  readonly authenticator: Pick<Authenticator, 'authenticateToken'>;
  readonly handlers: ReadonlyMap<string, HandlerEntry<S>>;
  /** Protocol frames served by parts beside the server (documents' `doc.*`); tried before application handlers. */
  readonly protocolFrames: ReadonlyMap<string, ProtocolFrameHandler>;
  history(channel: string, options: { since?: StreamPosition; limit?: number; reverse?: boolean }): Promise<unknown>;
  presence(channel: string): Promise<unknown>;
}

/** Error codes that count as a client fault (see limits.maxFaults). */
const FAULT_CODES: ReadonlySet<string> = new Set([
  ErrorCode.BAD_FRAME,
  ErrorCode.UNKNOWN_EVENT,
  ErrorCode.BAD_REQUEST,
  ErrorCode.BAD_CHANNEL,
  ErrorCode.RATE_LIMITED,
]);

const NO_REPLY = Symbol('no reply');

/**
 * The frame handler: turns incoming messages into frames, applies the rate limit and fault
 * counting, and runs each connection's frames one at a time, in order (on `connection.inbound`).
 * One per server; all per-connection state lives on the connection.
 */
export class FrameHandler<S> {
  private readonly inCounters = new Map<string, { inc(): void }>();

  constructor(private readonly ctx: FrameContext<S>) {}

  /** Count an incoming frame; label children are cached (the label set is small and fixed). */
  private countIn(event: string): void {
    let counter = this.inCounters.get(event);
    if (!counter) this.inCounters.set(event, (counter = this.ctx.metrics.messagesIn.labels({ event })));
    counter.inc();
  }

  /**
   * Set up a new connection: subscribe the personal channel and the `channels` the identity
   * names (e.g. from the connect proxy) at once, send ONE `connected` frame listing them (personal
   * channel first), and only then let any of them go live; then run the `onConnect` hooks.
   * A named channel that cannot be subscribed (bad name, denied, limit, engine) is logged and
   * skipped; a personal channel the engine cannot subscribe closes the connection (4004).
   */
  start(connection: Connection, channels: readonly string[] = []): void {
    this.enqueue(connection, () => this.setUp(connection, channels));
  }

  private async setUp(connection: Connection, channels: readonly string[]): Promise<void> {
    const ctx = this.ctx;
    const wanted: Array<{ channel: string; personal: boolean }> = [];
    if (ctx.personalChannel) wanted.push({ channel: `user:${connection.user}`, personal: true });
    for (const channel of channels) if (!wanted.some((w) => w.channel === channel)) wanted.push({ channel, personal: false });
    if (wanted.length === 0) this.sendConnected(connection, []);
    else if (wanted.length === 1) await this.subscribeOnly(connection, wanted[0]!);
    else await this.subscribeAll(connection, wanted);
    if (connection.closing || !ctx.hooks.has('onConnect')) return;
    try {
      await ctx.hooks.run('onConnect', { connection });
    } catch (err) {
      const e = toChorusError(err);
      connection.close(withReason(Disconnect.disconnectedByServer, e?.message ?? 'connection denied'));
    }
  }

  /**
   * One channel (the common case: the personal channel): the `connected` frame goes out from the
   * announce callback itself, so the channel's live publications, queued after it, cannot overtake it.
   */
  private async subscribeOnly(connection: Connection, { channel, personal }: { channel: string; personal: boolean }): Promise<void> {
    const ctx = this.ctx;
    let announced = false;
    try {
      const namespace = await this.identityChannel(connection, channel, personal);
      await ctx.hub.subscribe(connection, channel, namespace, {}, personal ? Number.MAX_SAFE_INTEGER : ctx.maxSubscriptionsPerConnection, (result) => {
        announced = true;
        if (!connection.closing) this.sendConnected(connection, [result]);
      });
    } catch (err) {
      this.identitySubscribeFailed(connection, channel, personal, err); // may close: then no connected frame
      if (!announced && !connection.closing) this.sendConnected(connection, []);
    }
  }

  /** The namespace of a channel subscribed at connect time, after the checks a named one passes (the personal channel needs none). */
  private identityChannel(connection: Connection, channel: string, personal: boolean): ResolvedNamespace | Promise<ResolvedNamespace> {
    const namespace = this.ctx.permissions.rules.resolve(channel);
    if (personal) return namespace;
    notDocument(channel, namespace);
    return this.ctx.hooks.deny('onSubscribe', { connection, channel, serverSide: true }).then(() => namespace);
  }

  /** Several channels at once; ONE `connected` frame lists those subscribed, then all go live. */
  private async subscribeAll(connection: Connection, wanted: Array<{ channel: string; personal: boolean }>): Promise<void> {
    const ctx = this.ctx;
    const results: Array<SubscribeResult | undefined> = [];
    let waiting = wanted.length;
    let goLive!: () => void;
    const connected = new Promise<void>((resolve) => (goLive = resolve));
    const settle = () => {
      if (--waiting > 0) return;
      if (!connection.closing) this.sendConnected(connection, results.filter((r): r is SubscribeResult => r !== undefined));
      goLive();
    };
    await Promise.all(
      wanted.map(async ({ channel, personal }, i) => {
        let announced = false;
        try {
          const namespace = await this.identityChannel(connection, channel, personal);
          await ctx.hub.subscribe(connection, channel, namespace, {}, personal ? Number.MAX_SAFE_INTEGER : ctx.maxSubscriptionsPerConnection, (result) => {
            announced = true;
            results[i] = result;
            settle();
            return connected; // live publications stay held until the connected frame is out
          });
        } catch (err) {
          this.identitySubscribeFailed(connection, channel, personal, err); // may close: then no connected frame
          if (!announced) settle();
        }
      }),
    );
  }

  /**
   * Subscribe a one-way stream (SSE) to the channels it asked for, in order, after `connected`:
   * each gets a `subscribed` event (with `recovered` when the stream resumed) or an `error`
   * naming the channel. The same checks as a `subscribe` frame apply.
   */
  subscribeStream(connection: Connection, request: { channels: string[]; since: ReadonlyMap<string, StreamPosition>; resumed: boolean }): void {
    this.enqueue(connection, async () => {
      const ctx = this.ctx;
      for (const channel of request.channels) {
        if (connection.closing) return;
        try {
          const namespace = ctx.permissions.rules.resolve(channel);
          await ctx.permissions.checkRead(connection, channel, namespace, 'subscribe');
          await ctx.hooks.deny('onSubscribe', { connection, channel, serverSide: false });
          const since = request.since.get(channel);
          await ctx.hub.subscribe(connection, channel, namespace, since ? { since } : {}, ctx.maxSubscriptionsPerConnection, (result) => {
            if (request.resumed && result.recovered === undefined) result.recovered = false;
            const position = result.history ? { channel, offset: result.offset, epoch: result.epoch } : undefined;
            connection.send({ event: ServerEvent.SUBSCRIBED, data: result }, 'reply', position);
          });
        } catch (err) {
          const error = toChorusError(err) ?? new ChorusError(ErrorCode.INTERNAL, 'internal error');
          if (!toChorusError(err)) ctx.logger.error({ err, client: connection.id, channel }, 'stream subscribe failed');
          connection.send({ event: ServerEvent.ERROR, data: { code: error.code, message: error.message, event: ClientEvent.SUBSCRIBE, channel } });
        }
      }
    });
  }

  private identitySubscribeFailed(connection: Connection, channel: string, personal: boolean, err: unknown): void {
    const logger = this.ctx.logger;
    if (!personal) {
      logger.warn({ err: { message: (err as Error).message }, client: connection.id, channel }, 'connect-time subscribe failed');
      return;
    }
    const code = err instanceof ChorusError ? err.code : ErrorCode.INTERNAL;
    if (code === ErrorCode.BAD_CHANNEL) {
      // No personal namespace, or a user id that is not a valid channel name: connect without it.
      logger.warn({ client: connection.id, user: connection.user }, 'no personal channel for this user');
    } else {
      // The engine failed: without its personal channel the client would silently miss
      // notifications, so it reconnects (with backoff) instead.
      logger.warn({ err: { message: (err as Error).message }, client: connection.id }, 'personal channel subscribe failed');
      connection.close(Disconnect.personalChannelUnavailable);
    }
  }

  private sendConnected(connection: Connection, subscriptions: SubscribeResult[]): void {
    const { intervalMs, timeoutMs } = this.ctx.heartbeat;
    const data: ConnectedData = {
      client: connection.id,
      user: connection.user,
      node: this.ctx.nodeId,
      pingIntervalMs: intervalMs,
      pingTimeoutMs: timeoutMs,
      subscriptions,
    };
    if (connection.expiresAt !== undefined) data.expiresAt = connection.expiresAt;
    connection.sendNow({ event: ServerEvent.CONNECTED, data });
  }

  private enqueue(connection: Connection, task: () => Promise<void>): void {
    connection.inbound.enqueue(task, (err) => this.ctx.logger.error({ err, client: connection.id }, 'frame handling failed'));
  }

  /** One message from a client. */
  onMessage(connection: Connection, data: Buffer, isBinary: boolean): void {
    if (connection.closing) return;
    const ctx = this.ctx;
    connection.lastSeen = ctx.now();
    ctx.metrics.bytesIn.inc(data.length);
    const codec = connection.codec;
    if (isBinary !== codec.binary) {
      const error = new ChorusError(
        ErrorCode.BAD_FRAME,
        codec.binary ? 'text messages are not accepted with chorus.v1.msgpack; send binary' : 'binary messages are not accepted; send JSON text',
      );
      this.enqueue(connection, async () => this.sendError(connection, undefined, isBinary ? 'binary' : 'text', error));
      this.countFault(connection, error.code);
      return;
    }
    for (const frame of codec.decodeMessage(data)) {
      if (connection.closing) return;
      if (frame instanceof ChorusError) {
        this.enqueue(connection, async () => this.sendError(connection, undefined, undefined, frame));
        this.countFault(connection, frame.code);
        continue;
      }
      this.countIn(RESERVED_EVENTS.has(frame.event) || DOCUMENT_EVENTS.has(frame.event) ? frame.event : 'app');
      const rate = connection.consumeRate();
      if (!rate.ok) {
        ctx.reporter.limitHit('rate', connection);
        const error = new ChorusError(ErrorCode.RATE_LIMITED, 'too many frames; slow down', { retryAfterMs: rate.retryAfterMs });
        // Replies keep the order of the frames they answer, so the error waits its turn; the
        // fault counts now, so a flood is cut off however long the queue is.
        this.enqueue(connection, async () => this.sendError(connection, frame.id, frame.event, error));
        this.countFault(connection, error.code);
        continue;
      }
      this.enqueue(connection, () => this.handle(connection, frame));
    }
  }

  /** Send an error reply. */
  private sendError(connection: Connection, id: string | undefined, event: string | undefined, error: ChorusError): void {
    if (connection.closing) return;
    const data: Record<string, unknown> = { code: error.code, message: error.message, ...(error.details ?? {}) };
    if (id === undefined && event !== undefined) data.event = event;
    connection.send(id === undefined ? { event: ServerEvent.ERROR, data } : { event: ServerEvent.ERROR, id, data });
  }

  /**
   * Count a faulty frame. Past `maxFaults` in the window the connection reads nothing more and
   * is closed with 1008 once the replies queued before (this frame's error included) are sent.
   */
  private countFault(connection: Connection, code: string): void {
    if (connection.closing || !FAULT_CODES.has(code) || connection.abusive || !connection.addFault()) return;
    connection.inbound.stopReading();
    this.ctx.metrics.limitHits.inc({ limit: 'faults' });
    this.ctx.logger.warn({ client: connection.id, user: connection.user }, 'too many faulty frames');
    this.enqueue(connection, async () => connection.close(Disconnect.abuse));
  }

  private async handle(connection: Connection, frame: Frame): Promise<void> {
    // Past maxFaults nothing more is handled: the 1008 close is on its way.
    if (connection.closing || connection.abusive) return;
    try {
      const result = await this.dispatch(connection, frame);
      if (result === NO_REPLY) return;
      if (frame.id !== undefined) connection.send({ event: ServerEvent.ACK, id: frame.id, data: result ?? null });
    } catch (err) {
      let error = toChorusError(err);
      if (!error) {
        this.ctx.logger.error({ err, client: connection.id, event: frame.event }, 'handler failed');
        error = new ChorusError(ErrorCode.INTERNAL, 'internal error');
      }
      this.sendError(connection, frame.id, frame.event, error);
      this.countFault(connection, error.code);
    }
  }

  /** Handle one frame; returns the ack data, or NO_REPLY when the reply was sent already or is not due. */
  private async dispatch(connection: Connection, frame: Frame): Promise<unknown> {
    const ctx = this.ctx;
    const { permissions } = ctx;
    switch (frame.event) {
      case ClientEvent.SUBSCRIBE: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = permissions.rules.resolve(channel);
        const since = optionalPosition(data, 'since');
        const snapshot = optionalBoolean(data, 'snapshot');
        await permissions.checkRead(connection, channel, namespace, 'subscribe');
        if (connection.subscriptions.has(channel)) {
          throw new ChorusError(ErrorCode.ALREADY_SUBSCRIBED, `already subscribed to "${channel}"`);
        }
        await ctx.hooks.deny('onSubscribe', { connection, channel, serverSide: false });
        const options = { ...(since ? { since } : {}), ...(snapshot ? { snapshot } : {}) };
        await ctx.hub.subscribe(connection, channel, namespace, options, ctx.maxSubscriptionsPerConnection, (result) => {
          ctx.logger.debug({ client: connection.id, channel, recovered: result.recovered }, 'subscribed');
          // Without an id there is no ack, so the position travels in a `subscribed` event.
          if (frame.id === undefined) connection.send({ event: ServerEvent.SUBSCRIBED, data: result });
          else connection.send({ event: ServerEvent.ACK, id: frame.id, data: result });
        });
        return NO_REPLY;
      }
      case ClientEvent.UNSUBSCRIBE: {
        const channel = channelOf(objectData(frame));
        if (!(await ctx.hub.unsubscribe(connection, channel))) {
          throw new ChorusError(ErrorCode.NOT_SUBSCRIBED, `not subscribed to "${channel}"`);
        }
        ctx.logger.debug({ client: connection.id, channel }, 'unsubscribed');
        return { channel };
      }
      case ClientEvent.PUBLISH: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = permissions.rules.resolve(channel);
        if (!('data' in data)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'publish needs data');
        const ephemeral = optionalBoolean(data, 'ephemeral') === true;
        const key = data.key === undefined || data.key === null ? undefined : checkKey(data.key);
        return ctx.publisher.fromClient(connection, channel, namespace, data.data, { ephemeral, frameId: frame.id, key });
      }
      case ClientEvent.HISTORY: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = permissions.rules.resolve(channel);
        const since = optionalPosition(data, 'since');
        const reverse = optionalBoolean(data, 'reverse');
        const limit = data.limit;
        if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0)) {
          throw new ChorusError(ErrorCode.BAD_REQUEST, 'limit must be a non-negative integer');
        }
        await permissions.checkRead(connection, channel, namespace, 'history');
        return ctx.history(channel, {
          ...(since ? { since } : {}),
          ...(typeof limit === 'number' ? { limit } : {}),
          ...(reverse ? { reverse } : {}),
        });
      }
      case ClientEvent.PRESENCE: {
        const channel = channelOf(objectData(frame));
        const namespace = permissions.rules.resolve(channel);
        await permissions.checkRead(connection, channel, namespace, 'presence');
        return ctx.presence(channel);
      }
      case ClientEvent.REFRESH:
        return this.refresh(connection, objectData(frame));
      case ClientEvent.PING:
        if (frame.id === undefined) connection.send({ event: ServerEvent.PONG });
        return {};
      case ServerEvent.PONG:
        // A sign of life; answered only to keep the rule that a frame with an id gets one reply.
        return frame.id === undefined ? NO_REPLY : {};
      default: {
        const served = ctx.protocolFrames.get(frame.event);
        if (served) return served(frame.data ?? null, connection);
        const entry = ctx.handlers.get(frame.event);
        const reserved = RESERVED_EVENTS.has(frame.event) || DOCUMENT_EVENTS.has(frame.event);
        if (!entry || reserved) {
          const fallback = reserved ? undefined : ctx.hooks.unhandledEventHandler();
          if (fallback) return fallback.onUnhandledEvent!({ connection, event: frame.event, data: frame.data ?? null });
          throw new ChorusError(ErrorCode.UNKNOWN_EVENT, `no handler for event "${frame.event}"`);
        }
        const payload = entry.options.schema ? await validate(entry.options.schema, frame.data ?? null) : frame.data ?? null;
        return entry.handler(payload as never, { connection, server: ctx.server, event: frame.event });
      }
    }
  }

  /** `refresh`: a new token for the same user extends the connection's expiry. */
  private async refresh(connection: Connection, data: Record<string, unknown>): Promise<unknown> {
    if (typeof data.token !== 'string' || data.token.length === 0) throw new ChorusError(ErrorCode.BAD_REQUEST, 'token must be a string');
    let identity;
    try {
      identity = await this.ctx.authenticator.authenticateToken(data.token);
    } catch (err) {
      throw new ChorusError(ErrorCode.TOKEN_INVALID, (err as Error).message);
    }
    if (identity.user !== connection.user) throw new ChorusError(ErrorCode.TOKEN_INVALID, 'the new token is for another user');
    if (identity.expiresAt !== undefined && identity.expiresAt + this.ctx.clockToleranceMs <= this.ctx.now()) {
      throw new ChorusError(ErrorCode.TOKEN_INVALID, 'invalid token: expired');
    }
    connection.expiresAt = identity.expiresAt;
    if (identity.info) connection.info = identity.info;
    return identity.expiresAt === undefined ? {} : { expiresAt: identity.expiresAt };
  }
}
