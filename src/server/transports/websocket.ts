import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type PerMessageDeflateOptions, type WebSocket } from 'ws';
import { JSON_CODEC, chooseSubprotocol, type Codec } from '../../protocol/index.js';
import { codecForSubprotocol } from '../../protocol/msgpack.js';
import type { Transport, TransportListener } from '../transport.js';

const kListener = Symbol('chorus.listener');

/** A `ws` WebSocket that reports to a transport listener. */
type ListenedSocket = WebSocket & { [kListener]: TransportListener };

function listenerOf(socket: WebSocket): TransportListener {
  return (socket as ListenedSocket)[kListener];
}

function onSocketError(this: WebSocket, err: Error & { code?: string }): void {
  // ws closes the socket itself after protocol errors (1007 invalid UTF-8, 1009 too big, ...).
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') listenerOf(this).error(err, 'message_too_big');
  else if (err.code === 'WS_ERR_INVALID_UTF8') listenerOf(this).error(err, 'invalid_payload');
  else listenerOf(this).error(err);
}

function onSocketPong(this: WebSocket): void {
  listenerOf(this).alive();
}

function onSocketMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  listenerOf(this).message(data, isBinary);
}

function onSocketClose(this: WebSocket, code: number, reason: Buffer): void {
  listenerOf(this).close(code, reason.toString());
}

/** The `ws` WebSocket as a Chorus transport. */
export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  readonly canPing = true;
  readonly bidirectional = true;
  /** Chosen by the subprotocol the handshake answered (`chorus.v1.msgpack`); JSON otherwise. */
  readonly codec: Codec;

  /** The TCP socket while it still holds the `101` response back (see `WebSocketAcceptor.accept`). */
  private corked: Duplex | undefined;

  /**
   * @param socket an open `ws` WebSocket
   * @param corked its TCP socket if corked with the `101` response in it: released by the first
   *   write (so the response and the `connected` frame leave in one write), by `close`, or at
   *   the latest after HOLD_101_MAX_MS
   */
  constructor(readonly socket: WebSocket, corked?: Duplex) {
    this.codec = codecForSubprotocol(socket.protocol) ?? JSON_CODEC;
    if (corked) {
      this.corked = corked;
      setTimeout(releaseCorked, HOLD_101_MAX_MS, this).unref();
    }
  }

  /** Let the held `101` response (and anything written since) go out. */
  release(): void {
    const corked = this.corked;
    if (!corked) return;
    this.corked = undefined;
    corked.uncork();
  }

  get isOpen(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  get isPaused(): boolean {
    return this.socket.isPaused;
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  listen(listener: TransportListener): void {
    // Shared handlers (ws calls them with the socket as `this`) and the listener kept on the
    // socket: no closures per connection.
    const socket = this.socket as ListenedSocket;
    socket[kListener] = listener;
    socket.on('error', onSocketError);
    socket.on('pong', onSocketPong);
    socket.on('message', onSocketMessage);
    socket.on('close', onSocketClose); // ws emits 'close' once
  }

  send(message: Uint8Array, binary: boolean): void {
    this.socket.send(message, { binary });
    if (this.corked) this.release();
  }

  ping(): void {
    try {
      this.socket.ping();
    } catch {
      // The socket is already closing; its close event cleans up.
    }
    if (this.corked) this.release();
  }

  close(code: number, reason: string): void {
    try {
      this.socket.close(code, reason);
    } catch {
      this.socket.terminate();
    }
    if (this.corked) this.release();
  }

  terminate(): void {
    this.socket.terminate();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }
}

/**
 * The longest the `101` response waits for the connection's first frame (the `connected` frame),
 * in ms. On the memory engine that frame is ready within the same turn of the event loop; a
 * slower start (an engine round trip, a hook) lets the response go alone after this.
 */
export const HOLD_101_MAX_MS = 1;

function releaseCorked(transport: WebSocketTransport): void {
  transport.release();
}

/** permessage-deflate settings, resolved (documented on `CompressionOptions` in options.ts). */
export interface DeflateSettings {
  threshold: number;
  concurrency: number;
  contextTakeover: boolean;
  level: number;
  memLevel: number;
  windowBits: number;
}

/** The `ws` permessage-deflate options for our settings. */
export function deflateOptions(settings: DeflateSettings): PerMessageDeflateOptions {
  return {
    threshold: settings.threshold,
    concurrencyLimit: settings.concurrency,
    serverNoContextTakeover: !settings.contextTakeover,
    clientNoContextTakeover: !settings.contextTakeover,
    serverMaxWindowBits: settings.windowBits,
    zlibDeflateOptions: { level: settings.level, memLevel: settings.memLevel },
  };
}

/**
 * Completes WebSocket handshakes (noServer `ws`) and wraps each socket as a transport. The
 * subprotocol answered is the first one the client offers that Chorus speaks
 * (`chorus.v1.json`, `chorus.v1.msgpack`), or none (then JSON): never one it does not speak.
 */
export class WebSocketAcceptor {
  private readonly wss: WebSocketServer;

  /**
   * @param maxMessageBytes largest message accepted from a client (after decompression);
   *   larger ones close with 1009
   * @param deflate permessage-deflate settings, or undefined for none
   */
  constructor(maxMessageBytes: number, deflate?: DeflateSettings) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: maxMessageBytes,
      perMessageDeflate: deflate ? deflateOptions(deflate) : false,
      clientTracking: false,
      handleProtocols: (offered) => chooseSubprotocol(offered) ?? false,
    });
  }

  /**
   * Finish the handshake; `accepted` gets the transport (not called if `ws` refuses the socket).
   * The socket is corked first, so the `101` response waits (at most HOLD_101_MAX_MS) for the
   * `connected` frame and both leave in one write: one system call per handshake instead of
   * two. If `ws` refuses the socket it ends or destroys it, which uncorks it.
   */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, accepted: (transport: WebSocketTransport) => void): void {
    socket.cork();
    this.wss.handleUpgrade(req, socket, head, (ws) => accepted(new WebSocketTransport(ws, socket)));
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
