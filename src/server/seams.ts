/**
 * Where parts that live beside the server (documents) plug into it, without the server knowing
 * them: the shared admission of upgrade requests, extra WebSocket endpoints by path prefix, extra
 * `/api/` routes, taps that consume broker events before the hub sees them, and protocol frames
 * beside the core ones. The server only consults these; whoever registers owns what it registers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { DOCUMENT_EVENTS } from '../protocol/index.js';
import type { BrokerEvent } from '../engines/types.js';
import type { Connection } from './connection.js';
import type { Admission } from './upgrade.js';

/** An extra WebSocket endpoint (e.g. documents' `/yjs/`): upgrades whose path starts with `prefix`. */
export interface UpgradeRoute {
  prefix: string;
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/**
 * An extra HTTP API route, tried after the API key was checked and before the 404 (the body is
 * unread); resolves true when it answered the request, false when the path is not its own.
 */
export type ApiRoute = (req: IncomingMessage, res: ServerResponse, path: string, method: string) => Promise<boolean>;

/** Sees each broker event before the hub; returning true consumes it (the hub never sees it). */
export type BrokerTap = (event: BrokerEvent) => boolean;

/**
 * Serves one protocol frame (documents' `doc.*`): gets the frame's data, returns the ack data, or
 * throws a ChorusError for the error reply. It runs in the connection's frame order, after the
 * frame rate limit, and its coded errors count as faults like any frame's.
 */
export type ProtocolFrameHandler = (data: unknown, connection: Connection) => unknown;

/** The registered seams of one server. */
export class ServerSeams {
  readonly upgrades: UpgradeRoute[] = [];
  readonly api: ApiRoute[] = [];
  readonly brokerTaps: BrokerTap[] = [];
  readonly frames = new Map<string, ProtocolFrameHandler>();

  /**
   * @param admit the admission every endpoint shares (`Gate.admit`: the request's own `check`,
   *   Origin, token with timeout, per-user cap, `onUpgrade` hooks). An `Admitted` result holds a
   *   per-user slot: the caller calls its `release()` exactly once when the connection ends.
   */
  constructor(readonly admit: (req: IncomingMessage, check?: (req: IncomingMessage) => string | undefined) => Promise<Admission>) {}

  /** The endpoint an upgrade path belongs to, if any. */
  upgradeFor(path: string): UpgradeRoute | undefined {
    return this.upgrades.find((route) => path.startsWith(route.prefix));
  }

  /** Offer a broker event to the taps; true when one consumed it. */
  tap(event: BrokerEvent): boolean {
    for (const tap of this.brokerTaps) if (tap(event)) return true;
    return false;
  }

  /**
   * Serve a protocol frame. Only the document events (`DOCUMENT_EVENTS`) may be served this way,
   * once each; they are reserved, so an application handler (`server.on`) can never take them.
   */
  addFrame(event: string, handler: ProtocolFrameHandler): void {
    if (!DOCUMENT_EVENTS.has(event)) throw new TypeError(`"${event}" is not a protocol frame a server part may serve`);
    if (this.frames.has(event)) throw new TypeError(`"${event}" is served already (one documents instance per server)`);
    this.frames.set(event, handler);
  }
}
