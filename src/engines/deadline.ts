import type { Clock } from './clock.js';

/** Thrown by `Deadline.race` when the operation's time ran out before the awaited step settled. */
export class DeadlineExceededError extends Error {
  readonly code = 'DEADLINE_EXCEEDED';

  constructor(what: string, ms: number) {
    super(`${what}: no answer within the operation's ${ms} ms`);
    this.name = 'DeadlineExceededError';
  }
}

/**
 * One time budget for one operation that makes several waits (e.g. SUBSCRIBE, then a position
 * read): each wait gets what is left of the budget, not a fresh timeout, so the operation as a
 * whole answers within `ms`. One unref'd timer per deadline, however many waits are pending on
 * it at once (an operation's outer wait and its current step), cleared when none is.
 */
export class Deadline {
  readonly at: number;
  private timer: NodeJS.Timeout | undefined;
  /** The pending waits: each rejects with DeadlineExceededError when the budget runs out. */
  private readonly waits = new Set<() => void>();

  constructor(
    /** The whole budget, in ms. */
    readonly ms: number,
    private readonly now: Clock,
  ) {
    this.at = now() + ms;
  }

  /** What is left of the budget, in ms (0 when spent). */
  remaining(): number {
    return Math.max(0, this.at - this.now());
  }

  get expired(): boolean {
    return this.remaining() === 0;
  }

  /** `step`, or DeadlineExceededError when the budget runs out first (the step itself is not cancelled). */
  race<T>(step: Promise<T>, what: string): Promise<T> {
    const left = this.remaining();
    if (left === 0) {
      step.catch(() => {});
      return Promise.reject(new DeadlineExceededError(what, this.ms));
    }
    return new Promise<T>((resolve, reject) => {
      const expire = () => {
        step.catch(() => {});
        reject(new DeadlineExceededError(what, this.ms));
      };
      this.waits.add(expire);
      if (!this.timer) {
        this.timer = setTimeout(this.fire, left);
        this.timer.unref();
      }
      step.then(
        (value) => {
          this.settled(expire);
          resolve(value);
        },
        (err: unknown) => {
          this.settled(expire);
          reject(err);
        },
      );
    });
  }

  private settled(expire: () => void): void {
    this.waits.delete(expire);
    if (this.waits.size === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const waits = [...this.waits];
    this.waits.clear();
    for (const expire of waits) expire();
  };

  /** Wait `ms` or what is left of the budget, whichever is less. */
  pause(ms: number): Promise<void> {
    const wait = Math.min(ms, this.remaining());
    return new Promise((resolve) => setTimeout(resolve, wait).unref());
  }
}
