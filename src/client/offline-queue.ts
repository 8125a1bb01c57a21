/**
 * The bounded queue of publishes made while the client is not connected. Pure: the clock is
 * injected, and the owner runs the expiry timer (see `nextExpiryAt`).
 *
 * Limits, both enforced at their edge:
 * - `maxSize`: a push when `size === maxSize` is refused (the caller rejects it with QUEUE_FULL);
 *   expired items are pruned first, so they never take room.
 * - `maxAgeMs`: an item expires once it has waited `maxAgeMs` (age >= maxAgeMs).
 */
export interface OfflineQueueOptions {
  /** Most items held at once. */
  maxSize: number;
  /** How long an item may wait, in ms. */
  maxAgeMs: number;
  /** Clock in ms; default `Date.now`. */
  now?: () => number;
}

interface Entry<T> {
  item: T;
  queuedAt: number;
}

export class OfflineQueue<T> {
  readonly maxSize: number;
  readonly maxAgeMs: number;
  readonly #now: () => number;
  #entries: Entry<T>[] = [];

  constructor(options: OfflineQueueOptions) {
    if (!Number.isInteger(options.maxSize) || options.maxSize < 0) {
      throw new TypeError(`maxQueuedPublishes must be an integer >= 0, got ${options.maxSize}`);
    }
    if (!(options.maxAgeMs >= 0)) {
      throw new TypeError(`maxQueuedAgeMs must be >= 0, got ${options.maxAgeMs}`);
    }
    this.maxSize = options.maxSize;
    this.maxAgeMs = options.maxAgeMs;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.length;
  }

  /**
   * Add an item. Returns the expired items pruned to make room (the caller rejects them) and
   * whether the item was accepted.
   */
  push(item: T): { accepted: boolean; expired: T[] } {
    const expired = this.expire();
    if (this.#entries.length >= this.maxSize || this.maxAgeMs === 0) return { accepted: false, expired };
    this.#entries.push({ item, queuedAt: this.#now() });
    return { accepted: true, expired };
  }

  /** Remove and return the items that have waited `maxAgeMs` or longer. */
  expire(): T[] {
    const now = this.#now();
    const expired: T[] = [];
    this.#entries = this.#entries.filter((entry) => {
      if (now - entry.queuedAt < this.maxAgeMs) return true;
      expired.push(entry.item);
      return false;
    });
    return expired;
  }

  /** When the oldest item expires (ms, same clock), or undefined when empty. */
  nextExpiryAt(): number | undefined {
    const first = this.#entries[0];
    return first === undefined ? undefined : first.queuedAt + this.maxAgeMs;
  }

  /** Remove one item (e.g. it timed out otherwise). Returns whether it was queued. */
  remove(item: T): boolean {
    const index = this.#entries.findIndex((entry) => entry.item === item);
    if (index === -1) return false;
    this.#entries.splice(index, 1);
    return true;
  }

  /** Remove and return every item still fresh, oldest first, and the expired ones separately. */
  drain(): { items: T[]; expired: T[] } {
    const expired = this.expire();
    const items = this.#entries.map((entry) => entry.item);
    this.#entries = [];
    return { items, expired };
  }
}
