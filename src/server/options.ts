import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Engine } from '../engines/types.js';
import { DEFAULT_ADMISSION, type AdmissionOptions } from './admission.js';
import { resolveCompression, type CompressionOptions, type CompressionSettings } from './compression.js';
import { DEFAULT_NAMESPACES, resolveNamespace, type NamespaceOptions, type ResolvedNamespace } from './namespace-options.js';
import { fail, positiveInt } from './option-checks.js';

export { DEFAULT_COMPRESSION, type CompressionOptions } from './compression.js';
export {
  DEFAULT_NAMESPACES,
  resolveNamespace,
  type BackpressurePolicy,
  type NamespaceOptions,
  type PublishPolicy,
  type ResolvedNamespace,
  type SubscribePolicy,
} from './namespace-options.js';

/** JWT verification settings. Exactly one key source is needed unless `authenticate` is given. */
export interface AuthOptions {
  /** HS256 shared secret (at least 32 bytes recommended). */
  secret?: string;
  /** PEM public key (SPKI) for RS256 / ES256 tokens. */
  publicKey?: string;
  /** Algorithms accepted with `publicKey`. Default: the key's own (RSA `RS256`, EC P-256 `ES256`, Ed25519 `EdDSA`, ...). */
  algorithms?: string[];
  /** JWKS URL; keys are fetched and cached by `jose`. */
  jwksUrl?: string;
  /** Required `iss` claim, if set. */
  issuer?: string;
  /** Required `aud` claim, if set. */
  audience?: string;
  /** Clock skew tolerated for `exp`/`nbf`, in seconds. Default 5. */
  clockToleranceSec?: number;
}

/** What authentication yields for one connection. */
export interface Identity {
  /** User id (the JWT `sub`). */
  user: string;
  /** Public info shown in presence and as publisher info. */
  info?: Record<string, unknown>;
  /** Expiry in ms since the Unix epoch; absent if it never expires. */
  expiresAt?: number;
  /**
   * Channels the connection is subscribed to server-side when it connects (after its personal
   * channel); they are in the `connected` frame's `subscriptions`. Namespace rules are not
   * checked (like any server-side subscribe); `onSubscribe` hooks run with `serverSide: true`.
   */
  channels?: string[];
}

/** What `authorize` is asked about. */
export interface AuthorizeRequest {
  action: 'subscribe' | 'publish' | 'history' | 'presence';
  channel: string;
  user: string;
  info: Record<string, unknown> | undefined;
  /** The connection id. */
  client: string;
}

export interface Limits {
  /** Largest WebSocket message accepted, in bytes; larger closes with 1009. Default 65536. Also caps HTTP API bodies. */
  maxMessageBytes: number;
  /** Open connections allowed per user; more get HTTP 429 at the handshake. Default 5. */
  maxConnectionsPerUser: number;
  /** Subscriptions allowed per connection. Default 512. */
  maxSubscriptionsPerConnection: number;
  /** Bytes queued but unsent per connection before it is closed with 4003 (ephemeral frames drop at half). Default 1048576. */
  maxQueuedBytes: number;
  /** Token-bucket refill rate per connection, frames per second. Default 50. */
  ratePerSecond: number;
  /** Token-bucket capacity per connection, frames. Default 100. */
  rateBurst: number;
  /** Faulty frames (bad frame, unknown event, bad data, rate limited) within `faultWindowMs` that close the connection with 1008. Default 10. */
  maxFaults: number;
  /** Window for `maxFaults`, in ms. Default 10000. */
  faultWindowMs: number;
  /** Longest time authentication of an upgrade may take before HTTP 503, in ms. Default 10000. */
  handshakeTimeoutMs: number;
  /** Largest `limit` of a history request (and its default). Default 100. */
  maxHistoryLimit: number;
  /**
   * Frames of one connection waiting to be handled (a slow hook or engine and a client that keeps
   * sending) before the server stops reading from it: TCP pushes back on a WebSocket, an HTTP
   * streaming POST is answered only once reading resumes. Default 256.
   */
  maxPendingFrames: number;
  /** Waiting frames at or below which a paused connection is read again; below `maxPendingFrames`. Default 32. */
  resumePendingFrames: number;
  /** HTTP streaming: how far past the next expected `seq` a POST may arrive (held until its turn); further is 400. Default 64. */
  maxEarlyMessages: number;
  /** HTTP streaming: messages forwarded from other nodes held while the session is paused; one more closes it with 1008. Default 256. */
  maxHeldMessages: number;
}

