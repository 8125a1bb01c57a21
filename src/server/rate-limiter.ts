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

/** Token buckets by key (e.g. user + channel for ephemeral throttling), idle ones forgotten on sweep. */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  consume(key: string, cost = 1): RateDecision {
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = new TokenBucket(this.ratePerSecond, this.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket.consume(now, cost);
  }

  /** Forget every bucket (they refill fully within burst/rate seconds anyway). */
  clear(): void {
    this.buckets.clear();
  }

  get size(): number {
    return this.buckets.size;
  }
}
