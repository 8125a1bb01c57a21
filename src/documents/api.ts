import type { IncomingMessage, ServerResponse } from 'node:http';
import * as Y from 'yjs';
import { ChorusError, ErrorCode, isValidChannelName } from '../protocol/index.js';
import { docFromUpdate, documentContent, documentText, restoreInto } from './content.js';
import type { DocumentsHost } from './host.js';
import { Origin, type LiveDocument } from './live-document.js';
import type { DocumentStore } from './store.js';

/** What the documents API needs from the documents manager (`ChorusDocuments`). */
export interface DocumentsApiHost {
  readonly host: Pick<DocumentsHost, 'namespace' | 'now'>;
  readonly store: DocumentStore;
  readonly options: { readonly maxVersions: number };
  acquire(name: string): Promise<LiveDocument>;
  release(document: LiveDocument): void;
}

const PREFIX = '/api/documents/';

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** Reply with one document state in the format `?format=` asks for: `update` (default), `json` or `text` (`?field=`). */
function sendState(res: ServerResponse, update: Uint8Array, query: URLSearchParams, meta: Record<string, unknown>): void {
  const format = query.get('format') ?? 'update';
  if (format === 'update') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': update.length, 'cache-control': 'no-store' });
    res.end(Buffer.from(update));
    return;
  }
  const doc = docFromUpdate(update);
  try {
    if (format === 'json') return sendJson(res, 200, { ...meta, content: documentContent(doc) });
    if (format === 'text') {
      const text = documentText(doc, query.get('field'));
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
      return;
    }
  } finally {
    doc.destroy();
  }
  throw new ChorusError(ErrorCode.BAD_REQUEST, 'format must be update, json or text');
}

/** `/api/documents/<name>[/versions[/<id>[/restore]]]`, the name percent-encoded as one path segment. */
function parse(path: string): { name: string; rest: string[] } {
  const segments = path.slice(PREFIX.length).split('/');
  let name: string;
  try {
    name = decodeURIComponent(segments[0] ?? '');
  } catch {
    throw new ChorusError(ErrorCode.BAD_CHANNEL, 'document name in the path is not valid URL encoding');
  }
  if (!isValidChannelName(name)) throw new ChorusError(ErrorCode.BAD_CHANNEL, 'invalid document name');
  return { name, rest: segments.slice(1) };
}

/**
 * The documents HTTP API (behind the server's API key):
 * - `GET /api/documents/<name>`: the current state (`?format=update|json|text`)
 * - `GET /api/documents/<name>/versions`: `{ document, versions: [{ id, time, bytes }] }`, newest first
 * - `POST /api/documents/<name>/versions`: take a version now
 * - `GET /api/documents/<name>/versions/<id>`: one version (`?format=update|json|text`)
 * - `POST /api/documents/<name>/versions/<id>/restore`: make the document read like the version
 */
export function documentsApi(documents: DocumentsApiHost) {
  return async (req: IncomingMessage, res: ServerResponse, path: string, method: string): Promise<boolean> => {
    if (!path.startsWith(PREFIX)) return false;
    const { name, rest } = parse(path);
    if (!documents.host.namespace(name).document) throw new ChorusError(ErrorCode.NOT_FOUND, `"${name}" is not in a document namespace`);
    const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const store = documents.store;
    const route = `${method} ${rest.map((s, i) => (i === 1 ? ':id' : s)).join('/')}`;
    switch (route) {
      case 'GET ': {
        const update = await withDocument(documents, name, (doc) => Y.encodeStateAsUpdate(doc));
        sendState(res, update, query, { document: name });
        return true;
      }
      case 'GET versions':
        sendJson(res, 200, { document: name, versions: await store.versions(name) });
        return true;
      case 'POST versions': {
        const update = await withDocument(documents, name, (doc) => Y.encodeStateAsUpdate(doc));
        const version = await store.addVersion(name, update, documents.host.now(), documents.options.maxVersions);
        sendJson(res, 200, { document: name, version });
        return true;
      }
      case 'GET versions/:id': {
        const id = rest[1]!;
        const update = await store.version(name, id);
        if (!update) throw new ChorusError(ErrorCode.NOT_FOUND, `"${name}" has no version ${id}`);
        const version = (await store.versions(name)).find((v) => v.id === id);
        sendState(res, update, query, { document: name, ...version });
        return true;
      }
      case 'POST versions/:id/restore': {
        const id = rest[1]!;
        const update = await store.version(name, id);
        if (!update) throw new ChorusError(ErrorCode.NOT_FOUND, `"${name}" has no version ${id}`);
        const backup = await withDocument(documents, name, async (doc, live) => {
          const before = await store.addVersion(name, Y.encodeStateAsUpdate(doc), documents.host.now(), documents.options.maxVersions);
          const version = docFromUpdate(update);
          try {
            restoreInto(doc, version, Origin.LOCAL);
          } finally {
            version.destroy();
          }
          if (live.holder) await live.storeNow();
          return before;
        });
        sendJson(res, 200, { document: name, restored: id, backup });
        return true;
      }
    }
    throw new ChorusError(ErrorCode.NOT_FOUND, `no API route ${method} ${path}`);
  };
}

/** Run `fn` on the live document (loading it for the call if no one has it open). */
async function withDocument<T>(
  documents: DocumentsApiHost,
  name: string,
  fn: (doc: Y.Doc, live: LiveDocument) => T | Promise<T>,
): Promise<T> {
  const live = await documents.acquire(name);
  try {
    return await fn(live.doc, live);
  } finally {
    documents.release(live);
  }
}
