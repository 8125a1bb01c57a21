/** Types shared by the client's modules. */
import type { PresenceMember, StreamPosition } from '../protocol/index.js';

/** Data of every 'state' event. */
export interface StateChange<S> {
  oldState: S;
  newState: S;
}

/** Options of `history` (docs/PROTOCOL.md section 5.4). */
export interface HistoryOptions {
  /** Publications after this position (its epoch must be the stream's). Default: all retained. */
  since?: StreamPosition;
  /** Most publications to return. Default and maximum 100 (server-side). */
  limit?: number;
  /** Newest first. Default false. */
  reverse?: boolean;
}

/** `presence` ack data. */
export interface PresenceResult {
  channel: string;
  /** One entry per user. */
  members: PresenceMember[];
}

/** `refresh` ack data. */
export interface RefreshResult {
  expiresAt?: number;
}

/**
 * The WebSocket surface the client uses: the standard browser API, which `ws` (Node) also
 * implements. Text frames must arrive as strings in `onmessage`'s `event.data`, binary ones as
 * ArrayBuffer or Uint8Array.
 */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server answered (`''` for none). */
  readonly protocol?: string;
  /** Set to `'arraybuffer'` so binary messages (MessagePack) arrive as ArrayBuffer. */
  binaryType?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  // `any` events keep both the DOM and the `ws` typings assignable.
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor: `globalThis.WebSocket` in browsers, `WebSocket` from `ws` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Binary payloads: publish a `Uint8Array` (anywhere in `data`) and receive one, with either codec. */
export type BinaryData = Uint8Array;
