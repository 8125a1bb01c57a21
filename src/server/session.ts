import {
  ChorusError,
  ClientEvent,
  CloseCode,
  ErrorCode,
  RESERVED_EVENTS,
  ServerEvent,
  isStreamPosition,
  parseFrame,
  splitFrames,
  type ConnectedData,
  type Frame,
  type StreamPosition,
  type SubscribeResult,
} from '../protocol/index.js';
import type { Connection } from './connection.js';
import { toChorusError } from './errors.js';
import type { ResolvedNamespace } from './options.js';
import { validate, type StandardSchemaV1 } from './schema.js';
import type { ChorusServer } from './server.js';

/** Context given to application event handlers. */
export interface HandlerContext {
  /** The connection that sent the event: `emit`, `subscribe` via the server, `close`. */
  connection: Connection;
  /** The server, to publish, broadcast, subscribe or disconnect. */
  server: ChorusServer;
  /** The event name. */
  event: string;
}

export type EventHandler<T = unknown> = (data: T, ctx: HandlerContext) => unknown | Promise<unknown>;

export interface HandlerOptions<S extends StandardSchemaV1 = StandardSchemaV1> {
  /** Validate `data` with any Standard Schema validator (zod, valibot, ...); failures reply BAD_REQUEST. */
  schema?: S;
}

/** Error codes that count as a client fault (see limits.maxFaults). */
const FAULT_CODES: ReadonlySet<string> = new Set([
  ErrorCode.BAD_FRAME,
  ErrorCode.UNKNOWN_EVENT,
  ErrorCode.BAD_REQUEST,
  ErrorCode.BAD_CHANNEL,
  ErrorCode.RATE_LIMITED,
]);

/** Frames waiting for their turn on one connection before its socket is paused. */
export const MAX_PENDING_FRAMES = 256;
/** Waiting frames below which a paused socket is resumed. */
export const RESUME_PENDING_FRAMES = 32;

function objectData(frame: Frame): Record<string, unknown> {
  const data = frame.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, `"${frame.event}" needs an object as data`);
  }
  return data as Record<string, unknown>;
}

/** The `channel` field: missing or not a string is BAD_REQUEST; an invalid name is BAD_CHANNEL later. */
function channelOf(data: Record<string, unknown>): string {
  const channel = data.channel;
  if (typeof channel !== 'string') throw new ChorusError(ErrorCode.BAD_REQUEST, 'channel must be a string');
  return channel;
}

function optionalPosition(data: Record<string, unknown>, key: string): StreamPosition | undefined {
  const value = data[key];
  if (value === undefined || value === null) return undefined;
  if (!isStreamPosition(value)) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be {"offset": non-negative integer, "epoch": string}`);
  }
  return { offset: value.offset, epoch: value.epoch };
}

function optionalBoolean(data: Record<string, unknown>, key: string): boolean | undefined {
  const value = data[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be a boolean`);
  return value;
}

/**
 * The protocol session: turns incoming WebSocket messages into frames, applies the rate limit
 * and fault counting, and runs each connection's frames one at a time, in order.
 */
export class Session {
  private readonly queues = new WeakMap<Connection, Promise<void>>();
  private readonly pending = new WeakMap<Connection, number>();
  private readonly paused = new WeakSet<Connection>();
  /** Connections past `maxFaults`: reading stopped, a 1008 close is queued. */
  private readonly abusive = new WeakSet<Connection>();

  constructor(private readonly server: ChorusServer) {}

  private readonly inCounters = new Map<string, { inc(): void }>();

  /** Count an incoming frame; label children are cached (the label set is small and fixed). */
  private countIn(event: string): void {
    let counter = this.inCounters.get(event);
    if (!counter) this.inCounters.set(event, (counter = this.server.metrics.messagesIn.labels({ event })));
    counter.inc();
  }

  assertHandlerName(event: string): void {
    if (typeof event !== 'string' || event.length === 0 || event.length > 128) {
      throw new TypeError('event name must be a string of 1 to 128 characters');
    }
    if (RESERVED_EVENTS.has(event)) throw new TypeError(`"${event}" is a reserved protocol event`);
  }

