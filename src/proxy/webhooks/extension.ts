/**
 * The webhooks extension: turns presence join/leave and cluster-wide channel occupancy into
 * events in the outbox, and runs one sender per configured webhook.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Extension, LocalChannelContext, PresenceEventContext } from '../../server/index.js';
import { Agents } from '../http-post.js';
import type { WebhookOptions } from '../options.js';
import { targetId, WebhookSender } from './sender.js';
import type { Outbox } from './types.js';

export interface WebhookExtensionOptions {
  webhooks: readonly WebhookOptions[];
  outbox: Outbox;
  logger: Logger;
  /** The server's metrics registry. */
  registry?: Registry;
  /** How often this node refreshes its channels in the outbox and sweeps dead nodes', in ms. Default 20000 (a third of the presence TTL). */
  maintainEveryMs?: number;
  /** Clock, ms since the Unix epoch. Default `Date.now`. */
  now?: () => number;
}

export class WebhookExtension implements Extension {
  readonly name = 'webhooks';
  private readonly outbox: Outbox;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly agents: Agents;
  private readonly senders: WebhookSender[];
  private readonly wantsPresence: boolean;
  private readonly wantsOccupancy: boolean;
  private readonly local = new Set<string>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(options: WebhookExtensionOptions) {
    this.outbox = options.outbox;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    const events = new Set(options.webhooks.flatMap((w) => w.events));
    this.wantsPresence = events.has('presence.join') || events.has('presence.leave');
    this.wantsOccupancy = events.has('channel.occupied') || events.has('channel.vacated');
    const deliveries = new Counter({
      name: 'chorus_webhook_deliveries_total',
      help: 'Webhook requests by outcome: delivered (2xx), failed (a try that will be retried or dropped), dropped (tries ran out)',
      labelNames: ['outcome'],
      registers: options.registry ? [options.registry] : [],
    });
    this.agents = new Agents(4);
    this.senders = options.webhooks.map((w) => new WebhookSender(w, this.outbox.queue(targetId(w)), this.agents, this.logger, deliveries));
    if (this.wantsOccupancy) {
      this.timer = setInterval(() => this.track(this.outbox.maintain([...this.local], this.now())), options.maintainEveryMs ?? 20_000);
      this.timer.unref();
    }
  }

  /** Keep a promise of outbox work until it settles (so close can wait for it), logging failures. */
  private track(work: Promise<unknown>): void {
    const p = work.catch((err: unknown) => this.logger.warn({ err: { message: (err as Error).message } }, 'webhook outbox update failed'));
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  onPresence(ctx: PresenceEventContext): void {
    if (!this.wantsPresence) return;
    this.track(
      this.outbox.publish({
        id: randomUUID(),
        type: ctx.type === 'join' ? 'presence.join' : 'presence.leave',
        time: this.now(),
        channel: ctx.channel,
        user: ctx.user,
        ...(ctx.info ? { info: ctx.info } : {}),
      }),
    );
  }

  onLocalChannel(ctx: LocalChannelContext): void {
    if (!this.wantsOccupancy) return;
    if (ctx.occupied) this.local.add(ctx.channel);
    else this.local.delete(ctx.channel);
    this.track(this.outbox.localChannel(ctx.channel, ctx.occupied, this.now()));
  }

  /** Waits for outbox updates in flight (so channels this node vacated on shutdown are reported), then stops. */
  async onDestroy(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
    await Promise.all(this.senders.map((s) => s.close()));
    await this.outbox.close();
    this.agents.destroy();
  }
}
