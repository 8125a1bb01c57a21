import { randomFillSync } from 'node:crypto';
import { ChorusError, ErrorCode, type StreamPosition } from '../../protocol/index.js';
import { systemClock, type Clock } from '../clock.js';
import type { HistoryPolicy, HistoryReadOptions, HistoryReadResult, Publication } from '../types.js';

/**
 * A stream's position (offset and epoch) is kept this long after its last publication or read,
 * in ms, whatever the history TTL: a quiet channel keeps its epoch, so its subscribers are not
 * told to reload just because nothing happened. (History itself expires by the namespace TTL.)
 */
export const STREAM_META_TTL_MS = 24 * 60 * 60 * 1000;

interface Stream {
  epoch: string;
  offset: number;
  /** Retained publications, oldest first; at most `size` of them. */
  publications: Publication[];
  /** When the retained publications expire (history TTL after the last publication). */
  historyExpiresAt: number;
  /** When the whole stream (position and epoch) may be dropped, ms since the Unix epoch. */
  expiresAt: number;
}

/**
 * The publications of every stream that retains none (most streams: personal channels, channels
 * without history), shared instead of an empty array each. Never mutated: `append` replaces it.
 */
const NO_PUBLICATIONS: Publication[] = [];

/** Random bytes for epochs, refilled a few KB at a time: one `randomFillSync` per 1024 epochs, not one each. */
const EPOCH_POOL = Buffer.alloc(6 * 1024);
let epochPoolOffset = EPOCH_POOL.length;

export function newEpoch(): string {
  if (epochPoolOffset + 6 > EPOCH_POOL.length) {
    randomFillSync(EPOCH_POOL);
    epochPoolOffset = 0;
  }
  const epoch = EPOCH_POOL.toString('base64url', epochPoolOffset, epochPoolOffset + 6);
  epochPoolOffset += 6;
  return epoch;
}

/**
 * In-memory channel streams: offsets, epochs and bounded history. History expires by its TTL
 * while the position stays, so a client that missed expired publications is told `recovered:
 * false`. A stream that expires altogether, or a process restart, gets a new epoch, with the
 * same result for old positions: never a silent gap.
 */
export class StreamTable {
  private readonly streams = new Map<string, Stream>();
  /** Streams created by a read and never published to, oldest first (bounded: see maxUnpublished). */
  private readonly unpublished = new Set<string>();
  private readonly now: Clock;
  private readonly maxUnpublished: number;

  /**
   * @param maxUnpublished Streams that exist only because someone read their position (subscribe,
   *   history) are capped at this many; the oldest are forgotten first. A forgotten stream gets a
   *   new epoch when first published to, so its subscribers (if any) are told `recovered: false`
   *   instead of silently missing anything. Bounds what clients can make the server keep by
   *   reading random channel names. Default 100000.
   */
  constructor(now: Clock = systemClock, maxUnpublished = 100000) {
    this.now = now;
    this.maxUnpublished = maxUnpublished;
  }

  get size(): number {
    return this.streams.size;
  }

  private live(channel: string): Stream | undefined {
    const stream = this.streams.get(channel);
    if (!stream) return undefined;
    const now = this.now();
    if (stream.expiresAt <= now) {
      this.streams.delete(channel);
      this.unpublished.delete(channel);
      return undefined;
    }
    if (stream.publications.length > 0 && stream.historyExpiresAt <= now) stream.publications = NO_PUBLICATIONS;
    return stream;
  }

  private ensure(channel: string): Stream {
    let stream = this.live(channel);
    const now = this.now();
    if (!stream) {
      stream = { epoch: newEpoch(), offset: 0, publications: NO_PUBLICATIONS, historyExpiresAt: now, expiresAt: now + STREAM_META_TTL_MS };
      this.streams.set(channel, stream);
      this.unpublished.add(channel);
      if (this.unpublished.size > this.maxUnpublished) {
        const oldest = this.unpublished.values().next().value as string;
        this.unpublished.delete(oldest);
        this.streams.delete(oldest);
      }
    } else {
      stream.expiresAt = Math.max(stream.expiresAt, now + STREAM_META_TTL_MS);
    }
    return stream;
  }

  /** Assign the next offset and append to history, in one step. */
  append(publication: Publication, history: HistoryPolicy | undefined): Publication {
    const stream = this.ensure(publication.channel);
    this.unpublished.delete(publication.channel);
    stream.offset += 1;
    const stored: Publication = { ...publication, offset: stream.offset, epoch: stream.epoch };
    const now = this.now();
    if (history && history.size > 0) {
      if (stream.publications === NO_PUBLICATIONS) stream.publications = [stored];
      else stream.publications.push(stored);
      if (stream.publications.length > history.size) {
        stream.publications.splice(0, stream.publications.length - history.size);
      }
      stream.historyExpiresAt = now + history.ttlMs;
    }
    stream.expiresAt = now + Math.max(STREAM_META_TTL_MS, history?.ttlMs ?? 0);
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

  /** Drop expired streams and expired history; returns how many streams were dropped. */
  sweep(): number {
    const now = this.now();
    let dropped = 0;
    for (const [channel, stream] of this.streams) {
      if (stream.expiresAt <= now) {
        this.streams.delete(channel);
        this.unpublished.delete(channel);
        dropped++;
      } else if (stream.publications.length > 0 && stream.historyExpiresAt <= now) {
        stream.publications = NO_PUBLICATIONS;
      }
    }
    return dropped;
  }
}
