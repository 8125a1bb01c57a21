/**
 * The Chorus client: one WebSocket connection with reconnects (full-jitter backoff), token
 * refresh, dead-server detection, requests with acks and timeouts, an offline publish queue,
 * and the channel subscriptions. Isomorphic: it imports nothing from Node.
 *
 * Over 450 lines because it is one state machine (one `#setState`, one `#disconnect`, one
 * generation counter that makes late async work harmless); its helpers (requests,
 * subscriptions, backoff, offline queue, positions) already live in their own files.
 */
import { ChorusError, CloseCode, ErrorCode, RESERVED_EVENTS, shouldReconnect } from '../protocol/index.js';
import type {
  ConnectedData,
  DisconnectData,
  Frame,
  HistoryResult,
  MessageData,
  PresenceEventData,
  SkippedData,
  PublishResult,
  SubscribeResult,
} from '../protocol/index.js';
import { Backoff } from './backoff.js';
import type * as Y from 'yjs';
import type { ClientDocument, DocumentHost } from './document.js';
import { watchRefusal, type Refusal } from './refusal.js';
import { Emitter } from './emitter.js';
import { ChorusClientError, disconnectedError } from './errors.js';
import { Requests } from './requests.js';
import type { RequestKind, Timer } from './requests.js';
import { Subscription } from './subscription.js';
import type { SubscribeOptions, SubscriptionHost, UnsubscribedData } from './subscription.js';
import type { HistoryOptions, PresenceResult, RefreshResult, StateChange, WebSocketConstructor, WebSocketLike } from './types.js';
import { HttpStreamSocket, type FetchLike } from './http-stream.js';
import { TransportChooser, type TransportName } from './transports.js';
import { Wire } from './wire.js';

export const ClientState = {
  /** Not connected and not trying to be: before `connect()`, after `close()`, or after a no-reconnect close code. */
  DISCONNECTED: 'disconnected',
  /** Opening a socket, waiting for `connected`, or waiting to reconnect. */
  CONNECTING: 'connecting',
  /** The server's `connected` frame arrived; frames flow. */
  CONNECTED: 'connected',
} as const;
export type ClientState = (typeof ClientState)[keyof typeof ClientState];

/** Close codes the client reports for closes it decides itself (3000-3999: reconnect). */
export const ClientCloseCode = {
  /** `close()` was called. */
  CLIENT_CLOSED: CloseCode.NORMAL,
  /** No `connected` frame within `timeoutMs` of opening the socket. */
  CONNECT_TIMEOUT: 3001,
  /** No frame at all for `pingIntervalMs + pingTimeoutMs / 3`: the server or the network is dead. */
  NO_PING: 3002,
  /** `getToken` failed or the WebSocket constructor threw. */
  CONNECT_FAILED: 3003,
  /** On the HTTP streaming fallback for `websocketRetryMs`: reconnecting to try the WebSocket again. */
  RETRY_WEBSOCKET: 3004,
} as const;

/** The documents implementation (`ClientDocument` from `chorus/client/document`), injected so the client does not bundle Yjs unless used. */
export type DocumentConstructor = new (host: DocumentHost, name: string, doc?: Y.Doc) => ClientDocument;

