import type { ConnectionRegistry, RateLimiter } from '../types.js';
import { systemClock, type Clock } from '../clock.js';
import { TokenBucket } from '../token-bucket.js';

/** Per-user connection entries with expiry, in one process. */
export class MemoryConnectionRegistry implements ConnectionRegistry {
  private readonly users = new Map<string, Map<string, number>>();

  constructor(private readonly now: Clock = systemClock) {}

  async reserve(user: string, clientId: string, max: number, ttlMs: number): Promise<boolean> {
    const now = this.now();
    let entries = this.users.get(user);
    if (!entries) this.users.set(user, (entries = new Map()));
    for (const [id, expiresAt] of entries) if (expiresAt <= now) entries.delete(id);
    if (!entries.has(clientId) && entries.size >= max) return false;
    entries.set(clientId, now + ttlMs);
    return true;
  }

  async release(user: string, clientId: string): Promise<void> {
    const entries = this.users.get(user);
    if (!entries) return;
    entries.delete(clientId);
    if (entries.size === 0) this.users.delete(user);
  }

  async refresh(list: Array<{ user: string; clientId: string }>, ttlMs: number): Promise<void> {
    const expiresAt = this.now() + ttlMs;
    // Entries of live connections are (re-)added even if they expired meanwhile.
    for (const { user, clientId } of list) {
      let entries = this.users.get(user);
      if (!entries) this.users.set(user, (entries = new Map()));
      entries.set(clientId, expiresAt);
    }
  }
}

/** Token buckets by key, in one process; idle buckets are forgotten on `sweep`. */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { bucket: TokenBucket; usedAt: number }>();

  constructor(private readonly now: Clock = systemClock) {}

  async consume(key: string, ratePerSecond: number, burst: number, cost = 1) {
    const now = this.now();
    let slot = this.buckets.get(key);
    if (!slot) this.buckets.set(key, (slot = { bucket: new TokenBucket(ratePerSecond, burst, now), usedAt: now }));
    slot.usedAt = now;
    return slot.bucket.consume(now, cost);
  }

  /** Forget buckets idle for longer than `idleMs` (a full refill takes burst/rate seconds). */
  sweep(idleMs = 60000): void {
    const now = this.now();
    for (const [key, slot] of this.buckets) if (now - slot.usedAt > idleMs) this.buckets.delete(key);
  }
}
