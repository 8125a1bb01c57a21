import type { Logger } from 'pino';
import { ChorusError, ErrorCode, binaryToJson } from '../protocol/index.js';
import type { Broker, PublishResult, RateLimiter } from '../engines/types.js';
import { notDocument } from './channels.js';
import type { Connection } from './connection.js';
import type { Hooks, PublishSource } from './hooks.js';
import type { LimitReporter } from './limit-reporter.js';
import type { Metrics } from './metrics.js';
import type { ResolvedNamespace } from './options.js';
import type { Permissions } from './permissions.js';

/** Options of a server-side publish. */
export interface ServerPublishOptions {
  /** Do not deliver to this connection (exclude the sender). */
  exceptClient?: string;
  /** Idempotency key: a repeat within the window returns the first result. */
  idempotencyKey?: string;
  /** Not stored, no offset. */
  ephemeral?: boolean;
  /** Key of what the publication updates (1-128 characters); see the namespace option `backpressure`. */
  key?: string;
  /** Recorded as the source in metrics. Default `'server'`. */
  source?: PublishSource;
}

/** One channel's outcome in a broadcast. */
export type BroadcastResult = { channel: string } & (PublishResult | { error: { code: string; message: string } });

export interface PublisherSettings {
  broker: Broker;
  rateLimiter: RateLimiter;
  hooks: Hooks;
  permissions: Permissions;
  metrics: Metrics;
  logger: Logger;
  reporter: LimitReporter;
  /** Window in which a retried publish with the same key is applied once, in ms. */
  idempotencyWindowMs: number;
}

/**
 * The one publish pipeline, for client frames, the HTTP API and the server's `publish` /
 * `broadcast`: permission and ephemeral rate (clients only), `beforePublish` hooks,
 * `Broker.publish` (offset, history, fan-out), metrics, `afterPublish` hooks. Engine failures
 * are UNAVAILABLE (not applied) or OUTCOME_UNKNOWN (may have been applied). Message size is bounded before this, where the bytes arrive (the
 * transport's `maxMessageBytes`, the HTTP API's body limit).
 */
export class Publisher {
  constructor(private readonly settings: PublisherSettings) {}

  /** A client's `publish` frame, after its fields were read. */
  async fromClient(
    connection: Connection,
    channel: string,
    namespace: ResolvedNamespace,
    data: unknown,
    options: { ephemeral: boolean; frameId: string | undefined; key?: string | undefined },
  ): Promise<PublishResult> {
    const { permissions, rateLimiter, reporter } = this.settings;
    await permissions.checkPublish(connection, channel, namespace);
    const ephemeral = options.ephemeral;
    if (ephemeral) {
      if (!namespace.ephemeral) throw new ChorusError(ErrorCode.NOT_AVAILABLE, `ephemeral publications are off for "${channel}"`);
      const rate = await rateLimiter.consume(`eph\u0000${connection.user}\u0000${channel}`, namespace.ephemeralPerSecond, namespace.ephemeralPerSecond);
      if (!rate.ok) {
        reporter.limitHit('ephemeral', connection, { channel });
        throw new ChorusError(ErrorCode.RATE_LIMITED, 'too many ephemeral publications', { retryAfterMs: rate.retryAfterMs });
      }
    }
    return this.run(channel, namespace, data, {
      source: 'client',
      connection,
      ...(ephemeral ? { ephemeral } : {}),
      ...(options.key !== undefined ? { key: options.key } : {}),
      ...(options.frameId !== undefined && !ephemeral ? { idempotencyKey: `${connection.user}\u0000${options.frameId}` } : {}),
    });
  }

  /**
   * Publish from the server side or the HTTP API (no permission checks beyond the namespace
   * existing and not being a document namespace: documents change only through Yjs updates).
   */
  async publish(channel: string, data: unknown, options: ServerPublishOptions = {}): Promise<PublishResult> {
    const namespace = this.settings.permissions.rules.resolve(channel);
    if (options.key !== undefined) checkKey(options.key);
    notDocument(channel, namespace);
    return this.run(channel, namespace, data, { ...options, source: options.source ?? 'server' });
  }

  /** Publish the same data to many channels; one result per channel, failures included. */
  async broadcast(channels: string[], data: unknown, options: ServerPublishOptions = {}): Promise<BroadcastResult[]> {
    return Promise.all(
      channels.map(async (channel) => {
        try {
          // Idempotency keys are scoped per channel by the engine, so one key serves them all.
          return { channel, ...(await this.publish(channel, data, options)) };
        } catch (err) {
          const e = err instanceof ChorusError ? err : new ChorusError(ErrorCode.INTERNAL, 'internal error');
          return { channel, error: { code: e.code, message: e.message } };
        }
      }),
    );
  }

  private async run(
    channel: string,
    namespace: ResolvedNamespace,
    data: unknown,
    options: ServerPublishOptions & { source: PublishSource; connection?: Connection },
  ): Promise<PublishResult> {
    const { hooks, broker, metrics, logger, idempotencyWindowMs } = this.settings;
    const started = process.hrtime.bigint();
    const ephemeral = options.ephemeral === true;
    const connection = options.connection;
    const ctx = { channel, data, source: options.source, ephemeral, ...(connection ? { connection } : {}) };
    const finalData = await hooks.beforePublish(ctx);
    // Stored and fanned out in the JSON-safe form: binary as {"$bin": base64} (protocol/binary.ts).
    const storedData = binaryToJson(finalData, true);
    let result: PublishResult;
    try {
      result = await broker.publish(channel, storedData, {
        ...(namespace.historySize > 0 ? { history: { size: namespace.historySize, ttlMs: namespace.historyTtlMs } } : {}),
        ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey, idempotencyWindowMs } : {}),
        ...(connection
          ? {
              publisher: connection.info
                ? { user: connection.user, client: connection.id, info: connection.info }
                : { user: connection.user, client: connection.id },
            }
          : {}),
        ...(ephemeral ? { ephemeral: true } : {}),
        ...(options.key !== undefined ? { key: options.key } : {}),
        ...(options.exceptClient !== undefined ? { exceptClient: options.exceptClient } : {}),
      });
    } catch (err) {
      // Engine errors are coded: UNAVAILABLE (not applied) or OUTCOME_UNKNOWN (may have been
      // applied; retry with the same idempotency key). Anything else cannot say whether the
      // publication was applied, so it must not be reported as "not applied".
      if (err instanceof ChorusError) throw err;
      logger.error({ err, channel }, 'engine publish failed');
      throw new ChorusError(ErrorCode.OUTCOME_UNKNOWN, 'the engine failed during the publish; it may or may not have been applied');
    }
    metrics.publishDuration.observe({ source: options.source }, Number(process.hrtime.bigint() - started) / 1e9);
    if (!result.duplicate) {
      metrics.publications.inc({ source: options.source });
      if (hooks.has('afterPublish')) {
        void hooks.run('afterPublish', { ...ctx, data: finalData, ...result }).catch((err) => logger.warn({ err, channel }, 'afterPublish hook failed'));
      }
    }
    const { duplicate: _duplicate, ...position } = result;
    return position;
  }
}

/** A publication key is 1 to 128 characters (BAD_REQUEST otherwise). */
export function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 128) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, 'key must be a string of 1 to 128 characters');
  }
  return key;
}
