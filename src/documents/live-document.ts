import * as Y from 'yjs';
import type { Logger } from 'pino';
import type { StreamPosition } from '../protocol/index.js';
import type { Broker, Publication } from '../engines/types.js';
import type { ResolvedNamespace } from '../server/options.js';
import { AwarenessEntries } from './awareness.js';
import { DocumentCloseCode, DocumentError, DocumentErrorCode } from './codes.js';
import type { ResolvedDocumentsOptions } from './options.js';
import type { DocumentStore } from './store.js';
import { encodeAwareness as encodeAwarenessFrame, encodeUpdate as encodeUpdateFrame } from './messages.js';

/** Something attached to a document on this node: a `/yjs/` socket, or a Chorus-protocol connection. */
export interface DocumentPeer {
  readonly id: string;
  readonly user: string;
  /** A document update from someone else; `frame` is its y-websocket encoding, computed once for all peers. */
  sendUpdate(update: Uint8Array, frame: () => Uint8Array): void;
  /** An awareness change (including the peer's own, echoed: y-websocket clients rely on it to stay alive). */
  sendAwareness(update: Uint8Array, frame: () => Uint8Array): void;
}

/**
 * What the document publishes on its channel (JSON; binary as base64):
 * `u` an update (kept in history), `a` awareness (ephemeral), `q` a request for the state of
 * nodes that have the document open (ephemeral, with the asker's state vector), `s` a reply.
 */
export type DocumentMessage =
  | { t: 'u' | 's'; n: string; u: string }
  | { t: 'a'; n: string; a: string }
  | { t: 'q'; n: string; sv: string };

/** Transaction origins that are not peers. */
export const Origin = { LOAD: 'load', REMOTE: 'remote', LOCAL: 'local' } as const;

export interface DocumentContext {
  /** This process's id in messages and leases (unique per process, see ChorusDocuments.instanceId). */
  readonly nodeId: string;
  readonly broker: Broker;
  readonly store: DocumentStore;
  readonly options: ResolvedDocumentsOptions;
  readonly logger: Logger;
  now(): number;
  /** Called for every update applied from a local peer or restored (for metrics). */
  counted(kind: 'client' | 'remote'): void;
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const unb64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));

function memo(make: () => Uint8Array): () => Uint8Array {
  let value: Uint8Array | undefined;
  return () => (value ??= make());
}

