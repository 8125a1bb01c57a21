/** Outcome of taking tokens from a bucket. */
export interface RateDecision {
  ok: boolean;
  /** When not ok: ms until `cost` tokens are available again. */
  retryAfterMs: number;
}

/**
 * A token bucket: `burst` tokens, refilled at `ratePerSecond`. Kept as two numbers so that one
 * per connection costs next to nothing; refill is computed lazily on `consume`.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  consume(now: number, cost = 1): RateDecision {
    const elapsed = Math.max(0, now - this.updatedAt);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    this.updatedAt = now;
    if (this.tokens >= cost) {
      this.tokens -= cost;
      return { ok: true, retryAfterMs: 0 };
    }
    return { ok: false, retryAfterMs: Math.ceil(((cost - this.tokens) * 1000) / this.ratePerSecond) };
  }
}
