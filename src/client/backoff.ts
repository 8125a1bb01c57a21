/**
 * Full-jitter exponential backoff (docs/PROTOCOL.md section 4):
 * `delay = random(0, min(maxMs, minMs * 2^attempt))`, where `attempt` counts the failed
 * attempts since the last success.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

export class Backoff {
  #attempt = 0;
  readonly minMs: number;
  readonly maxMs: number;
  readonly #random: () => number;

  constructor(minMs: number, maxMs: number, random: () => number = Math.random) {
    if (!(minMs >= 0) || !(maxMs >= minMs)) {
      throw new TypeError(`backoff: need 0 <= minMs <= maxMs, got ${minMs} and ${maxMs}`);
    }
    this.minMs = minMs;
    this.maxMs = maxMs;
    this.#random = random;
  }

  /** Failed attempts since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt; counts one more failed attempt. */
  next(): number {
    const delay = backoffDelay(this.#attempt, this.minMs, this.maxMs, this.#random);
    this.#attempt++;
    return delay;
  }

  /** Forget the failed attempts (after a success). */
  reset(): void {
    this.#attempt = 0;
  }
}
