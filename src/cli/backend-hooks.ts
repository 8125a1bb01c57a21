/**
 * The standalone server's proxy and webhook extensions, built from the config file's `proxy`
 * and `webhooks` keys. With Redis configured, webhooks use the Redis outbox (once per event for
 * the cluster) over their own Redis connections; otherwise the memory outbox.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ProxyExtension } from '../proxy/extension.js';
import { WebhookExtension } from '../proxy/webhooks/extension.js';
import { MemoryOutbox } from '../proxy/webhooks/memory.js';
import { RedisOutbox, type RedisClient } from '../proxy/webhooks/redis.js';
import { Authenticator } from '../server/auth.js';
import type { RedisConfig, StandaloneConfig } from './config.js';

/** An ioredis client from the serializable settings (the same servers the engine uses). */
export function createRedisClient(config: RedisConfig): RedisClient {
  const tls: RedisOptions = config.tls ? { tls: { ...config.tls } } : {};
  if (config.cluster) return new Cluster(config.cluster, { redisOptions: tls });
  if (config.sentinels) {
    return new Redis({ sentinels: config.sentinels, name: config.name!, ...tls, ...(config.tls ? { enableTLSForSentinelMode: true, sentinelTLS: { ...config.tls } } : {}) });
  }
  return new Redis(config.url ?? 'redis://127.0.0.1:6379', tls);
}

export interface BackendHooks {
  proxy: ProxyExtension | undefined;
  webhooks: WebhookExtension | undefined;
  /** Closes the Redis connection of the webhook outbox (after the server closed). */
  close(): void;
}

export function createBackendHooks(config: StandaloneConfig, logger: Logger, registry: Registry, nodeId: string): BackendHooks {
  let proxy: ProxyExtension | undefined;
  if (config.proxy) {
    const auth = config.server.auth ?? {};
    const verifier = !config.demo && (auth.secret || auth.publicKey || auth.jwksUrl) ? new Authenticator(auth) : undefined;
    proxy = new ProxyExtension({
      ...config.proxy,
      logger: logger.child({ component: 'proxy' }),
      registry,
      ...(verifier ? { verifyToken: (token: string) => verifier.verify(token) } : {}),
    });
  }
  let webhooks: WebhookExtension | undefined;
  let redis: RedisClient | undefined;
  if (config.webhooks.length > 0) {
    const redisConfig = config.redis;
    const webhookLogger = logger.child({ component: 'webhooks' });
    const outbox = redisConfig
      ? new RedisOutbox({
          redis: (redis = createRedisClient(redisConfig)),
          connect: () => createRedisClient(redisConfig),
          node: nodeId,
          ...(redisConfig.prefix ? { prefix: redisConfig.prefix } : {}),
          ttlMs: config.server.presenceTtlMs ?? 60_000,
          logger: webhookLogger,
        })
      : new MemoryOutbox();
    webhooks = new WebhookExtension({
      webhooks: config.webhooks,
      outbox,
      logger: webhookLogger,
      registry,
      maintainEveryMs: Math.floor((config.server.presenceTtlMs ?? 60_000) / 3),
    });
  }
  return { proxy, webhooks, close: () => redis?.disconnect() };
}
