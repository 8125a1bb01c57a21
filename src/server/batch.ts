import type { Codec } from '../protocol/index.js';

/** What one flush wrote, summed over connections. */
export interface FlushTotals {
  bytes: number;
  frames: number;
  messages: number;
}

/**
 * Remembers the last joined batch per codec: consecutive connections with identical queues
 * reuse it. Frames are joined with the codec's separator (a newline for JSON, nothing for
 * MessagePack, whose values are self-delimiting).
 */
export class BatchCache {
  private readonly last = new Map<Codec, { frames: Uint8Array[]; payload: Buffer }>();

  join(queue: Uint8Array[], codec: Codec): Buffer {
    const last = this.last.get(codec);
    if (last && last.frames.length === queue.length && queue.every((frame, i) => frame === last.frames[i])) return last.payload;
    const separator = codec.separator;
    const parts: Uint8Array[] = [];
    for (let i = 0; i < queue.length; i++) {
      if (i > 0 && separator.length > 0) parts.push(separator);
      parts.push(queue[i]!);
    }
    const payload = Buffer.concat(parts);
    this.last.set(codec, { frames: queue, payload });
    return payload;
  }
}
