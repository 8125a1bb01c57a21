import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Transport, TransportListener } from '../transport.js';

/** The `ws` WebSocket as a Chorus transport. */
export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  readonly canPing = true;

  /** @param socket an open `ws` WebSocket */
  constructor(readonly socket: WebSocket) {}

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

  send(message: Buffer, binary: boolean): void {
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

/** Completes WebSocket handshakes (noServer `ws`) and wraps each socket as a transport. */
export class WebSocketAcceptor {
  private readonly wss: WebSocketServer;

  /** @param maxMessageBytes largest message accepted from a client; larger ones close with 1009 */
  constructor(maxMessageBytes: number) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: maxMessageBytes, perMessageDeflate: false, clientTracking: false });
  }

  /** Finish the handshake; `accepted` gets the transport (not called if `ws` refuses the socket). */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, accepted: (transport: WebSocketTransport) => void): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => accepted(new WebSocketTransport(ws)));
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
