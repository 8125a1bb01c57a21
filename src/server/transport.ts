/**
 * The seam under a connection: what the connection and the server need from the thing that
 * carries bytes to and from one client. WebSocket is the first implementation
 * (transports/websocket.ts); HTTP streaming and SSE implement the same interface, so nothing
 * above it (connection, frame handler, hub) knows which one a client uses.
 */

import type { Codec } from '../protocol/index.js';

/** Where a queued frame leaves its channel's stream (publications and subscribe results). */
export interface FramePosition {
  channel: string;
  offset: number;
  epoch: string;
}

/** Faults a transport detects itself, each mapped to a named disconnect by the server. */
export type TransportFault = 'message_too_big' | 'invalid_payload';

/** What a transport reports. Set once, right after the connection is made. */
export interface TransportListener {
  /** One message from the client (one or more frames in the transport's codec); `binary` for binary messages. */
  message(data: Buffer, binary: boolean): void;
  /** A sign of life below the frame level (a WebSocket pong). */
  alive(): void;
  /** An error on the transport; `fault` when it is one the transport closes for itself. */
  error(error: Error, fault?: TransportFault): void;
  /** The transport closed (once), with the code and reason seen on the wire (1006 if none). */
  close(code: number, reason: string): void;
}

export interface Transport {
  /** Short name for logs and metrics, e.g. `websocket`. */
  readonly kind: string;
  /** Whether messages can still be sent. */
  readonly isOpen: boolean;
  /** Whether reading from the client is paused (see `pause`). */
  readonly isPaused: boolean;
  /** Bytes accepted by `send` but not yet written to the network. */
  readonly bufferedAmount: number;
  /**
   * Whether the transport has its own protocol-level ping (WebSocket ping/pong). Without one,
   * liveness rests on the application `ping` frames the server sends and the client answers.
   */
  readonly canPing: boolean;
  /** The codec frames are encoded with (negotiated by the transport; JSON by default). */
  readonly codec: Codec;
  /**
   * Whether the client can send frames (WebSocket, HTTP streaming). A one-way transport (SSE)
   * is never closed for silence: its liveness is the TCP connection and the writes.
   */
  readonly bidirectional: boolean;
  /**
   * Transports that frame each message themselves (SSE: one event per frame, with an `id` from
   * the positions) take the queued frames one by one instead of a joined batch.
   */
  sendFrames?(frames: Uint8Array[], positions: Array<FramePosition | undefined>): void;
  /** Start reporting events to `listener` (called once). */
  listen(listener: TransportListener): void;
  /** Send one message: a batch of frames joined by the codec, as text unless `binary`. */
  send(message: Uint8Array, binary: boolean): void;
  /**
   * Send one text message given as a string (a JSON frame): where the transport can write a
   * string without first turning it into bytes (WebSocket). Optional.
   */
  sendText?(text: string): void;
  /** Send a protocol-level ping if the transport has one; a no-op otherwise. */
  ping(): void;
  /** Close with a code and reason (the close handshake, where the transport has one). */
  close(code: number, reason: string): void;
  /** Drop the connection at once. */
  terminate(): void;
  /** Stop reading from the client (TCP then pushes back); `resume` starts again. */
  pause(): void;
  resume(): void;
}