  /**
   * Set up a new connection: server-side subscriptions (the personal channel, then `channels`
   * from the identity), then the `connected` frame, then hooks.
   */
  start(connection: Connection, channels: readonly string[] = []): void {
    this.enqueue(connection, async () => {
      const server = this.server;
      const subscriptions: SubscribeResult[] = [];
      const goLives: Array<() => void> = [];
      let goLive: (() => void) | undefined;
      if (server.options.personalChannel) {
        const channel = `user:${connection.user}`;
        try {
          const namespace = server.rules.resolve(channel);
          const personal = await server.hub.subscribe(connection, channel, namespace, {}, Number.MAX_SAFE_INTEGER);
          subscriptions.push(personal.result);
          goLive = personal.goLive;
        } catch (err) {
          const code = err instanceof ChorusError ? err.code : ErrorCode.INTERNAL;
          if (code === ErrorCode.BAD_CHANNEL) {
            // No personal namespace, or a user id that is not a valid channel name: connect without it.
            server.logger.warn({ client: connection.id, user: connection.user }, 'no personal channel for this user');
          } else {
            // The engine failed: without its personal channel the client would silently miss
            // notifications, so it reconnects (with backoff) instead.
            server.logger.warn({ err: { message: (err as Error).message }, client: connection.id }, 'personal channel subscribe failed');
            connection.close(CloseCode.DISCONNECT_RECONNECT, 'personal channel unavailable; reconnect', { reconnect: true });
            return;
          }
        }
      }
      for (const channel of channels) {
        if (connection.subscriptions.has(channel)) continue;
        try {
          const namespace = server.rules.resolve(channel);
          await server.hooks.deny('onSubscribe', { connection, channel, serverSide: true });
          const subscribed = await server.hub.subscribe(connection, channel, namespace, {}, server.options.limits.maxSubscriptionsPerConnection);
          subscriptions.push(subscribed.result);
          goLives.push(subscribed.goLive);
        } catch (err) {
          // A channel the identity named but that cannot be subscribed (bad name, denied, limit,
          // engine): the connection goes on without it, as with a failed server-side subscribe.
          server.logger.warn({ err: { message: (err as Error).message }, client: connection.id, channel }, 'connect-time subscribe failed');
        }
      }
      this.sendConnected(connection, subscriptions);
      goLive?.();
      for (const live of goLives) live();
      try {
        await server.hooks.run('onConnect', { connection });
      } catch (err) {
        const e = toChorusError(err);
        connection.close(CloseCode.DISCONNECT, e?.message ?? 'connection denied');
      }
    });
  }

  private sendConnected(connection: Connection, subscriptions: SubscribeResult[]): void {
    const { intervalMs, timeoutMs } = this.server.options.heartbeat;
    const data: ConnectedData = {
      client: connection.id,
      user: connection.user,
      node: this.server.options.nodeId,
      pingIntervalMs: intervalMs,
      pingTimeoutMs: timeoutMs,
      subscriptions,
    };
    if (connection.expiresAt !== undefined) data.expiresAt = connection.expiresAt;
    connection.send({ event: ServerEvent.CONNECTED, data });
  }

  /**
   * Run a task after the connection's earlier ones. Past MAX_PENDING_FRAMES waiting tasks (a
   * slow handler or engine and a client that keeps sending) the socket is paused, so memory
   * stays bounded: TCP pushes back on the client until the queue drains to RESUME_PENDING_FRAMES.
   */
  private enqueue(connection: Connection, task: () => Promise<void>): void {
    const pending = (this.pending.get(connection) ?? 0) + 1;
    this.pending.set(connection, pending);
    if (pending > MAX_PENDING_FRAMES && !this.paused.has(connection)) {
      this.paused.add(connection);
      connection.ws.pause();
    }
    const previous = this.queues.get(connection) ?? Promise.resolve();
    const next = previous
      .then(task)
      .catch((err) => {
        this.server.logger.error({ err, client: connection.id }, 'frame handling failed');
      })
      .finally(() => {
        const left = (this.pending.get(connection) ?? 1) - 1;
        this.pending.set(connection, left);
        if (left <= RESUME_PENDING_FRAMES && this.paused.has(connection) && !this.abusive.has(connection)) {
          this.paused.delete(connection);
          connection.ws.resume();
        }
      });
    this.queues.set(connection, next);
  }

