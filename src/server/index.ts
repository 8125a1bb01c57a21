export { ChorusServer, type ServerPublishOptions } from './server.js';
export { Connection } from './connection.js';
export type {
  Extension,
  UpgradeContext,
  ConnectContext,
  SubscribeContext,
  PublishContext,
  AfterPublishContext,
  DisconnectContext,
  UnhandledEventContext,
  PresenceEventContext,
  LocalChannelContext,
  PublishSource,
} from './hooks.js';
export type { HandlerContext, EventHandler, HandlerOptions } from './server.js';
export type { StandardSchemaV1 } from './schema.js';
export {
  DEFAULT_LIMITS,
  DEFAULT_HEARTBEAT,
  DEFAULT_SHUTDOWN,
  DEFAULT_NAMESPACES,
  resolveOptions,
  type ServerOptions,
  type NamespaceOptions,
  type AuthOptions,
  type AuthorizeRequest,
  type Identity,
  type Limits,
  type HeartbeatOptions,
  type ShutdownOptions,
} from './options.js';
export { DEFAULT_ADMISSION, type AdmissionOptions } from './admission.js';
export { MemoryEngine, type MemoryEngineOptions } from '../engines/memory/index.js';
export type { Engine, Broker, HistoryStore, PresenceStore, Publication } from '../engines/types.js';
export { ChorusError, ErrorCode, CloseCode, Disconnect, shouldReconnect } from '../protocol/index.js';
export type { Transport, TransportListener, TransportFault } from './transport.js';
export type { CloseOptions } from './connection.js';
