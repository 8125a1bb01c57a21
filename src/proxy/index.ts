/**
 * Backends in any language: proxy hooks to the application's HTTP backend and signed webhooks.
 * Both are ChorusServer extensions built on its public seams (`authenticate`, `server.use`).
 */
export { ProxyExtension, type ProxyExtensionOptions } from './extension.js';
export { ProxyCaller, parseAnswer } from './caller.js';
export { WebhookExtension, type WebhookExtensionOptions } from './webhooks/extension.js';
export { MemoryOutbox } from './webhooks/memory.js';
export { RedisOutbox, type RedisOutboxOptions } from './webhooks/redis.js';
export { sign, verifySignature, SIGNATURE_HEADER, WEBHOOK_ID_HEADER } from './webhooks/signature.js';
export type { Outbox, WebhookEvent, WebhookQueue } from './webhooks/types.js';
export {
  PROXY_DEFAULTS,
  WEBHOOK_DEFAULTS,
  WEBHOOK_EVENTS,
  type ProxyOptions,
  type ProxyEndpoint,
  type ConnectEndpoint,
  type WebhookOptions,
  type WebhookEventName,
} from './options.js';
