export { ChorusClient, ClientState, ClientCloseCode } from './client.js';
// Documents live in ./document.js (chorus/client/document): it imports Yjs, this entry does not.
export type { ClientDocument, DocumentEvents, DocumentHost } from './document.js';
export type {
  ChorusClientOptions,
  DocumentConstructor,
  ClientEventMap,
  ClientEventsShape,
  ClientLifecycleEvents,
  ConnectingData,
  DisconnectedData,
} from './client.js';
export { Subscription, SubscriptionState } from './subscription.js';
export type {
  RecoveryFailedData,
  SubscribeOptions,
  SubscriptionEvents,
  TypingPayload,
  UnsubscribedData,
} from './subscription.js';
export { ChorusClientError } from './errors.js';
export { HttpStreamSocket, MAX_POST_BYTES } from './http-stream.js';
export type { FetchLike } from './http-stream.js';
export { TransportChooser, TRANSPORT_NAMES } from './transports.js';
export type { TransportName } from './transports.js';
export { Emitter } from './emitter.js';
export type { Listener } from './emitter.js';
export { Backoff, backoffDelay } from './backoff.js';
export { PositionTracker, classifyMessage, HISTORY_PAGE_LIMIT } from './position.js';
export type { MessageDecision, Step } from './position.js';
export { OfflineQueue } from './offline-queue.js';
export type { OfflineQueueOptions } from './offline-queue.js';
export type {
  BinaryData,
  HistoryOptions,
  PresenceResult,
  RefreshResult,
  StateChange,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
export type {
  ConnectedData,
  MessageData,
  PresenceEventData,
  PresenceMember,
  PublishResult,
  StreamPosition,
  SubscribeResult,
  HistoryResult,
} from '../protocol/index.js';
