import type { ConnectionRegistry, RateLimiter } from '../types.js';
import { RedisKeys, unavailable, type Client } from './clients.js';
import { TurnBatch } from './turn-batch.js';

interface Reservation {
  key: string;
  clientId: string;
  max: number;
  ttlMs: number;
}

/** The per-user connection cap across nodes: one sorted set of connection ids by expiry per user. */
export class RedisConnectionRegistry implements ConnectionRegistry {
  private readonly keys: RedisKeys;
  /** The reservations of one event-loop turn as one script call (when batching per turn). */
  private readonly reservations: TurnBatch<Reservation, number> | undefined;

  /**
   * @param prefix Prefix of every key (the engine's `prefix`).
   * @param batchPerTurn send the reservations made in one turn as one `chorusReserveMany`
   */
  constructor(
    private readonly client: Client,
    prefix: string,
    batchPerTurn = false,
  ) {
    this.keys = new RedisKeys(prefix);
    if (batchPerTurn) {
      this.reservations = new TurnBatch((items) => {
        const args: Array<string | number> = [items.length];
        for (const r of items) args.push(r.key);
        for (const r of items) args.push(r.clientId, r.max, r.ttlMs);
        return this.client.chorusReserveMany(...args);
      });
    }
  }

  async reserve(user: string, clientId: string, max: number, ttlMs: number): Promise<boolean> {
    const key = this.keys.connections(user);
    try {
      const reserved = this.reservations ? await this.reservations.add({ key, clientId, max, ttlMs }) : await this.client.chorusReserve(key, clientId, max, ttlMs);
      return reserved === 1;
    } catch (err) {
      throw unavailable(err);
    }
  }

  async release(user: string, clientId: string): Promise<void> {
    try {
      await this.client.zrem(this.keys.connections(user), clientId);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async refresh(entries: Array<{ user: string; clientId: string }>, ttlMs: number): Promise<void> {
    try {
      await Promise.all(entries.map(({ user, clientId }) => this.client.chorusRefresh(this.keys.connections(user), ttlMs, clientId)));
    } catch (err) {
      throw unavailable(err);
    }
  }
}

/** Token buckets in Redis, shared by every node (e.g. the per-user ephemeral throttle). */
export class RedisRateLimiter implements RateLimiter {
  private readonly keys: RedisKeys;

  /** @param prefix Prefix of every key (the engine's `prefix`). */
  constructor(
    private readonly client: Client,
    prefix: string,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  async consume(key: string, ratePerSecond: number, burst: number, cost = 1): Promise<{ ok: boolean; retryAfterMs: number }> {
    try {
      const [ok, retryAfterMs] = await this.client.chorusBucket(this.keys.rate(key), ratePerSecond, burst, cost);
      return { ok: ok === 1, retryAfterMs: Number(retryAfterMs) };
    } catch (err) {
      throw unavailable(err);
    }
  }
}
