import type { Transport } from './transport.js';

/** When reading pauses and resumes (`limits.maxPendingFrames`, `limits.resumePendingFrames`). */
export interface InboundLimits {
  /** Frames waiting for their turn on one connection before its transport is paused. */
  readonly maxPendingFrames: number;
  /** Waiting frames at or below which a paused transport is resumed. */
  readonly resumePendingFrames: number;
}

/** What holds an inbound queue (a connection), told when it has drained. */
export interface InboundOwner {
  inboundDrained(queue: InboundQueue): void;
}

/**
 * The inbound side of one connection: its frames run one at a time, in order. Past
 * `maxPendingFrames` waiting tasks (a slow handler or engine and a client that keeps sending)
 * reading is paused, so memory stays bounded: TCP pushes back on the client until the queue
 * drains to `resumePendingFrames`.
 */
export class InboundQueue {
  /** The last task's promise while any task is pending (none kept on an idle connection). */
  private tail: Promise<void> | undefined;
  private pending = 0;
  private paused = false;
  /** Past `maxFaults`: reading stopped for good, a 1008 close is queued. */
  abusive = false;

  /** @param owner told each time the last pending task has finished (it may drop the queue) */
  constructor(
    private readonly transport: Transport,
    private readonly limits: InboundLimits,
    private readonly owner?: InboundOwner,
  ) {}

  /** No task pending, reading not paused and not stopped: the queue holds nothing worth keeping. */
  get idle(): boolean {
    return this.pending === 0 && !this.paused && !this.abusive;
  }

  /** Run `task` after the earlier ones; a failure goes to `failed` and the queue goes on. */
  enqueue(task: () => Promise<void>, failed: (err: unknown) => void): void {
    this.pending++;
    if (this.pending > this.limits.maxPendingFrames && !this.paused) {
      this.paused = true;
      this.transport.pause();
    }
    const tail: Promise<void> = (this.tail ?? Promise.resolve())
      .then(task)
      .catch(failed)
      .finally(() => {
        this.pending--;
        if (this.tail === tail) this.tail = undefined;
        if (this.pending <= this.limits.resumePendingFrames && this.paused && !this.abusive) {
          this.paused = false;
          this.transport.resume();
        }
        if (this.pending === 0) this.owner?.inboundDrained(this);
      });
    this.tail = tail;
  }

  /** Stop reading for good: the connection is being closed for abuse. */
  stopReading(): void {
    this.abusive = true;
    this.transport.pause();
  }
}
