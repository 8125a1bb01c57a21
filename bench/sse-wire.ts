import net from 'node:net';
import type { Counters } from './wire.js';

const SHARED_READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
/** Every publication event starts with this (docs/PROTOCOL.md section 11). */
const MESSAGE_EVENT = Buffer.from('data: {"event":"message"');

/**
 * A raw SSE reader for the load generator: one GET, then the response bytes are only scanned
 * for publication events (no parsing, no copies beyond a small carry across chunks). A delivery
 * is one `data: {"event":"message"` event.
 */
export class SseWireClient {
  private socket: net.Socket | undefined;
  private carry: Buffer | undefined;
  private open = false;

  constructor(
    private readonly port: number,
    private readonly path: string,
    private readonly counters: Counters,
  ) {}

  /** Resolves once the response headers have arrived. */
  start(timeoutMs = 10000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('SSE open timeout')), timeoutMs);
      let head = '';
      const socket = net.connect({
        host: '127.0.0.1',
        port: this.port,
        noDelay: true,
        onread: {
          buffer: SHARED_READ_BUFFER,
          callback: (n: number, buf: Uint8Array) => {
            const chunk = (buf as Buffer).subarray(0, n);
            if (!this.open) {
              head += chunk.toString('latin1');
              const end = head.indexOf('\r\n\r\n');
              if (end === -1) return true;
              if (!head.startsWith('HTTP/1.1 200')) {
                clearTimeout(timer);
                reject(new Error(head.split('\r\n')[0]));
                return true;
              }
              this.open = true;
              clearTimeout(timer);
              resolve();
              return true;
            }
            this.scan(chunk);
            this.counters.onChunk?.();
            return true;
          },
        },
      });
      this.socket = socket;
      socket.on('error', (err) => reject(err));
      socket.on('close', () => {
        if (this.open) this.counters.closed++;
      });
      socket.on('connect', () => socket.write(`GET ${this.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`));
    });
  }

  private scan(chunk: Buffer): void {
    const counters = this.counters;
    counters.messages++;
    counters.bytes += chunk.length;
    if (this.carry) {
      const joined = Buffer.concat([this.carry, chunk.subarray(0, MESSAGE_EVENT.length - 1)]);
      if (joined.indexOf(MESSAGE_EVENT) !== -1) counters.deliveries++;
    }
    let i = chunk.indexOf(MESSAGE_EVENT);
    while (i !== -1) {
      counters.deliveries++;
      i = chunk.indexOf(MESSAGE_EVENT, i + MESSAGE_EVENT.length);
    }
    this.carry = Buffer.from(chunk.subarray(Math.max(0, chunk.length - MESSAGE_EVENT.length + 1)));
  }

  destroy(): void {
    this.socket?.destroy();
  }
}