export interface ChorusClientOptions {
  /**
   * Enables `client.document(name)`: pass `ClientDocument` from `chorus/client/document` (it
   * imports yjs and y-protocols, which the rest of the client does not). Default: none
   * (`document()` throws a TypeError).
   */
  Document?: DocumentConstructor;
  /** WebSocket URL including the path, e.g. `ws://127.0.0.1:8080/ws`. */
  url: string;
  /** The JWT, sent as the `?token=` query parameter. Used for the first connect (and every one when `getToken` is absent). */
  token?: string;
  /**
   * Returns a fresh JWT. Called on every reconnect (and the first connect without `token`), and
   * before the token expires: a `refresh` frame is sent at 80% of the remaining lifetime or 30 s
   * before `expiresAt`, whichever is earlier.
   */
  getToken?: () => Promise<string>;
  /** WebSocket constructor. Default `globalThis.WebSocket` (pass `WebSocket` from `ws` on Node < 22). Not needed when `transports` leaves `websocket` out. */
  WebSocket?: WebSocketConstructor;
  /**
   * Wire format: `'json'` (text frames; binary travels as `{"$bin": base64}`) or `'msgpack'`
   * (the `chorus.v1.msgpack` subprotocol: binary frames, binary payloads as MessagePack bin).
   * Binary payloads are `Uint8Array` either way. Default `'json'`.
   */
  codec?: 'json' | 'msgpack';
  /**
   * Transports in order of preference. After two attempts in a row that end before `connected`
   * (WebSocket blocked, upgrade stripped by a proxy, 1006 before open) the next one is used:
   * `'http-stream'` is a streaming response down and POSTs up, with the same frames, recovery
   * and acks (JSON only). Default `['websocket', 'http-stream']`.
   */
  transports?: TransportName[];
  /** HTTP streaming endpoint URL. Default: `url` with `ws(s)` -> `http(s)` and the path `/stream`. */
  httpStreamUrl?: string;
  /** `fetch` for the HTTP streaming fallback. Default `globalThis.fetch`. */
  fetch?: FetchLike;
  /** After this long connected over a fallback, reconnect to try the WebSocket again, in ms. Default 300000. */
  websocketRetryMs?: number;
  /** Smallest reconnect backoff ceiling, in ms. Default 1000. */
  minReconnectDelayMs?: number;
  /** Largest reconnect delay, in ms. Default 30000. */
  maxReconnectDelayMs?: number;
  /** How long a request waits for its reply, and a new socket for `connected`, in ms. Default 10000. */
  timeoutMs?: number;
  /** Most publishes held while offline; more reject with QUEUE_FULL. Default 100. */
  maxQueuedPublishes?: number;
  /** How long a publish may wait offline before it rejects with QUEUE_FULL, in ms. Default 60000. */
  maxQueuedAgeMs?: number;
  /** Random number in [0, 1) for backoff jitter. Default `Math.random`. */
  random?: () => number;
  /** Clock in ms since the Unix epoch (token expiry, queue age, typing). Default `Date.now`. */
  now?: () => number;
}

/** Data of the 'connecting' event. */
export interface ConnectingData {
  /** Failed attempts since the last successful `connected` (0 for the first try). */
  attempt: number;
  /** Wait before this attempt, in ms. */
  delayMs: number;
}

/** Data of the 'disconnected' event, emitted whenever a connection (or attempt) ends. */
export interface DisconnectedData {
  /** The WebSocket close code, or a ClientCloseCode. */
  code: number;
  reason: string;
  /** Whether the client will reconnect (the state stays 'connecting'); false: state 'disconnected'. */
  reconnect: boolean;
}

/** Lifecycle events of the client. These names are reserved: a server application event with one of them is not delivered. */
export interface ClientLifecycleEvents {
  /** Every state change. */
  state: StateChange<ClientState>;
  /** A connection attempt is scheduled. */
  connecting: ConnectingData;
  /** The server's `connected` frame. */
  connected: ConnectedData;
  /** A connection or attempt ended. */
  disconnected: DisconnectedData;
  /** A transport error, a failed token refresh, or an `error` frame without id. */
  error: Error;
  /** A publication for a channel with no Subscription object. */
  message: MessageData;
  /** `join` for a channel with no Subscription object. */
  join: PresenceEventData;
  /** `leave` for a channel with no Subscription object. */
  leave: PresenceEventData;
  /** The server subscribed this connection (a Subscription object exists for it now). */
  subscribed: SubscribeResult;
  /** The server unsubscribed this connection. */
  unsubscribed: UnsubscribedData;
}

/** All events of a client: lifecycle events plus the server's application events (typed by `ServerEvents`). */
export type ClientEventMap<ServerEvents> = ClientLifecycleEvents & Omit<ServerEvents, keyof ClientLifecycleEvents>;

/** Shape of the `ClientEvents` generic: application event name -> `(data) => ack data`. */
export type ClientEventsShape<C> = { [K in keyof C]: (data: any) => unknown };

/**
 * @typeParam ServerEvents application events the server sends: name -> data type.
 * @typeParam ClientEvents application events the client emits: name -> `(data) => ack`.
 */
export class ChorusClient<
  ServerEvents extends object = Record<string, unknown>,
  ClientEvents extends ClientEventsShape<ClientEvents> = Record<string, (data: unknown) => unknown>,
