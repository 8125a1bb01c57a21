import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type PerMessageDeflateOptions, type WebSocket } from 'ws';
import { JSON_CODEC, chooseSubprotocol, type Codec } from '../../protocol/index.js';
import { codecForSubprotocol } from '../../protocol/msgpack.js';
import type { Transport, TransportListener } from '../transport.js';

/** The `ws` WebSocket as a Chorus transport. */
export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  readonly canPing = true;
  readonly bidirectional = true;
  /** Chosen by the subprotocol the handshake answered (`chorus.v1.msgpack`); JSON otherwise. */
  readonly codec: Codec;

  /** @param socket an open `ws` WebSocket */
  constructor(readonly socket: WebSocket) {
    this.codec = codecForSubprotocol(socket.protocol) ?? JSON_CODEC;
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
    const socket = this.socket;
    socket.on('error', (err: Error & { code?: string }) => {
      // ws closes the socket itself after protocol errors (1007 invalid UTF-8, 1009 too big, ...).
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') listener.error(err, 'message_too_big');
      else if (err.code === 'WS_ERR_INVALID_UTF8') listener.error(err, 'invalid_payload');
      else listener.error(err);
    });
    socket.on('pong', () => listener.alive());
    socket.on('message', (data: Buffer, isBinary: boolean) => listener.message(data, isBinary));
    socket.once('close', (code: number, reason: Buffer) => listener.close(code, reason.toString()));
  }

  send(message: Uint8Array, binary: boolean): void {
    this.socket.send(message, { binary });
  }

  ping(): void {
    try {
      this.socket.ping();
    } catch {
      // The socket is already closing; its close event cleans up.
    }
  }

  close(code: number, reason: string): void {
    try {
      this.socket.close(code, reason);
    } catch {
      this.socket.terminate();
    }
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

  /** Finish the handshake; `accepted` gets the transport (not called if `ws` refuses the socket). */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, accepted: (transport: WebSocketTransport) => void): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => accepted(new WebSocketTransport(ws)));
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
