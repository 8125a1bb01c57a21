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
 *
 * A stream nobody has published to (most: every connection's personal channel) is at offset 0
 * with nothing retained, so all it has is its epoch: it is kept as just that, in two generations
 * of STREAM_META_TTL_MS each (read in one, it is kept until the end of the next: at least the
 * TTL after its last read, at most twice that), instead of a whole stream record.
 */
export class StreamTable {
  /** Streams published to. */
  private readonly streams = new Map<string, Stream>();
  /** Epochs of streams only read so far (never published), in this generation and the last; oldest first in each. */
  private fresh = new Map<string, string>();
  private stale = new Map<string, string>();
  /** When `fresh` becomes `stale` (and `stale` is forgotten), ms since the Unix epoch. */
  private generationEndsAt: number;
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
    this.generationEndsAt = now() + STREAM_META_TTL_MS;
  }

  get size(): number {
    return this.streams.size + this.fresh.size + this.stale.size;
  }

  private live(channel: string): Stream | undefined {
    const stream = this.streams.get(channel);
    if (!stream) return undefined;
    const now = this.now();
    if (stream.expiresAt <= now) {
      this.streams.delete(channel);
      return undefined;
    }
    if (stream.publications.length > 0 && stream.historyExpiresAt <= now) stream.publications = NO_PUBLICATIONS;
    return stream;
  }

  /** Start a new generation of read-only streams when the current one has ended. */
  private rotate(now: number): void {
    if (now < this.generationEndsAt) return;
    // Two generations without a read forget a stream; more than one elapsed forgets them all.
    this.stale = now < this.generationEndsAt + STREAM_META_TTL_MS ? this.fresh : new Map();
    this.fresh = new Map();
    this.generationEndsAt = now + STREAM_META_TTL_MS;
  }

  /** The epoch of a stream never published to, made on first read; or undefined (with `create` false). */
  private unpublishedEpoch(channel: string, create: boolean): string | undefined {
    this.rotate(this.now());
    let epoch = this.fresh.get(channel);
    if (epoch !== undefined) return epoch;
    epoch = this.stale.get(channel);
    if (epoch !== undefined) {
      this.stale.delete(channel); // read again: kept for another generation
      this.fresh.set(channel, epoch);
      return epoch;
    }
    if (!create) return undefined;
    epoch = newEpoch();
    this.fresh.set(channel, epoch);
    if (this.fresh.size + this.stale.size > this.maxUnpublished) {
      const oldest = this.stale.size > 0 ? this.stale : this.fresh;
      oldest.delete(oldest.keys().next().value as string);
    }
    return epoch;
  }

  /** A stream's position: its record's, or offset 0 and its epoch for a stream never published to. */
  private positionOf(channel: string): { stream: Stream | undefined; position: StreamPosition } {
    const stream = this.live(channel);
    if (stream) {
      stream.expiresAt = Math.max(stream.expiresAt, this.now() + STREAM_META_TTL_MS);
      return { stream, position: { offset: stream.offset, epoch: stream.epoch } };
    }
    return { stream: undefined, position: { offset: 0, epoch: this.unpublishedEpoch(channel, true)! } };
  }

  /** The record of a stream about to be published to, keeping the epoch it had while only read. */
  private ensure(channel: string): Stream {
    const stream = this.live(channel);
    if (stream) return stream;
    const now = this.now();
    const epoch = this.unpublishedEpoch(channel, false) ?? newEpoch();
    this.fresh.delete(channel);
    const made: Stream = { epoch, offset: 0, publications: NO_PUBLICATIONS, historyExpiresAt: now, expiresAt: now + STREAM_META_TTL_MS };
    this.streams.set(channel, made);
    return made;
  }

  /** Assign the next offset and append to history, in one step. */
  append(publication: Publication, history: HistoryPolicy | undefined): Publication {
    const stream = this.ensure(publication.channel);
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
    return this.positionOf(channel).position;
  }

  read(channel: string, options: HistoryReadOptions): HistoryReadResult {
    const { stream, position } = this.positionOf(channel);
    const retained = stream?.publications ?? NO_PUBLICATIONS;
    const firstOffset = retained[0]?.offset ?? position.offset + 1;
    if (options.since && options.since.epoch !== position.epoch) {
      throw new ChorusError(
        ErrorCode.UNRECOVERABLE_POSITION,
        'the position belongs to an earlier epoch of this channel; its history is gone',
      );
    }
    const after = options.since?.offset ?? 0;
    let candidates = retained;
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
    const before = this.fresh.size + this.stale.size;
    this.rotate(now);
    let dropped = before - this.fresh.size - this.stale.size;
    for (const [channel, stream] of this.streams) {
      if (stream.expiresAt <= now) {
        this.streams.delete(channel);
        dropped++;
      } else if (stream.publications.length > 0 && stream.historyExpiresAt <= now) {
        stream.publications = NO_PUBLICATIONS;
      }
    }
    return dropped;
  }
}
