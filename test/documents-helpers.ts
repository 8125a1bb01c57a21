import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { ChorusDocuments, type DocumentsOptions } from '../src/documents/index.js';
import type { ServerOptions } from '../src/server/index.js';
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
