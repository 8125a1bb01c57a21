/**
 * Delivers one webhook target's events: takes up to `maxBatch` waiting events, POSTs them as
 * `{"events": [...]}` signed with the target's secret, and retries a failed batch (not 2xx,
 * timeout, connection error) with full-jitter backoff up to `maxAttempts` tries, keeping the same
 * `X-Chorus-Webhook-Id`. A batch that still fails is dropped and logged. One loop per target.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { Agents, post, PostError } from '../http-post.js';
import { WEBHOOK_BACKOFF, WEBHOOK_DEFAULTS, type WebhookOptions } from '../options.js';
import { sign, SIGNATURE_HEADER, WEBHOOK_ID_HEADER } from './signature.js';
import type { QueuedEvent, WebhookQueue } from './types.js';

/** A stable id for a target: the same on every node and across restarts. */
export function targetId(options: WebhookOptions): string {
  return createHash('sha256').update(`${options.url}\u0000${[...options.events].sort().join(',')}`).digest('hex').slice(0, 16);
}

/** Full-jitter backoff before try `attempt + 1` (attempt counts from 1), in ms. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(WEBHOOK_BACKOFF.maxMs, WEBHOOK_BACKOFF.minMs * 2 ** (attempt - 1));
  return Math.max(WEBHOOK_BACKOFF.minMs, Math.floor(random() * cap));
}

export class WebhookSender {
  private readonly url: URL;
  private readonly wanted: ReadonlySet<string>;
  private readonly timeoutMs: number;
  private readonly maxBatch: number;
  private readonly maxAttempts: number;
  private closed = false;
  private sleeping: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private readonly loop: Promise<void>;

  constructor(
    private readonly options: WebhookOptions,
    private readonly queue: WebhookQueue,
    private readonly agents: Agents,
    private readonly logger: Logger,
    private readonly deliveries: Counter<'outcome'>,
  ) {
    this.url = new URL(options.url);
    this.wanted = new Set(options.events);
    this.timeoutMs = options.timeoutMs ?? WEBHOOK_DEFAULTS.timeoutMs;
    this.maxBatch = options.maxBatch ?? WEBHOOK_DEFAULTS.maxBatch;
    this.maxAttempts = options.maxAttempts ?? WEBHOOK_DEFAULTS.maxAttempts;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      let items: QueuedEvent[];
      try {
        items = await this.queue.take(this.maxBatch);
      } catch (err) {
        if (this.closed) break; // the outbox's connection was closed under a blocking read
        this.logger.warn({ err: { message: (err as Error).message } }, 'webhook outbox read failed');
        await this.sleep(1000);
        continue;
      }
      if (items.length === 0) continue;
      const unwanted = items.filter((i) => !this.wanted.has(i.event.type));
      const batch = items.filter((i) => this.wanted.has(i.event.type));
      const finished = batch.length === 0 || (await this.deliver(batch));
      await this.queue.ack(finished ? [...unwanted, ...batch] : unwanted).catch((err: unknown) =>
        this.logger.warn({ err: { message: (err as Error).message } }, 'webhook outbox ack failed; the batch may be sent again'),
      );
    }
  }

  /** Send one batch until it is accepted or the tries run out (true), or the sender closes (false). */
  private async deliver(batch: QueuedEvent[]): Promise<boolean> {
    const body = JSON.stringify({ events: batch.map((i) => i.event) });
    const headers = { [WEBHOOK_ID_HEADER]: randomUUID(), [SIGNATURE_HEADER]: sign(this.options.secret, body) };
    for (let attempt = 1; ; attempt++) {
      let problem: string;
      try {
        const res = await post(this.url, body, headers, this.timeoutMs, this.agents);
        if (res.status >= 200 && res.status < 300) {
          this.deliveries.inc({ outcome: 'delivered' });
          return true;
        }
        problem = `HTTP status ${res.status}`;
      } catch (err) {
        problem = err instanceof PostError ? err.message : 'request failed';
      }
      this.deliveries.inc({ outcome: 'failed' });
      if (attempt >= this.maxAttempts) {
        this.deliveries.inc({ outcome: 'dropped' });
        this.logger.error({ webhook: this.url.origin + this.url.pathname, attempts: attempt, events: batch.length, problem }, 'webhook batch dropped after its last try');
        return true;
      }
      this.logger.warn({ webhook: this.url.origin + this.url.pathname, attempt, problem }, 'webhook delivery failed; retrying');
      await this.sleep(backoffMs(attempt));
      if (this.closed) return false;
      await this.queue.keep(batch).catch(() => undefined);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve();
      }, ms);
      timer.unref();
      this.sleeping = { timer, resolve };
    });
  }

  /** Stop after the request in flight (an unfinished batch stays in the outbox). */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.close();
    if (this.sleeping) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.resolve();
    }
    await this.loop;
  }
}