export interface HeartbeatOptions {
  /** How often the server pings each connection, in ms. Default 30000. */
  intervalMs: number;
  /** A connection silent for this long is closed with 4002, in ms. Default 90000. */
  timeoutMs: number;
}

export interface ShutdownOptions {
  /** How long graceful shutdown waits for clients to close before terminating them, in ms. Default 10000. */
  drainTimeoutMs: number;
  /** Clients are told to reconnect after a random delay below this, in ms. Default 5000. */
  reconnectSpreadMs: number;
}

/** Options of `new ChorusServer(options)`. Every field is optional. */
export interface ServerOptions {
  /** WebSocket endpoint path. Default `/ws`. */
  path?: string;
  /**
   * Server-Sent Events endpoint path (`GET <ssePath>?channel=...`, docs/PROTOCOL.md section 13),
   * answered by `handleRequest`/`attach`; `false` turns it off. Default `/sse`.
   */
  ssePath?: string | false;
  /**
   * HTTP streaming endpoint path: `GET <streamPath>` opens a bidirectional session,
   * `POST <streamPath>/<session>?seq=<n>` sends (docs/PROTOCOL.md section 15); `false` turns it
   * off. In a cluster every node must have a unique `nodeId`. Default `/stream`.
   */
  streamPath?: string | false;
  /** JWT verification. Ignored when `authenticate` is given. */
  auth?: AuthOptions;
  /**
   * Custom authentication: return an identity or throw to reject with 401. Replaces JWT
   * verification. `req` is the upgrade request; it is absent when a connected client sends
   * `refresh` with a new token.
   */
  authenticate?: (token: string | undefined, req?: IncomingMessage) => Promise<Identity> | Identity;
  /**
   * Extra per-channel check run after the namespace rules (which must pass too). Return false,
   * or throw, to deny with PERMISSION_DENIED (a thrown ChorusError keeps its own code).
   */
  authorize?: (request: AuthorizeRequest) => boolean | Promise<boolean>;
  /**
   * Allowed browser origins (exact `scheme://host[:port]`, or `*`). Default: only the server's
   * own origin; requests without an Origin header are always allowed.
   */
  allowedOrigins?: string[];
  /** Bearer key for the HTTP API. Without it the API answers 401. */
  apiKey?: string;
  /**
   * permessage-deflate for WebSocket clients that offer it: `true` for the defaults of
   * `CompressionOptions`, or the options. Default `false` (off). Config key `compression`,
   * env `CHORUS_COMPRESSION=on`.
   */
  compression?: boolean | CompressionOptions;
  /** Channel namespaces, first match wins. Default `DEFAULT_NAMESPACES` (`user:*` personal, `chat:*`, `doc:*` documents). */
  namespaces?: NamespaceOptions[];
  /**
   * Subscribe every connection to its personal channel `user:<sub>` on connect. Default `true`.
   * On the Redis engine it is about a fifth of a handshake's cost (a SUBSCRIBE and a position
   * read per connection, docs/PERFORMANCE.md): turn it off where nothing is sent to `user:<id>`.
   */
  personalChannel?: boolean;
  /** Limits; each field has its own default. */
  limits?: Partial<Limits>;
  heartbeat?: Partial<HeartbeatOptions>;
  shutdown?: Partial<ShutdownOptions>;
  /** Server-paced admission: over the rate, HTTP 503 with `Retry-After` (defaults and units: `AdmissionOptions`). */
  admission?: Partial<AdmissionOptions>;
  /** Window in which a retried publish with the same id is applied once, in ms. Default 120000. */
  idempotencyWindowMs?: number;
  /**
   * Lifetime of the presence and per-user connection entries a node keeps in the engine, in ms;
   * the node refreshes them every third of it, so a node that dies (SIGKILL) leaves no ghost
   * members or connection slots after at most this long. Default 60000.
   */
  presenceTtlMs?: number;
  /** Broker/history/presence engine. Default: a new in-memory engine. */
  engine?: Engine;
  /** A pino logger, or pino options' `level`. Default: pino at level `info` to stdout. */
  logger?: Logger | { level?: string };
  /** Prometheus registry to register metrics in. Default: a new registry (exposed at `/metrics`). */
  metricsRegistry?: Registry;
  /** Also export Node process metrics (CPU, memory, event-loop lag, GC) as `chorus_process_*`. Default `true`. */
  processMetrics?: boolean;
  /** Node id shown in `connected` and logs. Default: random. */
  nodeId?: string;
  /**
   * Cluster-wide answers (HTTP API `/api/channels`, `/api/disconnect`, ..., the admin console):
   * how often this node reports its figures to the engine's node directory, in ms (reports
   * expire after three intervals), and how long a cluster-wide command waits for the other
   * nodes' answers, in ms. Defaults `{ reportIntervalMs: 2000, replyTimeoutMs: 1000 }`.
   */
  cluster?: Partial<ClusterOptions>;
  /** Answer `/healthz`, `/metrics` and `/api/*` on the attached HTTP server. Default `true`. */
  http?: boolean;
  /**
   * The clock: ms since the Unix epoch. Every time the server reads (heartbeats, token expiry,
   * rate buckets, client ids) comes from it. Default `Date.now`.
   */
  clock?: () => number;
}

