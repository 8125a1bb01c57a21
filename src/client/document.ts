import * as Y from 'yjs';
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness';
import { fromBase64, toBase64 } from 'lib0/buffer';
import { Emitter } from './emitter.js';
import { DocumentEvent } from '../protocol/index.js';
import { ChorusClientError } from './errors.js';

/** What a document needs from its client: requests on the shared connection and its events. */
export interface DocumentHost {
  /** True while connected (the `connected` frame arrived). */
  readonly ready: boolean;
  /** Send a client event with an id; resolves with the ack data, rejects with a coded error. */
  request(event: string, data: unknown): Promise<unknown>;
  /** Listen to a client event (`connected`, `disconnected`) or a server event (`doc.update`, `doc.awareness`). */
  on(event: string, listener: (data: unknown) => void): () => void;
  /** The client forgets the document (after `destroy`). */
  forget(document: ClientDocument): void;
}

export interface DocumentEvents {
  /** The document is in sync with the server (after each (re)connect). */
  synced: { document: string; access: 'write' | 'read' };
  /** The server refused the document or an update (`PERMISSION_DENIED`, `READ_ONLY`, `DOCUMENT_TOO_LARGE`, ...). */
  error: ChorusClientError;
}

interface OpenAck {
  document: string;
  access: 'write' | 'read';
  update: string;
  stateVector: string;
  awareness?: string;
}

/** Codes after which local changes will not be accepted by re-sending them. */
const FINAL_CODES = new Set(['READ_ONLY', 'DOCUMENT_TOO_LARGE', 'BAD_UPDATE', 'PERMISSION_DENIED', 'BAD_CHANNEL', 'TOO_MANY_DOCUMENTS']);

function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 0 || (update.length === 2 && update[0] === 0 && update[1] === 0);
}

/**
 * A shared Yjs document over the client's connection (`client.document(name)`): `doc` is kept
 * in sync with the server and `awareness` carries cursors and names. After every reconnect the
 * document is re-opened with its state vector; the server sends what was missed and the
 * document sends its own changes made meanwhile (offline edits merge).
 */
export class ClientDocument extends Emitter<DocumentEvents> {
  readonly doc: Y.Doc;
  readonly awareness: Awareness;
  /** Set by the server on open: `read` means local changes are not accepted. */
  access: 'write' | 'read' | undefined;
  /** True once in sync on the current connection. */
  synced = false;
  #open = false;
  #destroyed = false;
  #generation = 0;
  readonly #offs: Array<() => void>;

  constructor(
    private readonly host: DocumentHost,
    readonly name: string,
    doc: Y.Doc = new Y.Doc(),
  ) {
    super();
    this.doc = doc;
    this.awareness = new Awareness(doc);
    doc.on('update', this.#onLocalUpdate);
    this.awareness.on('update', this.#onAwareness);
    this.#offs = [
      host.on('connected', () => void this.#reopen()),
      host.on('disconnected', () => this.#onDisconnected()),
      host.on(DocumentEvent.UPDATE, (data) => {
        const d = data as { document?: unknown; update?: unknown };
        if (d?.document === name && typeof d.update === 'string') Y.applyUpdate(doc, fromBase64(d.update), this);
      }),
      host.on(DocumentEvent.AWARENESS, (data) => {
        const d = data as { document?: unknown; update?: unknown };
        if (d?.document === name && typeof d.update === 'string') applyAwarenessUpdate(this.awareness, fromBase64(d.update), this);
      }),
    ];
    if (host.ready) void this.#reopen();
  }

  async #reopen(): Promise<void> {
    const generation = ++this.#generation;
    this.#open = false;
    let ack: OpenAck;
    try {
      ack = (await this.host.request(DocumentEvent.OPEN, { document: this.name, stateVector: toBase64(Y.encodeStateVector(this.doc)) })) as OpenAck;
    } catch (err) {
      if (generation === this.#generation && !this.#destroyed) this.#failed(err);
      return;
    }
    if (generation !== this.#generation || this.#destroyed) return;
    this.access = ack.access;
    Y.applyUpdate(this.doc, fromBase64(ack.update), this);
    if (ack.awareness) applyAwarenessUpdate(this.awareness, fromBase64(ack.awareness), this);
    this.#open = true;
    if (ack.access === 'write') {
      const mine = Y.encodeStateAsUpdate(this.doc, fromBase64(ack.stateVector));
      if (!isEmptyUpdate(mine)) this.#sendUpdate(mine);
    }
    // Renew (clock + 1) so the state wins over the server's removal at our disconnect.
    const local = this.awareness.getLocalState();
    if (local !== null) this.awareness.setLocalState(local);
    this.synced = true;
    this.emitEvent('synced', { document: this.name, access: ack.access });
  }

  #failed(err: unknown): void {
    const code = (err as { code?: unknown })?.code;
    if (typeof code === 'string' && FINAL_CODES.has(code)) {
      this.emitEvent('error', err instanceof ChorusClientError ? err : new ChorusClientError(code, (err as Error).message));
    }
    // Other failures (DISCONNECTED, TIMEOUT, UNAVAILABLE): the next `connected` re-opens and re-syncs.
  }

  #onDisconnected(): void {
    this.#open = false;
    this.synced = false;
    this.#generation++;
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID);
    if (others.length > 0) removeAwarenessStates(this.awareness, others, this);
  }

  #sendUpdate(update: Uint8Array): void {
    this.host.request(DocumentEvent.UPDATE, { document: this.name, update: toBase64(update) }).catch((err: unknown) => this.#failed(err));
  }

  #onLocalUpdate = (update: Uint8Array, origin: unknown): void => {
    // Changes made while closed are sent by the next open (the server's state vector tells what it lacks).
    if (origin === this || !this.#open || this.access !== 'write') return;
    this.#sendUpdate(update);
  };

  #onAwareness = ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown): void => {
    if (origin === this || !this.#open) return;
    const mine = [...added, ...updated, ...removed].filter((id) => id === this.doc.clientID);
    if (mine.length === 0) return;
    const update = encodeAwarenessUpdate(this.awareness, mine);
    this.host.request(DocumentEvent.AWARENESS, { document: this.name, update: toBase64(update) }).catch(() => undefined);
  };

  /** Close the document on the server and stop syncing; `doc` stays usable locally. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#generation++;
    for (const off of this.#offs) off();
    this.doc.off('update', this.#onLocalUpdate);
    this.awareness.off('update', this.#onAwareness);
    this.awareness.destroy();
    if (this.host.ready) this.host.request(DocumentEvent.CLOSE, { document: this.name }).catch(() => undefined);
    this.host.forget(this);
  }
}
