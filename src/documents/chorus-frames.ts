import * as Y from 'yjs';
import { ChorusError, DocumentEvent, ErrorCode } from '../protocol/index.js';
import type { Connection } from '../server/connection.js';
import { DocumentError, DocumentErrorCode } from './codes.js';
import type { DocumentsHost } from './host.js';
import type { DocumentPeer, LiveDocument } from './live-document.js';
import type { DocumentAccess, DocumentLimits } from './options.js';

/** What the frames need from the documents manager. */
export interface FramesManager {
  readonly limits: DocumentLimits;
  isDocument(name: string): boolean;
  access(name: string, identity: { user: string; info?: Record<string, unknown> }, client: string): Promise<DocumentAccess>;
  acquire(name: string): Promise<LiveDocument>;
  release(document: LiveDocument): void;
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

function bytesField(data: Record<string, unknown>, key: string, optional = false): Uint8Array | undefined {
  const value = data[key];
  if (value === undefined && optional) return undefined;
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be a base64 string`);
  }
  return new Uint8Array(Buffer.from(value, 'base64'));
}

function objectData(data: unknown): Record<string, unknown> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ChorusError(ErrorCode.BAD_REQUEST, 'data must be an object');
  return data as Record<string, unknown>;
}

function documentField(data: Record<string, unknown>): string {
  if (typeof data.document !== 'string') throw new ChorusError(ErrorCode.BAD_REQUEST, 'document must be a string');
  return data.document;
}

function asChorusError(err: unknown): unknown {
  return err instanceof DocumentError ? new ChorusError(err.code, err.message) : err;
}

/** One document opened by one Chorus-protocol connection. */
class FramePeer implements DocumentPeer {
  readonly id: string;
  readonly user: string;
  constructor(
    readonly connection: Connection,
    readonly document: LiveDocument,
    readonly access: 'write' | 'read',
  ) {
    this.id = `${connection.id}/${document.name}`;
    this.user = connection.user;
  }

  sendUpdate(update: Uint8Array): void {
    this.connection.send({ event: DocumentEvent.UPDATE, data: { document: this.document.name, update: b64(update) } }, 'live');
  }

  sendAwareness(update: Uint8Array): void {
    this.connection.send({ event: DocumentEvent.AWARENESS, data: { document: this.document.name, update: b64(update) } }, 'ephemeral');
  }
}

/** Documents over the Chorus protocol: `doc.open`, `doc.update`, `doc.awareness`, `doc.close` on `/ws`. */
export class DocumentFrames {
  private readonly open = new Map<Connection, Map<string, FramePeer | Promise<FramePeer>>>();

  constructor(
    host: DocumentsHost,
    private readonly manager: FramesManager,
  ) {
    host.addFrameHandler(DocumentEvent.OPEN, (data, connection) => this.onOpen(objectData(data), connection));
    host.addFrameHandler(DocumentEvent.UPDATE, (data, connection) => this.onUpdate(objectData(data), connection));
    host.addFrameHandler(DocumentEvent.AWARENESS, (data, connection) => this.onAwareness(objectData(data), connection));
    host.addFrameHandler(DocumentEvent.CLOSE, (data, connection) => this.onClose(objectData(data), connection));
    host.onDisconnect((connection) => this.closeAll(connection));
  }

  private async onOpen(data: Record<string, unknown>, connection: Connection) {
    const name = documentField(data);
    const stateVector = bytesField(data, 'stateVector', true);
    if (!this.manager.isDocument(name)) throw new ChorusError(ErrorCode.BAD_CHANNEL, `"${name}" is not in a document namespace`);
    let documents = this.open.get(connection);
    const existing = documents?.get(name);
    let peer: FramePeer;
    if (existing) {
      peer = await existing;
    } else {
      if ((documents?.size ?? 0) >= this.manager.limits.maxDocumentsPerConnection) {
        throw new ChorusError(DocumentErrorCode.TOO_MANY_DOCUMENTS, `at most ${this.manager.limits.maxDocumentsPerConnection} open documents per connection`);
      }
      const opening = this.attach(connection, name);
      if (!documents) this.open.set(connection, (documents = new Map()));
      documents.set(name, opening);
      try {
        peer = await opening;
      } catch (err) {
        documents.delete(name);
        throw err;
      }
      if (connection.closing || documents.get(name) !== opening) {
        this.detach(peer);
        throw new ChorusError(ErrorCode.NOT_AVAILABLE, `"${name}" was closed while it opened`);
      }
      documents.set(name, peer);
    }
    const doc = peer.document.doc;
    let update: Uint8Array;
    try {
      update = Y.encodeStateAsUpdate(doc, stateVector);
    } catch {
      throw new ChorusError(DocumentErrorCode.BAD_UPDATE, 'not a valid state vector');
    }
    const awareness = peer.document.awareness.encodeAll();
    return {
      document: name,
      access: peer.access,
      update: b64(update),
      stateVector: b64(Y.encodeStateVector(doc)),
      ...(awareness ? { awareness: b64(awareness) } : {}),
    };
  }

  private async attach(connection: Connection, name: string): Promise<FramePeer> {
    const access = await this.manager.access(name, { user: connection.user, ...(connection.info ? { info: connection.info } : {}) }, connection.id);
    if (access === 'deny') throw new ChorusError(ErrorCode.PERMISSION_DENIED, `no access to "${name}"`);
    const document = await this.manager.acquire(name);
    const peer = new FramePeer(connection, document, access);
    document.peers.add(peer);
    return peer;
  }

  private peer(data: Record<string, unknown>, connection: Connection): FramePeer {
    const name = documentField(data);
    const peer = this.open.get(connection)?.get(name);
    if (!peer || peer instanceof Promise) throw new ChorusError(DocumentErrorCode.NOT_OPEN, `"${name}" is not open on this connection`);
    return peer;
  }

  private onUpdate(data: Record<string, unknown>, connection: Connection) {
    const peer = this.peer(data, connection);
    const update = bytesField(data, 'update')!;
    if (peer.access !== 'write') throw new ChorusError(DocumentErrorCode.READ_ONLY, `"${peer.document.name}" is read-only for you`);
    try {
      peer.document.applyFromPeer(update, peer);
    } catch (err) {
      throw asChorusError(err);
    }
    return {};
  }

  private onAwareness(data: Record<string, unknown>, connection: Connection) {
    const peer = this.peer(data, connection);
    try {
      peer.document.applyAwareness(bytesField(data, 'update')!, peer);
    } catch (err) {
      throw asChorusError(err);
    }
    return {};
  }

  private onClose(data: Record<string, unknown>, connection: Connection) {
    const name = documentField(data);
    const documents = this.open.get(connection);
    const peer = documents?.get(name);
    documents?.delete(name);
    if (peer && !(peer instanceof Promise)) this.detach(peer);
    return { document: name };
  }

  private detach(peer: FramePeer): void {
    peer.document.removePeer(peer);
    this.manager.release(peer.document);
  }

  private closeAll(connection: Connection): void {
    const documents = this.open.get(connection);
    this.open.delete(connection);
    const peers = [...(documents?.values() ?? [])];
    // Cleared: a `doc.open` still loading sees its entry gone and detaches itself.
    documents?.clear();
    for (const peer of peers) if (!(peer instanceof Promise)) this.detach(peer);
  }
}