export interface ClusterOptions {
  reportIntervalMs: number;
  replyTimeoutMs: number;
}

export const DEFAULT_CLUSTER: ClusterOptions = { reportIntervalMs: 2000, replyTimeoutMs: 1000 };

export interface ResolvedOptions {
  path: string;
  /** undefined: no SSE endpoint. */
  ssePath: string | undefined;
  /** undefined: no HTTP streaming endpoint. */
  streamPath: string | undefined;
  auth: AuthOptions;
  authenticate: ServerOptions['authenticate'];
  authorize: ServerOptions['authorize'];
  allowedOrigins: string[] | undefined;
  apiKey: string | undefined;
  /** undefined: compression off. */
  compression: CompressionSettings | undefined;
  namespaces: ResolvedNamespace[];
  personalChannel: boolean;
  limits: Limits;
  heartbeat: HeartbeatOptions;
  shutdown: ShutdownOptions;
  admission: AdmissionOptions;
  idempotencyWindowMs: number;
  presenceTtlMs: number;
  nodeId: string;
  cluster: ClusterOptions;
  http: boolean;
  clock: () => number;
}

export const DEFAULT_LIMITS: Limits = {
  maxMessageBytes: 65536,
  maxConnectionsPerUser: 5,
  maxSubscriptionsPerConnection: 512,
  maxQueuedBytes: 1048576,
  ratePerSecond: 50,
  rateBurst: 100,
  maxFaults: 10,
  faultWindowMs: 10000,
  handshakeTimeoutMs: 10000,
  maxHistoryLimit: 100,
  maxPendingFrames: 256,
  resumePendingFrames: 32,
  maxEarlyMessages: 64,
  maxHeldMessages: 256,
};

export const DEFAULT_HEARTBEAT: HeartbeatOptions = { intervalMs: 30000, timeoutMs: 90000 };
export const DEFAULT_SHUTDOWN: ShutdownOptions = { drainTimeoutMs: 10000, reconnectSpreadMs: 5000 };

function resolveNumbers<T extends object>(
  prefix: string,
  given: Partial<T> | undefined,
  defaults: T,
  allowZero: ReadonlySet<string> = new Set(),
): T {
  const out = { ...defaults };
  if (given === undefined) return out;
  if (typeof given !== 'object' || given === null) fail(prefix, 'must be an object');
  for (const [k, v] of Object.entries(given)) {
    if (!Object.hasOwn(defaults, k)) fail(`${prefix}.${k}`, 'unknown key');
    if (v === undefined) continue;
    (out as Record<string, number>)[k] = positiveInt(`${prefix}.${k}`, v, allowZero.has(k));
  }
  return out;
}

