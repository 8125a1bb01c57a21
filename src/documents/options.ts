import type * as Y from 'yjs';
import type { DocumentStore } from './store.js';

/** What a user may do with a document: edit it, only receive it (sync + awareness), or nothing. */
export type DocumentAccess = 'write' | 'read' | 'deny';

export interface DocumentAccessRequest {
  document: string;
  user: string;
  info: Record<string, unknown> | undefined;
  /** The decision of the namespace rules and the server's `authorize` option. */
  access: DocumentAccess;
}

export interface DocumentLimits {
  /** Largest message on `/yjs/` (and largest update), in bytes; larger closes with 1009. Default 1048576 (1 MiB). */
  maxUpdateBytes: number;
  /** Largest document (its encoded state), in bytes; an update past it closes with 4413. Default 5242880 (5 MiB). */
  maxDocumentBytes: number;
  /** Messages (updates and awareness) per connection per second, token-bucket refill. Default 50. */
  updatesPerSecond: number;
  /** Token-bucket capacity, messages; an empty bucket closes with 4529. Default 100. */
  updatesBurst: number;
  /** Documents one Chorus-protocol connection may have open (`doc.open`); more: `TOO_MANY_DOCUMENTS`. Default 16. */
  maxDocumentsPerConnection: number;
}

/** What `onLoad` is given. */
export interface DocumentLoadContext {
  document: string;
  /** The loaded state: stored snapshot plus the updates after it. Changes made here are stored and sent to everyone. */
  doc: Y.Doc;
  /** Nothing was stored and the channel has no updates: a new document. */
  empty: boolean;
  /** This node holds the document's lease (the one node that stores it). Seed new documents only when true. */
  holder: boolean;
}

export interface DocumentsOptions {
  /** Where documents are persisted. Default: a new `MemoryDocumentStore` (lost on exit). */
  store?: DocumentStore;
  /** Path prefix of the y-websocket endpoint; a document's URL is `<prefix>/<name>`. Default `/yjs`. */
  path?: string;
  limits?: Partial<DocumentLimits>;
  /** Store this long after the last change, in ms. Default 2000. */
  storeDebounceMs?: number;
  /** Store at the latest this long after the first unstored change, however busy the document, in ms. Default 10000. */
  storeMaxDelayMs?: number;
  /** Take a version at most this often while a document is being edited, in ms. Default 300000 (5 min). */
  versionIntervalMs?: number;
  /** Versions kept per document (oldest dropped first). Default 100. */
  maxVersions?: number;
  /** Awareness entries not renewed for this long are removed, in ms. Default 30000. */
  awarenessTimeoutMs?: number;
  /** Lease that makes one node the one storing a document, in ms; renewed every third. Default 10000. */
  leaseTtlMs?: number;
  /**
   * Decide a user's access to a document after the namespace rules (`subscribe: 'none'` denies,
   * `publish: 'none'` makes it read-only, personal namespaces admit only their owner) and the
   * server's `authorize` option (`subscribe` to read, `publish` to write). Throw or return
   * `'deny'` to refuse. Default: keep the rules' decision.
   */
  access?: (request: DocumentAccessRequest) => DocumentAccess | Promise<DocumentAccess>;
  /**
   * Called once per load on this node, after the stored state and channel history were applied
   * and before any client is synced: e.g. seed a new document (`empty && holder`) from the
   * application's database. A throw fails the load (clients are closed with 4503 and retry).
   */
  onLoad?: (context: DocumentLoadContext) => void | Promise<void>;
}

export interface ResolvedDocumentsOptions extends Required<Omit<DocumentsOptions, 'store' | 'access' | 'limits' | 'onLoad'>> {
  limits: DocumentLimits;
  access: DocumentsOptions['access'];
  onLoad: DocumentsOptions['onLoad'];
}

export const DEFAULT_DOCUMENT_LIMITS: DocumentLimits = {
  maxUpdateBytes: 1048576,
  maxDocumentBytes: 5242880,
  updatesPerSecond: 50,
  updatesBurst: 100,
  maxDocumentsPerConnection: 16,
};

function positive(key: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`invalid option documents.${key}: must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Merge over the defaults; throws a TypeError naming the bad key. */
export function resolveDocumentsOptions(options: DocumentsOptions): ResolvedDocumentsOptions {
  const path = options.path ?? '/yjs';
  if (typeof path !== 'string' || !path.startsWith('/') || path.endsWith('/')) {
    throw new TypeError('invalid option documents.path: must start with "/" and not end with "/"');
  }
  const given = options.limits ?? {};
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(DEFAULT_DOCUMENT_LIMITS, key)) throw new TypeError(`invalid option documents.limits.${key}: unknown key`);
  }
  const limits: DocumentLimits = {
    maxUpdateBytes: positive('limits.maxUpdateBytes', given.maxUpdateBytes, DEFAULT_DOCUMENT_LIMITS.maxUpdateBytes),
    maxDocumentBytes: positive('limits.maxDocumentBytes', given.maxDocumentBytes, DEFAULT_DOCUMENT_LIMITS.maxDocumentBytes),
    updatesPerSecond: positive('limits.updatesPerSecond', given.updatesPerSecond, DEFAULT_DOCUMENT_LIMITS.updatesPerSecond),
    updatesBurst: positive('limits.updatesBurst', given.updatesBurst, DEFAULT_DOCUMENT_LIMITS.updatesBurst),
    maxDocumentsPerConnection: positive(
      'limits.maxDocumentsPerConnection',
      given.maxDocumentsPerConnection,
      DEFAULT_DOCUMENT_LIMITS.maxDocumentsPerConnection,
    ),
  };
  const storeDebounceMs = positive('storeDebounceMs', options.storeDebounceMs, 2000);
  const storeMaxDelayMs = positive('storeMaxDelayMs', options.storeMaxDelayMs, 10000);
  if (storeMaxDelayMs < storeDebounceMs) throw new TypeError('invalid option documents.storeMaxDelayMs: must be at least storeDebounceMs');
  return {
    path,
    limits,
    storeDebounceMs,
    storeMaxDelayMs,
    versionIntervalMs: positive('versionIntervalMs', options.versionIntervalMs, 300000),
    maxVersions: positive('maxVersions', options.maxVersions, 100),
    awarenessTimeoutMs: positive('awarenessTimeoutMs', options.awarenessTimeoutMs, 30000),
    leaseTtlMs: positive('leaseTtlMs', options.leaseTtlMs, 10000),
    access: options.access,
    onLoad: options.onLoad,
  };
}