> extends Emitter<ClientEventMap<ServerEvents>> {
  readonly #url: string;
  readonly #token: string | undefined;
  readonly #getToken: (() => Promise<string>) | undefined;
  /** Undefined only when `transports` leaves the WebSocket out. */
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #codec: 'json' | 'msgpack';
  /** The MessagePack wire, loaded on the first MessagePack connection. */
  #msgpackWire: Wire | undefined;
  readonly #jsonWire: Wire;
  readonly #chooser: TransportChooser;
  readonly #httpStreamUrl: string;
  readonly #fetch: FetchLike | undefined;
  /** The codec and transport of the current connection. */
  #activeWire: Wire;
  #transport: TransportName = 'websocket';
  #transportTimer: Timer | undefined;
  readonly #timeoutMs: number;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #backoff: Backoff;
  readonly #requests: Requests;
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #idPrefix: string;
  #idCounter = 0;
  readonly #documents = new Map<string, ClientDocument>();
  readonly #Document: DocumentConstructor | undefined;

  #state: ClientState = ClientState.DISCONNECTED;
  #socket: WebSocketLike | undefined;
  #ready = false;
  #connectedData: ConnectedData | undefined;
  /** Incremented by every teardown: async work (getToken, refresh) started before it is ignored. */
  #generation = 0;
  #connects = 0;
  #disconnectFrame: DisconnectData | undefined;
  #lastFrameAt = 0;
  #connectTimer: Timer | undefined;
  #reconnectTimer: Timer | undefined;
  #pingTimer: Timer | undefined;
  #refreshTimer: Timer | undefined;
  readonly #host: SubscriptionHost;

  constructor(options: ChorusClientOptions) {
    super();
    if (typeof options?.url !== 'string' || options.url.length === 0) throw new TypeError('options.url is required');
    const WebSocketImpl =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.#url = options.url;
    this.#Document = options.Document;
    this.#token = options.token;
    this.#getToken = options.getToken;
    this.#WebSocket = WebSocketImpl;
    this.#codec = options.codec ?? 'json';
    if (this.#codec !== 'json' && this.#codec !== 'msgpack') throw new TypeError(`codec must be "json" or "msgpack", got ${JSON.stringify(this.#codec)}`);
    this.#jsonWire = Wire.json();
    this.#activeWire = this.#jsonWire;
    this.#fetch = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch?.bind(globalThis);
    const transports = options.transports ?? (this.#fetch ? ['websocket', 'http-stream'] : ['websocket']);
    if (transports.includes('http-stream') && !this.#fetch) throw new TypeError('the http-stream transport needs fetch: pass options.fetch');
    if (transports.includes('websocket') && WebSocketImpl === undefined) {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. WebSocket from "ws")');
    }
    this.#chooser = new TransportChooser(transports, 2, positive('websocketRetryMs', options.websocketRetryMs ?? 300_000));
    this.#httpStreamUrl = options.httpStreamUrl ?? streamUrlOf(this.#url);
    this.#timeoutMs = positive('timeoutMs', options.timeoutMs ?? 10_000);
    this.#minDelay = nonNegative('minReconnectDelayMs', options.minReconnectDelayMs ?? 1000);
    this.#maxDelay = nonNegative('maxReconnectDelayMs', options.maxReconnectDelayMs ?? 30_000);
    if (this.#maxDelay < this.#minDelay) {
      throw new TypeError('maxReconnectDelayMs must be >= minReconnectDelayMs');
    }
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#backoff = new Backoff(this.#minDelay, this.#maxDelay, this.#random);
    this.#requests = new Requests({
      timeoutMs: this.#timeoutMs,
      maxQueuedPublishes: options.maxQueuedPublishes ?? 100,
      maxQueuedAgeMs: options.maxQueuedAgeMs ?? 60_000,
      now: this.#now,
      resend: (request) => this.#send(request.frame),
    });
    this.#idPrefix = randomPrefix();
    const self = this;
    this.#host = {
      get ready() {
        return self.#ready;
      },
      now: () => this.#now(),
      request: (event, data, kind) => this.#request(event, data, kind),
      newBackoff: () => new Backoff(this.#minDelay, this.#maxDelay, this.#random),
    };
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The transport of the current (or last) connection: `'websocket'` or `'http-stream'`. */
  get transport(): TransportName {
    return this.#transport;
  }

  /** The last `connected` frame's data (undefined before the first). */
  get connectedData(): ConnectedData | undefined {
    return this.#connectedData;
  }

  /** Publishes waiting in the offline queue. */
  get queuedPublishes(): number {
    return this.#requests.queued;
  }

  /**
   * Start connecting (and keep reconnecting until `close()` or a no-reconnect close code). While
   * waiting out a reconnect delay it reconnects at once (a "Reconnect now" button); otherwise a
   * no-op unless disconnected.
   */
  connect(): void {
    if (this.#state === ClientState.CONNECTING && this.#reconnectTimer !== undefined) {
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = undefined;
      void this.#open();
      return;
    }
    if (this.#state !== ClientState.DISCONNECTED) return;
    this.#setState(ClientState.CONNECTING);
    this.#emit('connecting', { attempt: 0, delayMs: 0 });
    void this.#open();
  }

  /**
   * Stop for good: close the socket, stop reconnecting, reject every pending request and queued
   * publish with DISCONNECTED. Subscriptions are kept (state 'subscribing'); `connect()` again
   * resubscribes them. Documents (`document()`) are destroyed: their awareness timers stop.
   */
  close(): void {
    for (const document of [...this.#documents.values()]) document.destroy();
    this.#disconnect(ClientCloseCode.CLIENT_CLOSED, 'client closed', false);
  }

  /**
   * Send an application event; resolves with the server handler's ack data. While connecting it
   * waits for the connection (its timeout runs); in state 'disconnected' it rejects with
   * DISCONNECTED, and so does a connection drop before the reply (application events are not
   * re-sent: they may not be idempotent). Reserved event names reject with BAD_REQUEST.
   */
  emit<E extends keyof ClientEvents & string>(
    event: E,
    data: Parameters<ClientEvents[E]>[0],
  ): Promise<Awaited<ReturnType<ClientEvents[E]>>> {
    if (RESERVED_EVENTS.has(event)) {
      return Promise.reject(
        new ChorusClientError(ErrorCode.BAD_REQUEST, `"${event}" is a reserved event; use the client's method for it`),
      );
    }
    return this.#request(event, data, 'request') as Promise<Awaited<ReturnType<ClientEvents[E]>>>;
  }

  /**
   * Publish to a channel; resolves with the offset and epoch the server gave it (none for an
   * ephemeral publish). While not connected (state 'connecting') a publish waits in the offline
   * queue; a publish in flight when the connection drops is re-sent with the same id, which the
   * server dedupes, and so is a publish answered OUTCOME_UNKNOWN (Redis trouble: it may have
   * been applied), until a definite answer or `timeoutMs`; it then rejects with OUTCOME_UNKNOWN.
   * Ephemeral publishes are never queued or retried: offline they reject with DISCONNECTED.
   * In state 'disconnected' every publish rejects with DISCONNECTED.
   */
  publish(channel: string, data: unknown, options: { ephemeral?: boolean } = {}): Promise<PublishResult> {
    const ephemeral = options.ephemeral === true;
    return this.#request(
      'publish',
      ephemeral ? { channel, data, ephemeral: true } : { channel, data },
      ephemeral ? 'volatile' : 'publish',
    ) as Promise<PublishResult>;
  }

  /** Read a channel's retained publications (docs/PROTOCOL.md 5.4). */
  history(channel: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.#request('history', { channel, ...options }, 'request') as Promise<HistoryResult>;
  }

  /** A channel's members, one per user (docs/PROTOCOL.md 5.5). */
  presence(channel: string): Promise<PresenceResult> {
    return this.#request('presence', { channel }, 'request') as Promise<PresenceResult>;
  }

  /**
   * Subscribe to a channel. Returns the channel's Subscription: a new one, or the existing one
   * (resubscribed if it was unsubscribed; its options are kept). Sent when connected.
   */
  subscribe<D = unknown>(channel: string, options: SubscribeOptions = {}): Subscription<D> {
    let subscription = this.#subscriptions.get(channel);
    if (subscription === undefined) {
      subscription = new Subscription(this.#host, channel, options);
      this.#subscriptions.set(channel, subscription);
    }
    subscription.subscribe();
    return subscription as Subscription<D>;
  }

  /** The Subscription of a channel (client-side or server-side), if any. */
  getSubscription<D = unknown>(channel: string): Subscription<D> | undefined {
    return this.#subscriptions.get(channel) as Subscription<D> | undefined;
  }

  /** Every Subscription object. */
  subscriptions(): Subscription[] {
    return [...this.#subscriptions.values()];
  }

  /** Unsubscribe and forget a Subscription (messages for its channel then go to the client's 'message'). */
  async removeSubscription(subscription: Subscription): Promise<void> {
    if (this.#subscriptions.get(subscription.channel) !== subscription) return;
    this.#subscriptions.delete(subscription.channel);
    await subscription.unsubscribe();
  }

  // ---- requests ----

  /**
   * A shared Yjs document on this connection (a `document: true` namespace, e.g. `doc:notes`):
   * its `doc` is kept in sync, its `awareness` carries cursors and names, and it re-syncs after
   * every reconnect. The same name returns the same document until `destroy()`.
   */
  document(name: string, options: { doc?: Y.Doc } = {}): ClientDocument {
    let document = this.#documents.get(name);
    if (document === undefined) {
      const Document = this.#Document;
      if (Document === undefined) {
        throw new TypeError('documents need options.Document: ClientDocument from "chorus/client/document" (it brings Yjs)');
      }
      const self = this;
      document = new Document(
        {
          get ready() {
            return self.#ready;
          },
          request: (event, data) => this.#request(event, data, 'request'),
          on: (event, listener) => (this.on as (e: string, l: (d: unknown) => void) => () => void)(event, listener),
          forget: (d) => {
            if (this.#documents.get(d.name) === d) this.#documents.delete(d.name);
          },
        },
        name,
        options.doc,
      );
      this.#documents.set(name, document);
    }
    return document;
  }

  #nextId(): string {
    return `${this.#idPrefix}-${(this.#idCounter++).toString(36)}`;
  }

  #request(event: string, data: unknown, kind: RequestKind): Promise<unknown> {
    if (this.#state === ClientState.DISCONNECTED) {
      return Promise.reject(disconnectedError('the client is not connected; call connect()'));
    }
    const { request, promise } = this.#requests.create({ event, data, id: this.#nextId() }, kind);
    if (this.#ready) {
      this.#requests.sent(request);
      this.#send(request.frame);
    } else {
      this.#requests.wait(request);
    }
    return promise;
  }

  #send(frame: Frame): void {
    try {
      this.#socket?.send(this.#activeWire.encode(frame));
    } catch (err) {
      // The socket is closing; its close event drives the reconnect and retries.
      this.#emit('error', asError(err));
    }
  }

  // ---- connection ----

  /** Emit a lifecycle event (the generic map cannot be narrowed inside the class). */
  #emit<K extends keyof ClientLifecycleEvents>(event: K, data: ClientLifecycleEvents[K]): void {
    (this.emitEvent as (event: string, data: unknown) => boolean)(event, data);
  }

  #setState(newState: ClientState): void {
    const oldState = this.#state;
    if (oldState === newState) return;
    this.#state = newState;
    this.#emit('state', { oldState, newState });
  }

  async #open(): Promise<void> {
    const generation = this.#generation;
    const first = this.#connects++ === 0;
    let token: string | undefined;
    try {
      token = (first && this.#token !== undefined) || this.#getToken === undefined ? this.#token : await this.#getToken();
    } catch (err) {
      if (generation !== this.#generation) return;
      this.#emit('error', asError(err));
      this.#disconnect(ClientCloseCode.CONNECT_FAILED, 'getToken failed', true);
      return;
    }
    if (generation !== this.#generation) return;
    let socket: WebSocketLike;
    const transport = (this.#transport = this.#chooser.current);
    if (transport === 'websocket' && this.#codec === 'msgpack' && this.#msgpackWire === undefined) {
      try {
        this.#msgpackWire = await Wire.msgpack();
      } catch (err) {
        if (generation !== this.#generation) return;
        this.#emit('error', asError(err));
        this.#disconnect(ClientCloseCode.CONNECT_FAILED, 'cannot load the MessagePack codec', false);
        return;
      }
      if (generation !== this.#generation) return;
    }
    try {
      if (transport === 'http-stream') {
        this.#activeWire = this.#jsonWire;
        socket = new HttpStreamSocket(withToken(this.#httpStreamUrl, token), this.#fetch!);
      } else {
        this.#activeWire = this.#codec === 'msgpack' ? this.#msgpackWire! : this.#jsonWire;
        const protocols = this.#activeWire.protocols;
        socket = protocols ? new this.#WebSocket!(withToken(this.#url, token), protocols) : new this.#WebSocket!(withToken(this.#url, token));
        if (protocols) socket.binaryType = 'arraybuffer';
      }
    } catch (err) {
      this.#emit('error', asError(err));
      this.#chooser.failedBeforeConnected();
      this.#disconnect(ClientCloseCode.CONNECT_FAILED, `cannot create the ${transport} connection`, true);
      return;
    }
    this.#socket = socket;
    this.#disconnectFrame = undefined;
    let refusal: Refusal | undefined;
    watchRefusal(socket, (r) => (refusal = r));
    socket.onmessage = (event: { data: unknown }) => {
      if (this.#socket === socket) this.#onData(event.data);
    };
    socket.onclose = (event: { code?: number; reason?: string }) => {
      if (this.#socket !== socket) return;
      // Server-paced admission: come back after Retry-After plus up to 1 s of jitter, on the same
      // transport (the server answered over it: pacing is no sign of a blocked WebSocket).
      const paced = refusal?.retryAfterMs !== undefined ? refusal.retryAfterMs + Math.floor(this.#random() * 1000) : undefined;
      if (!this.#ready && paced === undefined) this.#chooser.failedBeforeConnected();
      const code = event.code ?? 1006;
      const frame = this.#disconnectFrame;
      const reconnect = shouldReconnect(code) && frame?.reconnect !== false;
      this.#disconnect(code, event.reason || frame?.reason || '', reconnect, frame?.retryAfterMs ?? paced);
    };
    socket.onerror = (event: { error?: unknown; message?: string }) => {
      if (this.#socket !== socket) return;
      const refused = refusal ? new Error(`Unexpected server response: ${refusal.status}${refusal.detail ? ` ${refusal.detail}` : ''}`) : undefined;
      this.#emit('error', asError(refused ?? event?.error ?? new Error(event?.message ?? 'WebSocket error')));
    };
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = undefined;
      this.#chooser.failedBeforeConnected();
      this.#disconnect(ClientCloseCode.CONNECT_TIMEOUT, `no connected frame within ${this.#timeoutMs} ms`, true);
    }, this.#timeoutMs);
  }

  /**
   * The one teardown path: stop timers, close the socket, settle requests, tell the
   * subscriptions, then reconnect (after backoff or the server's retryAfterMs) or stop.
   */
  #disconnect(code: number, reason: string, reconnect: boolean, retryAfterMs?: number): void {
    if (this.#state === ClientState.DISCONNECTED) return;
    this.#generation++;
    const socket = this.#socket;
    this.#socket = undefined;
    this.#ready = false;
    this.#clearTimers();
    if (socket !== undefined) {
      socket.onmessage = noop;
      socket.onclose = noop;
      socket.onerror = noop; // keep a listener: `ws` throws an unhandled 'error' otherwise
      socket.onopen = noop;
      try {
        socket.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000);
      } catch {
        // already closed
      }
    }
    this.#requests.connectionLost();
    for (const subscription of this.#subscriptions.values()) subscription._connectionLost();
    if (!reconnect) {
      this.#requests.rejectAll(disconnectedError(`disconnected: ${reason || code}`));
      this.#setState(ClientState.DISCONNECTED);
      this.#emit('disconnected', { code, reason, reconnect: false });
      return;
    }
    const generation = this.#generation;
    this.#setState(ClientState.CONNECTING);
    this.#emit('disconnected', { code, reason, reconnect: true });
    if (generation !== this.#generation || this.#state !== ClientState.CONNECTING) return; // a listener acted
    const attempt = this.#backoff.attempt;
    const delayMs = retryAfterMs !== undefined && retryAfterMs >= 0 ? retryAfterMs : this.#backoff.next();
    this.#emit('connecting', { attempt, delayMs });
    if (generation !== this.#generation || this.#state !== ClientState.CONNECTING) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#open();
    }, delayMs);
  }

  #clearTimers(): void {
    for (const timer of [this.#connectTimer, this.#reconnectTimer, this.#pingTimer, this.#refreshTimer, this.#transportTimer]) {
      if (timer !== undefined) clearTimeout(timer);
    }
    this.#connectTimer = this.#reconnectTimer = this.#pingTimer = this.#refreshTimer = this.#transportTimer = undefined;
  }

  #onData(data: unknown): void {
    this.#lastFrameAt = this.#now();
    const socket = this.#socket;
    for (const frame of this.#activeWire.decode(data)) {
      if (this.#socket !== socket) return; // a handler closed the connection
      if (frame instanceof ChorusError) {
        this.#emit('error', new ChorusClientError(frame.code, frame.message));
        continue;
      }
      this.#onFrame(frame);
    }
  }

  #onFrame(frame: Frame): void {
    const data = frame.data as never;
    switch (frame.event) {
      case 'connected':
        this.#onConnected(data);
        return;
      case 'ack':
      case 'error':
        if (frame.id !== undefined) {
          this.#requests.reply(frame.id, frame.event === 'ack', frame.data);
        } else if (frame.event === 'error') {
          const { code, message, ...details } = (frame.data ?? {}) as Record<string, unknown>;
          this.#emit(
            'error',
            new ChorusClientError(String(code ?? ErrorCode.INTERNAL), String(message ?? 'error'), details),
          );
        }
        return;
      case 'message': {
        const message = data as MessageData;
        const subscription = this.#subscriptions.get(message?.channel);
        if (subscription !== undefined) subscription._message(message);
        else this.#emit('message', message);
        return;
      }
      case 'skipped': {
        const skipped = data as SkippedData;
        this.#subscriptions.get(skipped?.channel)?._skipped(skipped);
        return;
      }
      case 'join':
      case 'leave': {
        const presence = data as PresenceEventData;
        const subscription = this.#subscriptions.get(presence?.channel);
        if (subscription !== undefined) subscription._presence(frame.event, presence);
        else this.#emit(frame.event, presence);
        return;
      }
      case 'subscribed':
        this.#serverSubscribed(data);
        this.#emit('subscribed', data);
        return;
      case 'unsubscribed': {
        const info = data as UnsubscribedData;
        this.#subscriptions.get(info?.channel)?._serverUnsubscribed(info.reason ?? 'server');
        this.#emit('unsubscribed', { channel: info?.channel, reason: info?.reason ?? 'server' });
        return;
      }
      case 'disconnect':
        this.#disconnectFrame = data;
        return;
      case 'ping':
      case 'pong':
        return;
      default:
        if (RESERVED_EVENTS.has(frame.event) || frame.event in LIFECYCLE_EVENTS) {
          this.#emit('error', new ChorusClientError(ErrorCode.UNKNOWN_EVENT, `unexpected "${frame.event}" frame`));
          return;
        }
        (this.emitEvent as (event: string, data: unknown) => boolean)(frame.event, frame.data ?? null);
    }
  }

  #onConnected(data: ConnectedData): void {
    if (this.#state !== ClientState.CONNECTING || this.#ready) return;
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#backoff.reset();
    this.#connectedData = data;
    this.#ready = true;
    this.#chooser.connected();
    if (this.#chooser.onFallback) {
      this.#transportTimer = setTimeout(() => {
        this.#transportTimer = undefined;
        this.#chooser.retryFirst();
        this.#disconnect(ClientCloseCode.RETRY_WEBSOCKET, 'trying the WebSocket again', true);
      }, this.#chooser.websocketRetryMs);
    }
    this.#startPingWatch(data);
    this.#scheduleRefresh(data.expiresAt);
    const generation = this.#generation;
    // Server-side subscriptions: renewed ones, and the ones of the last connection that were not.
    const announced = new Set<string>();
    for (const result of data.subscriptions ?? []) {
      announced.add(result.channel);
      this.#serverSubscribed(result);
      if (generation !== this.#generation) return;
    }
    for (const subscription of [...this.#subscriptions.values()]) {
      if (generation !== this.#generation) return;
      if (subscription.serverSide && !announced.has(subscription.channel)) {
        subscription._serverUnsubscribed('not renewed after reconnect');
      } else if (!subscription.serverSide) {
        subscription._connected();
      }
    }
    for (const request of this.#requests.takeReady()) {
      this.#requests.sent(request);
      this.#send(request.frame);
    }
    this.#setState(ClientState.CONNECTED);
    if (generation === this.#generation) this.#emit('connected', data);
  }

  #serverSubscribed(result: SubscribeResult): void {
    if (typeof result?.channel !== 'string') return;
    let subscription = this.#subscriptions.get(result.channel);
    if (subscription === undefined) {
      subscription = new Subscription(this.#host, result.channel);
      this.#subscriptions.set(result.channel, subscription);
    }
    subscription._serverSubscribed(result);
  }

  /** Dead-server detection: no frame for pingIntervalMs + pingTimeoutMs / 3 drops the socket. */
  #startPingWatch(data: ConnectedData): void {
    const limit = (data.pingIntervalMs ?? 0) + (data.pingTimeoutMs ?? 0) / 3;
    if (!(limit > 0)) return;
    const check = (): void => {
      const idle = this.#now() - this.#lastFrameAt;
      if (idle >= limit) {
        this.#pingTimer = undefined;
        this.#disconnect(ClientCloseCode.NO_PING, `no frame for ${limit} ms`, true);
        return;
      }
      this.#pingTimer = setTimeout(check, Math.max(1, limit - idle));
    };
    this.#pingTimer = setTimeout(check, limit);
  }

  /** Refresh at 80% of the remaining lifetime or 30 s before expiry, whichever is earlier. */
  #scheduleRefresh(expiresAt: number | undefined, delayOverride?: number): void {
    if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (expiresAt === undefined || this.#getToken === undefined) return;
    const remaining = expiresAt - this.#now();
    const delay = delayOverride ?? Math.max(0, Math.min(remaining * 0.8, remaining - 30_000));
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      void this.#refresh(expiresAt);
    }, delay);
  }

  async #refresh(expiresAt: number): Promise<void> {
    const generation = this.#generation;
    try {
      const token = await (this.#getToken as () => Promise<string>)();
      if (generation !== this.#generation) return;
      const result = (await this.#request('refresh', { token }, 'volatile')) as RefreshResult;
      if (generation !== this.#generation) return;
      this.#scheduleRefresh(result?.expiresAt);
    } catch (err) {
      if (generation !== this.#generation) return;
      this.#emit('error', asError(err));
      // Retry while there is time; if it runs out the server closes with 4001 and we reconnect.
      const remaining = expiresAt - this.#now();
      if (remaining > 1000) this.#scheduleRefresh(expiresAt, Math.min(5000, remaining / 2));
    }
  }
}

const LIFECYCLE_EVENTS: Record<keyof ClientLifecycleEvents, true> = {
  state: true,
  connecting: true,
  connected: true,
  disconnected: true,
  error: true,
  message: true,
  join: true,
  leave: true,
  subscribed: true,
  unsubscribed: true,
};

function noop(): void {}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/** The HTTP streaming URL next to a WebSocket URL: same host, http(s), path `/stream`. */
function streamUrlOf(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.protocol = parsed.protocol === 'wss:' ? 'https:' : parsed.protocol === 'ws:' ? 'http:' : parsed.protocol;
    parsed.pathname = '/stream';
    parsed.search = '';
    return parsed.toString();
  } catch {
    return url;
  }
}

function withToken(url: string, token: string | undefined): string {
  if (token === undefined) return url;
  const parsed = new URL(url);
  parsed.searchParams.set('token', token);
  return parsed.toString();
}

/** A random id prefix per client instance, so ids (publish idempotency keys) are unique per user. */
function randomPrefix(): string {
  const bytes = new Uint8Array(8);
  const crypto = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (crypto?.getRandomValues !== undefined) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new TypeError(`${name} must be a positive number, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) throw new TypeError(`${name} must be a number >= 0, got ${value}`);
  return value;
}
