import * as Y from 'yjs';
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import type { Identity } from '../server/options.js';
import { DocumentCloseCode, DocumentError } from './codes.js';
import type { DocumentPeer, LiveDocument } from './live-document.js';
import { decodeMessage, encodeAwareness, encodePermissionDenied, encodeStep1, encodeStep2, isEmptyUpdate } from './messages.js';
import type { DocumentLimits } from './options.js';

/** What a `/yjs/` connection needs from the documents manager. */
export interface YjsConnectionHost {
  readonly limits: DocumentLimits;
  readonly logger: Logger;
  now(): number;
  /** The connection hit a limit (counted and logged). */
  refused(reason: string, connection: YjsConnection, details?: Record<string, unknown>): void;
  /** The socket closed: detach from the document and release the per-user slot. */
  closed(connection: YjsConnection): void;
}

/** Messages that may arrive while the document loads; more close the socket with 4529. */
const MAX_EARLY_MESSAGES = 64;

/** One y-websocket connection to one document. */
export class YjsConnection implements DocumentPeer {
  readonly user: string;
  document: LiveDocument | undefined;
  lastSeen: number;
  lastPing: number;
  closing = false;
  /** When each limit was last logged for this connection (logs are rate-limited, counts are not). */
  readonly limitLoggedAt = new Map<string, number>();
  private tokens: number;
  private refilledAt: number;
  private early: Buffer[] | undefined = [];
  private deniedAt = -Infinity;

  constructor(
    readonly ws: WebSocket,
    readonly identity: Identity,
    readonly id: string,
    readonly name: string,
    readonly access: 'write' | 'read',
    private readonly host: YjsConnectionHost,
  ) {
    this.user = identity.user;
    this.lastSeen = this.lastPing = this.refilledAt = host.now();
    this.tokens = host.limits.updatesBurst;
    ws.on('message', (data: Buffer) => this.onMessage(data));
    ws.on('pong', () => {
      this.lastSeen = this.host.now();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.host.refused('update_size', this, { maxUpdateBytes: host.limits.maxUpdateBytes });
      this.host.logger.debug({ client: id, err: { message: err.message, code: err.code } }, 'document socket error');
    });
    ws.once('close', () => this.host.closed(this));
  }

  /** The document is loaded: start the sync (server step 1, current awareness), then handle what arrived meanwhile. */
  attach(document: LiveDocument): void {
    this.document = document;
    document.peers.add(this);
    this.send(encodeStep1(Y.encodeStateVector(document.doc)));
    const awareness = document.awareness.encodeAll();
    if (awareness) this.send(encodeAwareness(awareness));
    const early = this.early ?? [];
    this.early = undefined;
    for (const data of early) if (!this.closing) this.handle(data);
  }

  private send(frame: Uint8Array): void {
    if (this.closing || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(frame);
  }

  sendUpdate(_update: Uint8Array, frame: () => Uint8Array): void {
    this.send(frame());
  }

  sendAwareness(_update: Uint8Array, frame: () => Uint8Array): void {
    this.send(frame());
  }

  /** Close with a code and reason; terminated if the peer does not complete the close within 1 s. */
  close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
      return;
    }
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private takeToken(): boolean {
    const now = this.host.now();
    const { updatesPerSecond, updatesBurst } = this.host.limits;
    this.tokens = Math.min(updatesBurst, this.tokens + ((now - this.refilledAt) / 1000) * updatesPerSecond);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private onMessage(data: Buffer): void {
    if (this.closing) return;
    this.lastSeen = this.host.now();
    if (!this.takeToken()) {
      this.host.refused('update_rate', this, { updatesPerSecond: this.host.limits.updatesPerSecond });
      this.close(DocumentCloseCode.RATE_LIMITED, 'update rate exceeded');
      return;
    }
    if (this.early) {
      if (this.early.length >= MAX_EARLY_MESSAGES) {
        this.host.refused('update_rate', this, { early: MAX_EARLY_MESSAGES });
        this.close(DocumentCloseCode.RATE_LIMITED, 'too many messages before the document loaded');
        return;
      }
      this.early.push(data);
      return;
    }
    this.handle(data);
  }

  private handle(data: Buffer): void {
    const document = this.document;
    if (!document) return;
    try {
      const message = decodeMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      switch (message.type) {
        case 'step1': {
          let update: Uint8Array;
          try {
            update = Y.encodeStateAsUpdate(document.doc, message.stateVector);
          } catch {
            throw new DocumentError('BAD_UPDATE', DocumentCloseCode.BAD_MESSAGE, 'not a valid state vector');
          }
          this.send(encodeStep2(update));
          return;
        }
        case 'step2':
        case 'update':
          if (isEmptyUpdate(message.update)) return;
          if (this.access !== 'write') return this.denied();
          document.applyFromPeer(message.update, this);
          return;
        case 'awareness':
          document.applyAwareness(message.update, this);
          return;
        case 'query-awareness': {
          const all = document.awareness.encodeAll();
          if (all) this.send(encodeAwareness(all));
          return;
        }
        case 'auth':
          return;
      }
    } catch (err) {
      if (!(err instanceof DocumentError)) throw err;
      this.host.refused(err.code.toLowerCase(), this, { message: err.message });
      this.close(err.closeCode, err.message);
    }
  }

  /** A read-only user's update: not applied; the y-protocols "permission denied" message, at most once per 10 s. */
  private denied(): void {
    const now = this.host.now();
    this.host.refused('read_only', this);
    if (now - this.deniedAt < 10000) return;
    this.deniedAt = now;
    this.send(encodePermissionDenied(`READ_ONLY: "${this.name}" is read-only for you; the update was not applied`));
  }
}
