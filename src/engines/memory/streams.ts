import { randomBytes } from 'node:crypto';
import { ChorusError, ErrorCode, type StreamPosition } from '../../protocol/index.js';
import type { HistoryPolicy, HistoryReadOptions, HistoryReadResult, Publication } from '../types.js';

/** Streams of channels without history are forgotten this long after their last publication, in ms. */
export const STREAM_META_TTL_MS = 24 * 60 * 60 * 1000;

interface Stream {
  epoch: string;
  offset: number;
  /** Retained publications, oldest first; at most `size` of them. */
  publications: Publication[];
  /** When the stream (and its history) may be dropped, ms since the Unix epoch. */
  expiresAt: number;
}

export function newEpoch(): string {
  return randomBytes(6).toString('base64url');
}

/**
 * In-memory channel streams: offsets, epochs and bounded history. A stream that expires, or a
 * process restart, loses its history; the next publication starts a new epoch, so a client
 * holding an old position is told `recovered: false` instead of getting a silent gap.
 */
export class StreamTable {
  private readonly streams = new Map<string, Stream>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  get size(): number {
    return this.streams.size;
  }

  private live(channel: string): Stream | undefined {
    const stream = this.streams.get(channel);
    if (stream && stream.expiresAt <= this.now()) {
      this.streams.delete(channel);
      return undefined;
    }
    return stream;
  }

  private ensure(channel: string): Stream {
    let stream = this.live(channel);
    if (!stream) {
      stream = { epoch: newEpoch(), offset: 0, publications: [], expiresAt: this.now() + STREAM_META_TTL_MS };
      this.streams.set(channel, stream);
    }
    return stream;
  }

  /** Assign the next offset and append to history, in one step. */
  append(publication: Publication, history: HistoryPolicy | undefined): Publication {
    const stream = this.ensure(publication.channel);
    stream.offset += 1;
    const stored: Publication = { ...publication, offset: stream.offset, epoch: stream.epoch };
    const now = this.now();
    if (history && history.size > 0) {
      stream.publications.push(stored);
      if (stream.publications.length > history.size) {
        stream.publications.splice(0, stream.publications.length - history.size);
      }
      stream.expiresAt = now + history.ttlMs;
    } else {
      stream.expiresAt = now + STREAM_META_TTL_MS;
    }
    return stored;
  }

  position(channel: string): StreamPosition {
    const stream = this.ensure(channel);
    return { offset: stream.offset, epoch: stream.epoch };
  }

  read(channel: string, options: HistoryReadOptions): HistoryReadResult {
    const stream = this.ensure(channel);
    const position = { offset: stream.offset, epoch: stream.epoch };
    const firstOffset = stream.publications[0]?.offset ?? stream.offset + 1;
    if (options.since && options.since.epoch !== stream.epoch) {
      throw new ChorusError(
        ErrorCode.UNRECOVERABLE_POSITION,
        'the position belongs to an earlier epoch of this channel; its history is gone',
      );
    }
    const after = options.since?.offset ?? 0;
    let candidates = stream.publications;
    if (after >= firstOffset) {
      candidates = candidates.slice(after - firstOffset + 1);
    }
    const limit = Math.max(0, options.limit);
    const publications = options.reverse
      ? candidates.slice(Math.max(0, candidates.length - limit)).reverse()
      : candidates.slice(0, limit);
    return { publications, position, firstOffset };
  }

  /** Drop expired streams; returns how many were dropped. */
  sweep(): number {
    const now = this.now();
    let dropped = 0;
    for (const [channel, stream] of this.streams) {
      if (stream.expiresAt <= now) {
        this.streams.delete(channel);
        dropped++;
      }
    }
    return dropped;
  }
}
