import { FRAME_SEPARATOR } from '../protocol/index.js';

const SEPARATOR = Buffer.from(FRAME_SEPARATOR);

/** What one flush wrote, summed over connections. */
export interface FlushTotals {
  bytes: number;
  frames: number;
  messages: number;
}

/** Remembers the last joined batch: consecutive connections with identical queues reuse it. */
export class BatchCache {
  private frames: Buffer[] = [];
  private payload: Buffer | undefined;

  join(queue: Buffer[]): Buffer {
    const last = this.frames;
    if (this.payload && last.length === queue.length && queue.every((frame, i) => frame === last[i])) return this.payload;
    const parts: Buffer[] = [];
    for (let i = 0; i < queue.length; i++) {
      if (i > 0) parts.push(SEPARATOR);
      parts.push(queue[i]!);
    }
    this.frames = queue;
    this.payload = Buffer.concat(parts);
    return this.payload;
  }
}
