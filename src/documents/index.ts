export { ChorusDocuments } from './documents.js';
export { serverHost, type DocumentsHost } from './host.js';
export {
  DEFAULT_DOCUMENT_LIMITS,
  resolveDocumentsOptions,
  type DocumentsOptions,
  type DocumentLimits,
  type DocumentAccess,
  type DocumentAccessRequest,
  type DocumentLoadContext,
} from './options.js';
export { DocumentCloseCode, DocumentErrorCode, DocumentError } from './codes.js';
export { MemoryDocumentStore, type DocumentStore, type DocumentVersion, type StoredDocument, type StoreOptions } from './store.js';
export { SqliteDocumentStore } from './sqlite-store.js';
export { RedisDocumentStore, type RedisDocumentStoreOptions } from './redis-store.js';
export type { DocumentPeer, LiveDocument } from './live-document.js';
