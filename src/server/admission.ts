/**
 * Server-paced admission: a node starts at most `ratePerSecond` handshakes a second (a token
 * bucket of `burst`) and has at most `maxPending` in admission at once. Over either it answers
 * at once with HTTP 503 and a `Retry-After` that spreads the refused clients over the coming
 * seconds at the admission rate, instead of queueing handshakes until they time out (a
 * reconnect storm after a node dies). docs/PROTOCOL.md section 1.
 */
import { TokenBucket } from '../engines/token-bucket.js';

export interface AdmissionOptions {
  /** Handshakes a node starts per second, sustained; over it HTTP 503 with `Retry-After`. 0 = unpaced. Default 1000. */
  ratePerSecond: number;
  /** Handshakes admitted at once above the rate (the bucket size). Default 1000. */
  burst: number;
  /** Handshakes in admission (authentication, connection cap, hooks) at once; more get 503. 0 = no cap. Default 1000. */
  maxPending: number;
  /** Largest `Retry-After` sent, in seconds. Default 30. */
  maxRetryAfterSec: number;
}

export const DEFAULT_ADMISSION: AdmissionOptions = {
  ratePerSecond: 1000,
  burst: 1000,
  maxPending: 1000,
  maxRetryAfterSec: 30,
};

/** Why a handshake was not started: answer 503 with `Retry-After: retryAfterSec`. */
export interface Paced {
  reason: 'admission_rate' | 'admission_pending';
  retryAfterSec: number;
}

/**
 * The pacing state of one node: a token bucket for the rate, a count of handshakes in admission,
 * and the clients already told to come back (`deferred`, drained at the admission rate), from
 * which each refusal's `Retry-After` follows: the k-th client refused in a storm comes back
 * about k / ratePerSecond seconds later, so the storm is served at the rate, not all at once.
 */
export class AdmissionPacer {
  private readonly bucket: TokenBucket | undefined;
  private pending = 0;
  private deferred = 0;
  private deferredAt: number;

  constructor(
    private readonly options: AdmissionOptions,
    private readonly now: () => number,
  ) {
    const at = now();
    this.deferredAt = at;
    this.bucket = options.ratePerSecond > 0 ? new TokenBucket(options.ratePerSecond, options.burst, at) : undefined;
  }

  /** Handshakes in admission right now. */
  get inAdmission(): number {
    return this.pending;
  }

  /** Start a handshake, or say why not. Call `leave()` once a started handshake is admitted or refused. */
  enter(): Paced | undefined {
    const { maxPending } = this.options;
    if (maxPending > 0 && this.pending >= maxPending) return this.defer('admission_pending');
    if (this.bucket && !this.bucket.consume(this.now()).ok) return this.defer('admission_rate');
    this.pending++;
    return undefined;
  }

  leave(): void {
    if (this.pending > 0) this.pending--;
  }

  private defer(reason: Paced['reason']): Paced {
    const now = this.now();
    // Clients told to come back leave the backlog at the admission rate (or 1000/s unpaced).
    const rate = this.options.ratePerSecond > 0 ? this.options.ratePerSecond : 1000;
    this.deferred = Math.max(0, this.deferred - ((now - this.deferredAt) * rate) / 1000);
    this.deferredAt = now;
    this.deferred++;
    const retryAfterSec = Math.min(this.options.maxRetryAfterSec, Math.max(1, Math.ceil(this.deferred / rate)));
    return { reason, retryAfterSec };
  }
}
