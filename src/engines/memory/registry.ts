import type { ConnectionRegistry, RateLimiter } from '../types.js';
import { systemClock, type Clock } from '../clock.js';
import { TokenBucket } from '../token-bucket.js';

/**
 * Per-user connection entries with expiry, in one process. A user's entries are a flat array of
 * client id and expiry pairs (`[id, expiresAt, id, expiresAt, ...]`): most users hold one or
 * two connections, and a small array costs a fraction of a `Map` per user.
 */
export class MemoryConnectionRegistry implements ConnectionRegistry {
  private readonly users = new Map<string, Array<string | number>>();

  constructor(private readonly now: Clock = systemClock) {}

  async reserve(user: string, clientId: string, max: number, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const entries = this.users.get(user);
    if (!entries) {
      if (max < 1) return false;
      this.users.set(user, [clientId, now + ttlMs]); // allocated at its size: no spare capacity
      return true;
    }
    for (let i = entries.length - 2; i >= 0; i -= 2) if ((entries[i + 1] as number) <= now) entries.splice(i, 2);
    const at = entries.indexOf(clientId);
    if (at === -1 && entries.length / 2 >= max) {
      if (entries.length === 0) this.users.delete(user);
      return false;
    }
    if (at === -1) entries.push(clientId, now + ttlMs);
    else entries[at + 1] = now + ttlMs;
    return true;
  }

  async release(user: string, clientId: string): Promise<void> {
    const entries = this.users.get(user);
    if (!entries) return;
    const at = entries.indexOf(clientId);
    if (at !== -1) entries.splice(at, 2);
    if (entries.length === 0) this.users.delete(user);
  }

  async refresh(list: Array<{ user: string; clientId: string }>, ttlMs: number): Promise<void> {
    const expiresAt = this.now() + ttlMs;
    // Entries of live connections are (re-)added even if they expired meanwhile.
    for (const { user, clientId } of list) {
      const entries = this.users.get(user);
      if (!entries) {
        this.users.set(user, [clientId, expiresAt]);
        continue;
      }
      const at = entries.indexOf(clientId);
      if (at === -1) entries.push(clientId, expiresAt);
      else entries[at + 1] = expiresAt;
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
