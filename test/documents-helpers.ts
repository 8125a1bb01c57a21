import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { ChorusDocuments, type DocumentsOptions } from '../src/documents/index.js';
import type { ServerOptions } from '../src/server/index.js';
import * as encoding from 'lib0/encoding';
import { decodeMessage, encodeUpdate, type YMessage } from '../src/documents/messages.js';
import { startServer, signToken, until, type TestServer } from './helpers.js';

export interface DocServer extends TestServer {
  documents: ChorusDocuments;
  yjsUrl: string;
}

/** A test server with documents (the memory store unless `documents.store` is given). */
export async function startDocServer(options: ServerOptions = {}, documents: DocumentsOptions = {}): Promise<DocServer> {
  const server = await startServer(options);
  const docs = new ChorusDocuments(server.chorus, documents);
  return { ...server, documents: docs, yjsUrl: `ws://127.0.0.1:${server.port}/yjs` };
}

/** The official y-websocket provider in Node (`ws` as WebSocket), signed in as `user`. */
export async function provider(yjsUrl: string, name: string, user: string, doc = new Y.Doc()): Promise<WebsocketProvider> {
  const token = await signToken(user);
  const p = new WebsocketProvider(yjsUrl, name, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    params: { token },
    disableBc: true,
    maxBackoffTime: 500,
  });
  await until(`${user} synced`, () => p.synced, 10000);
  return p;
}

export function destroyAll(...providers: WebsocketProvider[]): void {
  for (const p of providers) {
    p.destroy();
    p.doc.destroy();
  }
}

/** A raw y-websocket client: sends hand-built messages, records what the server sends. */
export class RawYjsClient {
  readonly messages: YMessage[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  closeCode: number | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.messages.push(decodeMessage(new Uint8Array(data))));
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** Connect as `user`; resolves once the server's sync step 1 arrived (the document is loaded). */
  static async connect(yjsUrl: string, name: string, user: string): Promise<RawYjsClient> {
    const token = await signToken(user);
    const client = new RawYjsClient(new WebSocket(`${yjsUrl}/${name}?token=${token}`));
    await until('server step 1', () => client.messages.some((m) => m.type === 'step1'));
    return client;
  }

  send(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }
}

/** A Yjs update inserting `length` characters into text `t`. */
export function textUpdate(length: number, char = 'x'): Uint8Array {
  const doc = new Y.Doc();
  doc.getText('t').insert(0, char.repeat(length));
  const update = Y.encodeStateAsUpdate(doc);
  doc.destroy();
  return update;
}

/** The y-websocket update message for an insertion sized so the whole message is exactly `bytes` long. */
export function updateMessageOfSize(bytes: number): Uint8Array {
  // Each new Y.Doc has a random client id, whose varint length (1-5 bytes) shifts the sizes: with
  // some ids no insertion length lands exactly on `bytes` (a length prefix grows by a byte), so
  // try a few documents.
  for (let attempt = 0; attempt < 50; attempt++) {
    for (let n = Math.max(1, bytes - 40); n <= bytes; n++) {
      const message = encodeUpdate(textUpdate(n));
      if (message.length === bytes) return message;
    }
  }
  throw new Error(`no update message of exactly ${bytes} bytes`);
}

/** An awareness update for one client id. */
export function awarenessUpdate(clientId: number, clock: number, state: unknown): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, 1);
  encoding.writeVarUint(encoder, clientId);
  encoding.writeVarUint(encoder, clock);
  encoding.writeVarString(encoder, JSON.stringify(state));
  return encoding.toUint8Array(encoder);
}
