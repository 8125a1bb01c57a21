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

/**
 * Transports whose TCP socket is corked (holding a `101` response or a ping until the frame that
 * follows it), released together at the latest `ms` later: one timer for all of them.
 */
class HeldSockets {
  private readonly members = new Set<WebSocketTransport>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {}

  add(transport: WebSocketTransport): void {
    this.members.add(transport);
    if (!this.timer) {
      this.timer = setTimeout(this.releaseAll, this.ms);
      this.timer.unref();
    }
  }

  delete(transport: WebSocketTransport): void {
    this.members.delete(transport);
  }

  private readonly releaseAll = (): void => {
    this.timer = undefined;
    const members = [...this.members];
    this.members.clear();
    for (const transport of members) transport.release();
  };
}

/** The `ws` WebSocket as a Chorus transport. */
export class WebSocketTransport implements Transport {
  /** Chosen by the subprotocol the handshake answered (`chorus.v1.msgpack`); JSON otherwise. */
  readonly codec: Codec;

  /**
   * @param socket an open `ws` WebSocket
   * @param tcp its TCP socket. If it is corked (the `101` response in it, see
   *   `WebSocketAcceptor.accept`) it is held until the first write (so the response and the
   *   `connected` frame leave in one write), `close`, or at the latest HOLD_RESPONSE_MS.
   */
  constructor(
    readonly socket: WebSocket,
    private readonly tcp?: Duplex,
  ) {
    this.codec = codecForSubprotocol(socket.protocol) ?? JSON_CODEC;
    if (tcp && tcp.writableCorked > 0) heldResponses.add(this);
  }

  get kind(): 'websocket' {
    return 'websocket';
  }

  get canPing(): true {
    return true;
  }

  get bidirectional(): true {
    return true;
  }

  /** Let what the corked TCP socket holds go out (idempotent). */
  release(): void {
    const tcp = this.tcp;
    if (!tcp || tcp.writableCorked === 0) return;
    heldResponses.delete(this);
    heldPings.delete(this);
    // ws corks only within one synchronous frame write, so a cork seen here is ours.
    tcp.uncork();
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
    this.release();
  }

  /** ws writes a string to the socket as it is (no mask on the server side): no bytes made first. */
  sendText(text: string): void {
    this.socket.send(text, { binary: false });
    this.release();
  }

  /**
   * A WebSocket ping, held (corked, at most HOLD_PING_MS) for the write that follows it: the
   * heartbeat queues a `ping` frame with it, so both leave in one write instead of two.
   */
  ping(): void {
    const tcp = this.tcp;
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (tcp && tcp.writableCorked === 0 && !tcp.destroyed) {
      tcp.cork();
      heldPings.add(this);
    }
    try {
      this.socket.ping();
    } catch {
      // The socket is already closing; its close event cleans up.
      this.release();
    }
  }

  close(code: number, reason: string): void {
    try {
      this.socket.close(code, reason);
    } catch {
      this.socket.terminate();
    }
    this.release();
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
 * The longest a `101` response waits for the `connected` frame that follows it, in ms. That
 * frame is ready within the same turn of the event loop on the memory engine and after a few ms
 * of Redis round trips; a slower start (a stalled engine, a slow hook) lets the response go
 * alone after this. Holding it costs the client nothing: it cannot use the connection before
 * the `connected` frame anyway.
 */
export const HOLD_RESPONSE_MS = 20;

/**
 * The longest a WebSocket ping waits for the heartbeat's `ping` frame, queued in the same turn,
 * in ms: just long enough for the flush, so other frames are never held behind a ping.
 */
export const HOLD_PING_MS = 1;

const heldResponses = new HeldSockets(HOLD_RESPONSE_MS);
const heldPings = new HeldSockets(HOLD_PING_MS);

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
   * The socket is corked first, so the `101` response waits (at most HOLD_RESPONSE_MS) for the
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
