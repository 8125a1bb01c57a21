import type { Clock } from '../clock.js';

/**
 * Our estimate of Redis's clock, so publish deadlines can be given to the script in Redis time.
 * Every publish reply carries Redis's time and refreshes the estimate.
 */
export class RedisClockSync {
  /** Redis's clock minus ours, in ms. */
  private offsetMs = 0;
  /** Half the round trip of the sample behind `offsetMs` (how wrong it may be), in ms. */
  private uncertaintyMs = Number.POSITIVE_INFINITY;
  private sampledAt = 0;

  constructor(
    private readonly now: Clock,
    private readonly commandTimeoutMs: number,
  ) {}

  /**
   * Take a sample of Redis's clock. The reply's time lies somewhere in the round trip, so a
   * sample is only as good as half its round trip: a sample from a slow round trip (Redis
   * stalled, queued commands) is ignored unless it beats the one we have or ours is old.
   */
  observe(redisNowMs: number, sentAt: number): void {
    if (!Number.isFinite(redisNowMs)) return;
    const now = this.now();
    const uncertainty = (now - sentAt) / 2;
    const stale = now - this.sampledAt > 60000;
    if (uncertainty <= this.uncertaintyMs || (stale && uncertainty <= 25)) {
      this.offsetMs = redisNowMs - (sentAt + now) / 2;
      this.uncertaintyMs = uncertainty;
      this.sampledAt = now;
    }
  }

  /**
   * The Redis time after which a publish sent at `sentAt` must not be applied: by then the
   * command has timed out here, and once Redis's clock is past it a lookup that does not find
   * the publication proves it was never applied (outcome.ts). A margin before the timeout
   * leaves room for the reply of a script that ran just in time. 0 (no deadline) until there is
   * a clock sample: a publish whose reply is lost then can only be found, never ruled out.
   */
  publishDeadline(sentAt: number): number {
    if (!Number.isFinite(this.uncertaintyMs)) return 0;
    const margin = Math.min(250, Math.floor(this.commandTimeoutMs / 4));
    return Math.max(1, Math.round(sentAt + this.offsetMs + this.commandTimeoutMs - margin - this.uncertaintyMs));
  }
}
