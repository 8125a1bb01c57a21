/**
 * Everything before a connection exists. `Gate.admit` is the admission every endpoint shares
 * (WebSocket today; SSE, HTTP streaming and document endpoints next): the request's own check,
 * Origin, authentication with a timeout, token expiry, the per-user connection cap and the
 * `onUpgrade` hooks, ending in an identity, a client id and the function that frees the slot.
 * `WebSocketUpgrade` is the WebSocket endpoint: admission, then the handover of the socket to a
 * WebSocket transport.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ChorusError, ErrorCode } from '../protocol/index.js';
import type { ConnectionRegistry } from '../engines/types.js';
import type { AdmissionPacer } from './admission.js';
import type { Authenticator } from './auth.js';
import { newClientId } from './client-id.js';
import { invalidUpgrade, originAllowed, rejectUpgrade } from './handshake.js';
import type { Hooks } from './hooks.js';
import { safePath } from './logger.js';
import type { Metrics } from './metrics.js';
import type { Identity } from './options.js';
import type { Transport } from './transport.js';
import type { WebSocketAcceptor } from './transports/websocket.js';

/** What admission needs from the server. */
export interface GateHost {
  /** True once the server is shutting down: nobody is admitted. */
  readonly closing: boolean;
  /** Start the engine (idempotent, and once resolved it stays so); admission waits for it. */
  start(): Promise<void>;
  now(): number;
  readonly allowedOrigins: string[] | undefined;
  readonly limits: { readonly handshakeTimeoutMs: number; readonly maxConnectionsPerUser: number };
  /** TTL of the per-user connection entries, in ms. */
  readonly presenceTtlMs: number;
  /** Clock skew tolerated on token expiry, in ms. */
  readonly clockToleranceMs: number;
  readonly authenticator: Pick<Authenticator, 'authenticateRequest'> & Partial<Pick<Authenticator, 'authenticateRequestSync'>>;
  readonly registry: ConnectionRegistry;
  readonly hooks: Pick<Hooks, 'run' | 'has'>;
  readonly metrics: Pick<Metrics, 'authFailures' | 'limitHits'>;
  readonly logger: Logger;
  /** Server-paced admission: over its rate the request is refused with 503 and `Retry-After`. */
  readonly pacer?: Pick<AdmissionPacer, 'enter' | 'leave'>;
}

/** A request that may become a connection. Call `release` if it never does (the connection's close does it otherwise). */
export interface Admitted {
  ok: true;
  identity: Identity;
  clientId: string;
  /** Free the user's connection slot (idempotent). */
  release(): void;
}

/** A refused request: answer it with this HTTP status and error body. */
export interface Refused {
  ok: false;
  status: number;
  code: string;
  message: string;
  /** Send `Retry-After` with this many seconds (server-paced admission). */
  retryAfterSec?: number;
}

export type Admission = Admitted | Refused;

function refused(status: number, code: string, message: string): Refused {
  return { ok: false, status, code, message };
}

/** Free a user's reserved connection slot; a failure is logged (the entry expires by TTL). */
function releaseSlot(host: Pick<GateHost, 'registry' | 'logger'>, user: string, clientId: string): void {
  host.registry
    .release(user, clientId)
    .catch((err) => host.logger.warn({ err: { message: (err as Error).message }, user }, 'connection registry release failed; the entry expires by TTL'));
}

/**
 * An admitted request holding the user's reserved connection slot. A small object rather than a
 * closure inside `admit`: a closure would keep admission's whole scope (its timer, the request's
 * promises) alive for as long as the connection lives. Once the request is a connection, the
 * server frees the slot with `Gate.release` and this object is dropped.
 */
class AdmittedSlot implements Admitted {
  readonly ok = true;
  private released = false;

  constructor(
    private readonly host: Pick<GateHost, 'registry' | 'logger'>,
    readonly identity: Identity,
    readonly clientId: string,
  ) {}

  /** Free the slot (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    releaseSlot(this.host, this.identity.user, this.clientId);
  }
}

/** `promise`, or a TIMEOUT ChorusError after `ms`; the timer is cleared either way. */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ChorusError(ErrorCode.TIMEOUT, 'authentication timed out')), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The admission checks shared by every endpoint. */
export class Gate {
  /** True once `host.start()` has resolved: admission no longer waits for it. */
  private started = false;

  constructor(private readonly host: GateHost) {}

  /**
   * Free the slot of an admitted request that became a connection (`user`, and its `clientId` as
   * the connection's id), exactly once, when it ends; the connection keeps no `Admitted` for it.
   */
  release(user: string, clientId: string): void {
    releaseSlot(this.host, user, clientId);
  }

  /**
   * Admit a request or say why not. `check` is the endpoint's own validation of the request
   * (e.g. a WebSocket handshake's headers), run before authentication; it returns a reason
   * for a 400, or undefined.
   */
  async admit(req: IncomingMessage, check?: (req: IncomingMessage) => string | undefined): Promise<Admission> {
    const paced = this.host.pacer?.enter();
    if (paced) return this.pacedOut(req, paced.reason, paced.retryAfterSec);
    try {
      return await this.admitNow(req, check);
    } finally {
      this.host.pacer?.leave();
    }
  }

  private pacedOut(req: IncomingMessage, limit: string, retryAfterSec: number): Refused {
    this.host.metrics.limitHits.inc({ limit });
    this.host.logger.debug({ limit, retryAfterSec, path: safePath(req.url) }, 'handshake paced');
    return { ...refused(503, ErrorCode.OVER_CAPACITY, 'over the admission rate; retry after Retry-After seconds'), retryAfterSec };
  }