/** One open document on this node: its Yjs state, awareness, local peers, and storing schedule. */
export class LiveDocument {
  readonly doc = new Y.Doc();
  readonly awareness = new AwarenessEntries();
  readonly peers = new Set<DocumentPeer>();
  /** Users of the document on this node (peers and API operations). The document unloads at 0. */
  holds = 0;
  state: 'loading' | 'live' | 'unloading' = 'loading';
  ready: Promise<void> = Promise.resolve();
  unloaded: Promise<void> = Promise.resolve();
  /** Position of the channel up to which this node has applied every update. */
  position: StreamPosition | undefined;
  /** This node holds the lease: it is the one that stores the document. */
  holder = false;
  /** First change not yet stored, and the last change, ms since the Unix epoch. */
  dirtySince: number | undefined;
  lastChange = 0;
  changesSinceStore = 0;
  changedSinceVersion = false;
  lastVersionAt = 0;
  /** Estimated encoded size, in bytes (exact after a load or store; grows by each update's size). */
  bytes = 0;
  /** Updates whose publish failed (merged), retried by the manager's timer. */
  unpublished: Uint8Array | undefined;
  private storing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly namespace: ResolvedNamespace,
    private readonly ctx: DocumentContext,
  ) {
    this.doc.on('update', (update: Uint8Array, origin: unknown) => this.onUpdate(update, origin));
  }

  private onUpdate(update: Uint8Array, origin: unknown): void {
    this.bytes += update.length;
    const frame = memo(() => encodeUpdateFrame(update));
    for (const peer of this.peers) if (peer !== origin) peer.sendUpdate(update, frame);
    if (origin === Origin.LOAD) return;
    this.markChanged();
    if (origin !== Origin.REMOTE) {
      this.ctx.counted('client');
      this.publishUpdate(update);
    }
  }

  private markChanged(): void {
    const now = this.ctx.now();
    this.dirtySince ??= now;
    this.lastChange = now;
    this.changesSinceStore++;
    this.changedSinceVersion = true;
  }

  /** Publish an update with history; a failed publish is kept and retried (`retryPublish`). */
  private publishUpdate(update: Uint8Array): void {
    const message: DocumentMessage = { t: 'u', n: this.ctx.nodeId, u: b64(update) };
    this.ctx.broker
      .publish(this.name, message, { history: { size: this.namespace.historySize, ttlMs: this.namespace.historyTtlMs } })
      .catch((err: unknown) => {
        this.ctx.logger.warn({ err: { message: (err as Error).message }, document: this.name }, 'publishing a document update failed; retrying');
        this.unpublished = this.unpublished ? Y.mergeUpdates([this.unpublished, update]) : update;
      });
  }

  retryPublish(): void {
    const pending = this.unpublished;
    if (!pending) return;
    this.unpublished = undefined;
    this.publishUpdate(pending);
  }

  /** Publish an ephemeral message (awareness, state request or reply); failures are logged only. */
  publishEphemeral(message: DocumentMessage): void {
    this.ctx.broker.publish(this.name, message, { ephemeral: true }).catch((err: unknown) => {
      this.ctx.logger.debug({ err: { message: (err as Error).message }, document: this.name }, 'ephemeral document publish failed');
    });
  }

  /**
   * Apply an update from a local peer. Throws DocumentError: DOCUMENT_TOO_LARGE when the
   * document would pass `maxDocumentBytes`, BAD_UPDATE when Yjs cannot decode it.
   */
  applyFromPeer(update: Uint8Array, peer: DocumentPeer): void {
    const max = this.ctx.options.limits.maxDocumentBytes;
    if (this.bytes + update.length > max) {
      this.bytes = Y.encodeStateAsUpdate(this.doc).length;
      if (this.bytes + update.length > max) {
        throw new DocumentError(
          DocumentErrorCode.DOCUMENT_TOO_LARGE,
          DocumentCloseCode.DOCUMENT_TOO_LARGE,
          `the document would exceed ${max} bytes`,
        );
      }
    }
    try {
      Y.applyUpdate(this.doc, update, peer);
    } catch {
      throw new DocumentError(DocumentErrorCode.BAD_UPDATE, DocumentCloseCode.BAD_MESSAGE, 'not a valid Yjs update');
    }
  }

  /** Apply an awareness update from a local peer (or throw on a malformed one), fan it out locally and to other nodes. */
  applyAwareness(update: Uint8Array, peer: DocumentPeer): void {
    let changed: Uint8Array | undefined;
    try {
      changed = this.awareness.apply(update, peer.id, this.ctx.now());
    } catch {
      throw new DocumentError(DocumentErrorCode.BAD_UPDATE, DocumentCloseCode.BAD_MESSAGE, 'not a valid awareness update');
    }
    if (changed) this.broadcastAwareness(changed, true);
  }

  broadcastAwareness(update: Uint8Array, publish: boolean): void {
    const frame = memo(() => encodeAwarenessFrame(update));
    for (const peer of this.peers) peer.sendAwareness(update, frame);
    if (publish) this.publishEphemeral({ t: 'a', n: this.ctx.nodeId, a: b64(update) });
  }

  /** A peer left: drop its awareness entries (everyone is told). */
  removePeer(peer: DocumentPeer): void {
    if (!this.peers.delete(peer)) return;
    const removed = this.awareness.removeOwner(peer.id, this.ctx.now());
    if (removed) this.broadcastAwareness(removed, true);
  }

  /** Apply one publication of the document's channel (from any node, or read back from history). */
  onPublication(publication: Publication): void {
    if (publication.offset !== undefined && publication.epoch !== undefined) {
      const current = this.position;
      if (!current || current.epoch !== publication.epoch || publication.offset > current.offset) {
        this.position = { offset: publication.offset, epoch: publication.epoch };
      }
    }
    const message = publication.data as Partial<Record<string, unknown>> | null;
    if (!message || typeof message !== 'object' || message.n === this.ctx.nodeId) return;
    try {
      if ((message.t === 'u' || message.t === 's') && typeof message.u === 'string') {
        this.ctx.counted('remote');
        Y.applyUpdate(this.doc, unb64(message.u), Origin.REMOTE);
      } else if (message.t === 'a' && typeof message.a === 'string') {
        const changed = this.awareness.apply(unb64(message.a), undefined, this.ctx.now());
        if (changed) this.broadcastAwareness(changed, false);
      } else if (message.t === 'q' && typeof message.sv === 'string') {
        const diff = Y.encodeStateAsUpdate(this.doc, unb64(message.sv));
        this.publishEphemeral({ t: 's', n: this.ctx.nodeId, u: b64(diff) });
        const all = this.awareness.encodeAll();
        if (all) this.publishEphemeral({ t: 'a', n: this.ctx.nodeId, a: b64(all) });
      }
    } catch (err) {
      this.ctx.logger.warn({ err: { message: (err as Error).message }, document: this.name }, 'ignored a malformed document publication');
    }
  }

  /** Ask nodes that have the document open for what this node lacks (and their awareness). */
  requestState(): void {
    this.publishEphemeral({ t: 'q', n: this.ctx.nodeId, sv: b64(Y.encodeStateVector(this.doc)) });
  }

  /** Whether the store is due: debounce passed, max delay passed, or history could soon no longer cover the gap. */
  storeDue(now: number): boolean {
    if (!this.holder || this.dirtySince === undefined) return false;
    const { storeDebounceMs, storeMaxDelayMs } = this.ctx.options;
    return (
      now - this.lastChange >= storeDebounceMs ||
      now - this.dirtySince >= storeMaxDelayMs ||
      this.changesSinceStore >= Math.max(1, Math.floor(this.namespace.historySize / 2))
    );
  }

  /** Store now (one store at a time; a call during a store waits for it). Takes a version when one is due. */
  storeNow(): Promise<void> {
    this.storing ??= this.doStore().finally(() => {
      this.storing = undefined;
    });
    return this.storing;
  }

  private async doStore(): Promise<void> {
    if (this.dirtySince === undefined) return;
    const { dirtySince, changesSinceStore } = this;
    this.dirtySince = undefined;
    this.changesSinceStore = 0;
    const update = Y.encodeStateAsUpdate(this.doc);
    const position = this.position;
    try {
      const stored = await this.ctx.store.store(this.name, update, { owner: this.ctx.nodeId, ...(position ? { position } : {}) });
      if (!stored) {
        this.holder = false;
        this.ctx.logger.info({ document: this.name }, 'lost the document lease; another node stores it');
        return;
      }
      this.bytes = update.length;
      const now = this.ctx.now();
      if (this.changedSinceVersion && now - this.lastVersionAt >= this.ctx.options.versionIntervalMs) {
        this.changedSinceVersion = false;
        this.lastVersionAt = now;
        await this.ctx.store.addVersion(this.name, update, now, this.ctx.options.maxVersions);
      }
    } catch (err) {
      // Keep it dirty from the first unstored change: the next tick retries.
      this.dirtySince = Math.min(dirtySince, this.dirtySince ?? dirtySince);
      this.changesSinceStore += changesSinceStore;
      throw err;
    }
  }

  destroy(): void {
    this.peers.clear();
    this.doc.destroy();
  }
}

