import { ChorusError, ErrorCode } from '../../protocol/index.js';
import type { Clock } from '../clock.js';
import { Deadline } from '../deadline.js';
import type { PublishResult } from '../types.js';
import type { Client } from './clients.js';

/**
 * How a failed Redis command failed, for a command that writes (a publish):
 * - `not-sent`: it never left this node (no connection: ioredis rejects at once without an
 *   offline queue) — definitely not applied;
 * - `refused`: Redis answered with an error (e.g. READONLY, BUSY, LOADING, OOM before any write)
 *   — the script did not run;
 * - `unknown`: it was sent but its reply was lost or late (timeout, connection closed after the
 *   write) — it may have been applied.
 */
export type SendFailure = 'not-sent' | 'refused' | 'unknown';

export function classifySendFailure(err: unknown): SendFailure {
  const message = err instanceof Error ? err.message : '';
  if (message.startsWith("Stream isn't writeable") || message.startsWith("Cluster isn't ready")) return 'not-sent';
  if (err instanceof Error && err.name === 'ReplyError') return 'refused';
  return 'unknown';
}

/** A publish whose reply was lost or late, as needed to look it up. */
export interface PendingPublish {
  channel: string;
  /** Its idempotency key in Redis (the caller's, or the node's own). */
  key: string;
  /** The attempt id the script records with the result. */
  attempt: string;
  /** The script's deadline in Redis time, ms (0: none, so absence never proves anything). */
  deadline: number;
  /** Until when (Redis time, ms) the key of a publish applied in time cannot have expired. */
  keyAliveUntil: number;
}

export function outcomeUnknown(channel: string): ChorusError {
  return new ChorusError(
    ErrorCode.OUTCOME_UNKNOWN,
    `the publish to "${channel}" reached Redis but its outcome could not be learned in time; ` +
      'retry with the same idempotency key: it will not be applied twice',
  );
}

/**
 * Learns the truth about publishes whose reply was lost or late: as soon as Redis answers
 * again, and within one budget (`outcomeTimeoutMs`), it looks the publication's idempotency key
 * up. Found: the real `{offset, epoch}`. Absent while Redis's clock is past the publish's
 * deadline: definitely not applied (the script checks its deadline first, so it can never
 * apply later) → UNAVAILABLE. Otherwise, when the budget runs out: OUTCOME_UNKNOWN.
 */
export class PublishOutcomes {
  constructor(
    private readonly client: Client,
    private readonly budgetMs: number,
    private readonly now: Clock,
  ) {}

  async resolve(pending: PendingPublish): Promise<PublishResult> {
    const deadline = new Deadline(this.budgetMs, this.now);
    for (;;) {
      let pauseMs = 50;
      if (this.client.status !== 'ready') await this.ready(deadline);
      if (this.client.status === 'ready' && !deadline.expired) {
        try {
          const [status, offset, epoch, attempt, redisNow] = await deadline.race(
            this.client.chorusOutcome(pending.key, pending.deadline, pending.keyAliveUntil),
            'publish outcome lookup',
          );
          if (status === 1) {
            const result: PublishResult = { offset: Number(offset), epoch: String(epoch) };
            // An earlier attempt with the same key applied it: this one was a duplicate.
            if (attempt !== pending.attempt) result.duplicate = true;
            return result;
          }
          if (status === 2) {
            throw new ChorusError(ErrorCode.UNAVAILABLE, 'the publish did not run in Redis before its deadline; nothing was applied');
          }
          // Redis's clock is not past the deadline yet: the script may still run. Look again then.
          pauseMs = Math.min(Math.max(pending.deadline - Number(redisNow) + 1, 10), 250);
        } catch (err) {
          if (err instanceof ChorusError) throw err;
          // The lookup failed too (Redis still slow or unreachable): try again while time is left.
        }
      }
      if (deadline.expired) throw outcomeUnknown(pending.channel);
      await deadline.pause(pauseMs);
      if (deadline.expired) throw outcomeUnknown(pending.channel);
    }
  }

  /** Wait until the command connection is ready again, or the budget is spent. */
  private ready(deadline: Deadline): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.client.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, deadline.remaining());
      timer.unref();
      this.client.once('ready', done);
    });
  }
}