  /** One WebSocket message from a client. */
  onMessage(connection: Connection, data: Buffer, isBinary: boolean): void {
    if (connection.closing) return;
    const server = this.server;
    connection.lastSeen = Date.now();
    server.metrics.bytesIn.inc(data.length);
    if (isBinary) {
      const error = new ChorusError(ErrorCode.BAD_FRAME, 'binary messages are not accepted; send JSON text');
      this.enqueue(connection, async () => this.sendError(connection, undefined, 'binary', error));
      this.countFault(connection, error.code);
      return;
    }
    for (const text of splitFrames(data.toString('utf8'))) {
      if (connection.closing) return;
      let frame: Frame;
      try {
        frame = parseFrame(text);
      } catch (err) {
        const error = err as ChorusError;
        this.enqueue(connection, async () => this.sendError(connection, undefined, undefined, error));
        this.countFault(connection, error.code);
        continue;
      }
      this.countIn(RESERVED_EVENTS.has(frame.event) ? frame.event : 'app');
      const rate = connection.consumeRate();
      if (!rate.ok) {
        server.limitHit('rate', connection);
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

  private reply(connection: Connection, frame: Frame, result: unknown): void {
    if (frame.id !== undefined) connection.send({ event: ServerEvent.ACK, id: frame.id, data: result ?? null });
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
    if (connection.closing || !FAULT_CODES.has(code) || this.abusive.has(connection) || !connection.addFault()) return;
    this.abusive.add(connection);
    this.server.metrics.limitHits.inc({ limit: 'faults' });
    this.server.logger.warn({ client: connection.id, user: connection.user }, 'too many faulty frames');
    connection.ws.pause();
    this.enqueue(connection, async () => connection.close(CloseCode.POLICY_VIOLATION, 'too many faulty frames'));
  }

  private async handle(connection: Connection, frame: Frame): Promise<void> {
    // Past maxFaults nothing more is handled: the 1008 close is on its way.
    if (connection.closing || this.abusive.has(connection)) return;
    try {
      const result = await this.dispatch(connection, frame);
      if (result === NO_REPLY) return;
      this.reply(connection, frame, result.value);
      result.after?.();
    } catch (err) {
      let error = toChorusError(err);
      if (!error) {
        this.server.logger.error({ err, client: connection.id, event: frame.event }, 'handler failed');
        error = new ChorusError(ErrorCode.INTERNAL, 'internal error');
      }
      this.sendError(connection, frame.id, frame.event, error);
      this.countFault(connection, error.code);
    }
  }

  private namespaceFor(channel: unknown): ResolvedNamespace {
    return this.server.rules.resolve(channel);
  }

  private async authorize(connection: Connection, action: 'subscribe' | 'publish' | 'history' | 'presence', channel: string): Promise<void> {
    const authorize = this.server.options.authorize;
    if (!authorize) return;
    let allowed: boolean;
    try {
      allowed = await authorize({ action, channel, user: connection.user, info: connection.info, client: connection.id });
    } catch (err) {
      throw toChorusError(err) ?? new ChorusError(ErrorCode.PERMISSION_DENIED, `${action} on "${channel}" is not allowed`);
    }
    if (!allowed) throw new ChorusError(ErrorCode.PERMISSION_DENIED, `${action} on "${channel}" is not allowed`);
  }

  /** Subscribe permission (namespace rules + authorize), used by subscribe, history and presence. */
  private async checkRead(connection: Connection, channel: string, namespace: ResolvedNamespace, action: 'subscribe' | 'history' | 'presence') {
    if (action !== 'subscribe' && connection.subscriptions.has(channel)) return;
    this.server.rules.checkSubscribe(channel, namespace, connection.user);
    await this.authorize(connection, action, channel);
  }

  private async dispatch(connection: Connection, frame: Frame): Promise<Reply | typeof NO_REPLY> {
    const server = this.server;
    switch (frame.event) {
      case ClientEvent.SUBSCRIBE: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = this.namespaceFor(channel);
        const since = optionalPosition(data, 'since');
        const snapshot = optionalBoolean(data, 'snapshot');
        await this.checkRead(connection, channel, namespace, 'subscribe');
        if (connection.subscriptions.has(channel)) {
          throw new ChorusError(ErrorCode.ALREADY_SUBSCRIBED, `already subscribed to "${channel}"`);
        }
        await server.hooks.deny('onSubscribe', { connection, channel, serverSide: false });
        const { result, goLive } = await server.hub.subscribe(
          connection,
          channel,
          namespace,
          { ...(since ? { since } : {}), ...(snapshot ? { snapshot } : {}) },
          server.options.limits.maxSubscriptionsPerConnection,
        );
        server.logger.debug({ client: connection.id, channel, recovered: result.recovered }, 'subscribed');
        if (frame.id === undefined) {
          // Without an id there is no ack, so the position travels in a `subscribed` event.
          return { value: undefined, after: () => (connection.send({ event: ServerEvent.SUBSCRIBED, data: result }), goLive()) };
        }
        return { value: result, after: goLive };
      }
      case ClientEvent.UNSUBSCRIBE: {
        const data = objectData(frame);
        const channel = channelOf(data);
        if (!(await server.hub.unsubscribe(connection, channel))) {
          throw new ChorusError(ErrorCode.NOT_SUBSCRIBED, `not subscribed to "${channel}"`);
        }
        server.logger.debug({ client: connection.id, channel }, 'unsubscribed');
        return { value: { channel } };
      }
      case ClientEvent.PUBLISH: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = this.namespaceFor(channel);
        if (!('data' in data)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'publish needs data');
        const ephemeral = optionalBoolean(data, 'ephemeral') === true;
        server.rules.checkPublish(channel, namespace, connection.user, connection.subscriptions.has(channel));
        await this.authorize(connection, 'publish', channel);
        if (ephemeral) {
          if (!namespace.ephemeral) throw new ChorusError(ErrorCode.NOT_AVAILABLE, `ephemeral publications are off for "${channel}"`);
          const rate = await server.engine.rateLimiter.consume(
            `eph\u0000${connection.user}\u0000${channel}`,
            namespace.ephemeralPerSecond,
            namespace.ephemeralPerSecond,
          );
          if (!rate.ok) {
            server.limitHit('ephemeral', connection, { channel });
            throw new ChorusError(ErrorCode.RATE_LIMITED, 'too many ephemeral publications', { retryAfterMs: rate.retryAfterMs });
          }
        }
        const result = await server.publishChecked(channel, namespace, data.data, {
          source: 'client',
          connection,
          ...(ephemeral ? { ephemeral } : {}),
          ...(frame.id !== undefined && !ephemeral ? { idempotencyKey: `${connection.user}\u0000${frame.id}` } : {}),
        });
        return { value: result };
      }
      case ClientEvent.HISTORY: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = this.namespaceFor(channel);
        const since = optionalPosition(data, 'since');
        const reverse = optionalBoolean(data, 'reverse');
        const limit = data.limit;
        if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0)) {
          throw new ChorusError(ErrorCode.BAD_REQUEST, 'limit must be a non-negative integer');
        }
        await this.checkRead(connection, channel, namespace, 'history');
        return {
          value: await server.history(channel, {
            ...(since ? { since } : {}),
            ...(typeof limit === 'number' ? { limit } : {}),
            ...(reverse ? { reverse } : {}),
          }),
        };
      }
      case ClientEvent.PRESENCE: {
        const data = objectData(frame);
        const channel = channelOf(data);
        const namespace = this.namespaceFor(channel);
        await this.checkRead(connection, channel, namespace, 'presence');
        return { value: await server.presence(channel) };
      }
      case ClientEvent.REFRESH: {
        const data = objectData(frame);
        if (typeof data.token !== 'string' || data.token.length === 0) throw new ChorusError(ErrorCode.BAD_REQUEST, 'token must be a string');
        let identity;
        try {
          identity = await server.authenticator.authenticateToken(data.token);
        } catch (err) {
          throw new ChorusError(ErrorCode.TOKEN_INVALID, (err as Error).message);
        }
        if (identity.user !== connection.user) throw new ChorusError(ErrorCode.TOKEN_INVALID, 'the new token is for another user');
        if (identity.expiresAt !== undefined && identity.expiresAt + server.clockToleranceMs <= Date.now()) {
          throw new ChorusError(ErrorCode.TOKEN_INVALID, 'invalid token: expired');
        }
        connection.expiresAt = identity.expiresAt;
        if (identity.info) connection.info = identity.info;
        return { value: identity.expiresAt === undefined ? {} : { expiresAt: identity.expiresAt } };
      }
      case ClientEvent.PING:
        if (frame.id === undefined) connection.send({ event: ServerEvent.PONG });
        return { value: {} };
      case ServerEvent.PONG:
        // A sign of life; answered only to keep the rule that a frame with an id gets one reply.
        return frame.id === undefined ? NO_REPLY : { value: {} };
      default: {
        const entry = server.handlers.get(frame.event);
        if (!entry || RESERVED_EVENTS.has(frame.event)) {
          const fallback = RESERVED_EVENTS.has(frame.event) ? undefined : server.hooks.unhandledEventHandler();
          if (fallback) return { value: await fallback.onUnhandledEvent!({ connection, event: frame.event, data: frame.data ?? null }) };
          throw new ChorusError(ErrorCode.UNKNOWN_EVENT, `no handler for event "${frame.event}"`);
        }
        const payload = entry.options.schema ? await validate(entry.options.schema, frame.data ?? null) : frame.data ?? null;
        return { value: await entry.handler(payload as never, { connection, server, event: frame.event }) };
      }
    }
  }
}

interface Reply {
  value: unknown;
  /** Runs right after the reply was queued (e.g. releasing live publications after a subscribe ack). */
  after?: () => void;
}

const NO_REPLY = Symbol('no reply');