/** Merge options over the defaults and validate them; throws a TypeError naming the bad key. */
export function resolveOptions(options: ServerOptions = {}): ResolvedOptions {
  const path = options.path ?? '/ws';
  if (typeof path !== 'string' || !path.startsWith('/')) fail('path', 'must start with "/"');
  const ssePath = options.ssePath === false ? undefined : options.ssePath ?? '/sse';
  if (ssePath !== undefined && (typeof ssePath !== 'string' || !ssePath.startsWith('/'))) fail('ssePath', 'must start with "/" (or be false)');
  if (ssePath === path) fail('ssePath', 'must differ from path');
  const streamPath = options.streamPath === false ? undefined : options.streamPath ?? '/stream';
  if (streamPath !== undefined && (typeof streamPath !== 'string' || !streamPath.startsWith('/') || streamPath.length < 2)) {
    fail('streamPath', 'must start with "/" (or be false)');
  }
  if (streamPath === path || streamPath === ssePath) fail('streamPath', 'must differ from path and ssePath');
  const auth = options.auth ?? {};
  if (auth.secret !== undefined && (typeof auth.secret !== 'string' || auth.secret.length === 0)) {
    fail('auth.secret', 'must be a non-empty string');
  }
  if (auth.jwksUrl !== undefined) {
    try {
      new URL(auth.jwksUrl);
    } catch {
      fail('auth.jwksUrl', 'must be an absolute URL');
    }
  }
  if (auth.clockToleranceSec !== undefined) positiveInt('auth.clockToleranceSec', auth.clockToleranceSec, true);
  if (!options.authenticate && !auth.secret && !auth.publicKey && !auth.jwksUrl) {
    fail('auth', 'needs one of secret, publicKey or jwksUrl (or an authenticate function)');
  }
  if (options.allowedOrigins !== undefined) {
    if (!Array.isArray(options.allowedOrigins) || options.allowedOrigins.some((o) => typeof o !== 'string')) {
      fail('allowedOrigins', 'must be an array of strings');
    }
  }
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey.length === 0)) {
    fail('apiKey', 'must be a non-empty string');
  }
  const compression = resolveCompression(options.compression);
  const namespaces = (options.namespaces ?? DEFAULT_NAMESPACES).map((ns, i) => resolveNamespace(ns, `namespaces[${i}]`));
  const limits = resolveNumbers('limits', options.limits, DEFAULT_LIMITS, new Set(['resumePendingFrames']));
  if (limits.resumePendingFrames >= limits.maxPendingFrames) fail('limits.resumePendingFrames', `must be below limits.maxPendingFrames (${limits.maxPendingFrames})`);
  const heartbeat = resolveNumbers('heartbeat', options.heartbeat, DEFAULT_HEARTBEAT);
  if (heartbeat.timeoutMs <= heartbeat.intervalMs) {
    fail('heartbeat.timeoutMs', 'must be greater than heartbeat.intervalMs');
  }
  const shutdown = resolveNumbers('shutdown', options.shutdown, DEFAULT_SHUTDOWN, new Set(['reconnectSpreadMs']));
  const admission = resolveNumbers('admission', options.admission, DEFAULT_ADMISSION, new Set(['ratePerSecond', 'maxPending']));
  const idempotencyWindowMs =
    options.idempotencyWindowMs === undefined ? 120000 : positiveInt('idempotencyWindowMs', options.idempotencyWindowMs);
  if (options.clock !== undefined && typeof options.clock !== 'function') fail('clock', 'must be a function returning ms since the Unix epoch');
  const presenceTtlMs = options.presenceTtlMs === undefined ? 60000 : positiveInt('presenceTtlMs', options.presenceTtlMs);
  return {
    path,
    ssePath,
    streamPath,
    auth,
    authenticate: options.authenticate,
    authorize: options.authorize,
    allowedOrigins: options.allowedOrigins,
    apiKey: options.apiKey,
    compression,
    namespaces,
    personalChannel: options.personalChannel ?? true,
    limits,
    heartbeat,
    shutdown,
    admission,
    idempotencyWindowMs,
    presenceTtlMs,
    nodeId: options.nodeId ?? `n_${Math.random().toString(36).slice(2, 10)}`,
    cluster: resolveNumbers('cluster', options.cluster, DEFAULT_CLUSTER),
    http: options.http ?? true,
    clock: options.clock ?? Date.now,
  };
}