  private async admitNow(req: IncomingMessage, check?: (req: IncomingMessage) => string | undefined): Promise<Admission> {
    const host = this.host;
    // Every `await` costs the handshake a turn through the microtask queue: skipped where the
    // answer is already known (engine started, a token verified synchronously, no hook).
    if (!this.started) {
      await host.start();
      this.started = true;
    }
    if (host.closing) return refused(503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
    const invalid = check?.(req);
    if (invalid) return refused(400, ErrorCode.BAD_REQUEST, invalid);
    if (!originAllowed(req, host.allowedOrigins)) return this.authFailure(req, 403, ErrorCode.ORIGIN_NOT_ALLOWED, 'origin not allowed', 'origin');
    let identity: Identity;
    try {
      identity = host.authenticator.authenticateRequestSync?.(req) ?? (await withDeadline(host.authenticator.authenticateRequest(req), host.limits.handshakeTimeoutMs));
    } catch (err) {
      const e = err instanceof ChorusError ? err : new ChorusError(ErrorCode.UNAUTHORIZED, 'authentication failed');
      if (e.code === ErrorCode.TIMEOUT) return this.authFailure(req, 503, e.code, e.message, 'timeout');
      if (e.code === ErrorCode.UNAVAILABLE) return this.authFailure(req, 503, e.code, e.message, 'unavailable');
      if (e.code === ErrorCode.PERMISSION_DENIED) return this.authFailure(req, 403, e.code, e.message, 'denied');
      return this.authFailure(req, 401, ErrorCode.UNAUTHORIZED, e.message, 'token');
    }
    if (identity.expiresAt !== undefined && identity.expiresAt + host.clockToleranceMs <= host.now()) {
      return this.authFailure(req, 401, ErrorCode.UNAUTHORIZED, 'invalid token: expired', 'token');
    }
    const clientId = newClientId(host.now());
    const user = identity.user;
    const max = host.limits.maxConnectionsPerUser;
    let reserved: boolean;
    try {
      reserved = await host.registry.reserve(user, clientId, max, host.presenceTtlMs);
    } catch (err) {
      host.logger.error({ err: { message: (err as Error).message } }, 'connection registry unavailable');
      return this.authFailure(req, 503, ErrorCode.UNAVAILABLE, 'the engine is unavailable; try again later', 'unavailable');
    }
    if (!reserved) {
      host.metrics.limitHits.inc({ limit: 'connections_per_user' });
      return this.authFailure(req, 429, ErrorCode.TOO_MANY_CONNECTIONS, `at most ${max} connections per user`, 'connection_limit');
    }
    const admitted = new AdmittedSlot(host, identity, clientId);
    if (!host.hooks.has('onUpgrade')) return admitted;
    try {
      await host.hooks.run('onUpgrade', { req, identity });
    } catch (err) {
      admitted.release();
      const e = err instanceof ChorusError ? err : new ChorusError(ErrorCode.PERMISSION_DENIED, 'connection denied');
      return this.authFailure(req, 403, e.code, e.message, 'hook');
    }
    return admitted;
  }

  private authFailure(req: IncomingMessage, status: number, code: string, message: string, reason: string): Refused {
    this.host.metrics.authFailures.inc({ reason });
    this.host.logger.info({ status, code, reason, path: safePath(req.url), ip: req.socket.remoteAddress, message }, 'handshake rejected');
    return refused(status, code, message);
  }
}

/** Called with each new transport and its admission; throwing terminates the transport. */
export type AcceptTransport = (transport: Transport, admitted: Admitted) => void;

/** The WebSocket endpoint: admission, then the socket handed to a WebSocket transport. */
export class WebSocketUpgrade {
  constructor(
    private readonly gate: Gate,
    private readonly acceptor: WebSocketAcceptor,
    private readonly host: { readonly closing: boolean; readonly logger: Logger },
    private readonly accept: AcceptTransport,
  ) {}

  private readonly onHandshakeError = (err: Error) => this.host.logger.debug({ err }, 'socket error during handshake');

  /** Handle an upgrade request (the path is not checked here). */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', this.onHandshakeError);
    this.upgrade(req, socket, head).catch((err) => {
      this.host.logger.error({ err }, 'upgrade failed');
      rejectUpgrade(socket, 500, ErrorCode.INTERNAL, 'internal error');
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const admission = await this.gate.admit(req, invalidUpgrade);
    if (!admission.ok) {
      rejectUpgrade(socket, admission.status, admission.code, admission.message, admission.retryAfterSec);
      return;
    }
    let handedOver = false;
    try {
      if (this.host.closing || socket.destroyed || !socket.writable) {
        if (!socket.destroyed) rejectUpgrade(socket, 503, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
        return;
      }
      handedOver = true;
      // ws may still refuse the socket without calling back: then the slot is released here.
      const refused = () => admission.release();
      socket.once('close', refused);
      this.acceptor.accept(req, socket, head, (transport) => {
        // The transport owns the socket now: these listeners would live as long as it does.
        socket.off('close', refused);
        socket.off('error', this.onHandshakeError);
        try {
          this.accept(transport, admission);
        } catch (err) {
          this.host.logger.error({ err }, 'connection setup failed');
          transport.terminate();
        }
      });
    } finally {
      if (!handedOver) admission.release();
    }
  }
}
