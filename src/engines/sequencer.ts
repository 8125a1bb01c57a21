import { ChorusError, ErrorCode, type StreamPosition } from '../protocol/index.js';
import type { HistoryReadResult, Publication } from './types.js';

/** Reads history after a position (the engine's HistoryStore.read, narrowed). */
export type HistoryReader = (channel: string, since: StreamPosition, limit: number) => Promise<HistoryReadResult>;

interface ChannelSequence {
  /** Position of the last publication delivered to this node; undefined until known. */
  position: StreamPosition | undefined;
  /** Whether the channel keeps history, so gaps can be backfilled. */
  recoverable: boolean;
  /** Publications that arrived while a backfill was running or waiting to be retried, delivered after it. */
  held: Array<{ publication: Publication; exceptClient: string | undefined }> | undefined;
  /** A backfill is reading history now (at most one per channel). */
  backfilling: boolean;
  /** A history read failed (Redis slow or down): backfill again on the next arrival or gap check. */
  retry: boolean;
  /** The stream's top seen by the previous gap check: what pub/sub has had a whole round to deliver. */
  auditMark: StreamPosition | undefined;
  /** Bumped when the channel is marked lost, so a backfill started before stops. */
  generation: number;
}

export interface SequencerOptions {
  /** Publications read per history page during a backfill. Default 1000. */
  backfillPageSize?: number;
  /**
   * Most publications held per channel while a backfill runs or waits for history to be
   * readable again; one more and the channel is reported lost. Default 10000.
   */
  maxHeldPublications?: number;
}

/** What to do with one publication that arrived for a channel, given what the node delivered so far. */
export type ArrivalDecision =
  /** The node does not track the channel (no local subscribers): ignore it. */
  | 'untracked'
  /** No offset: deliver, nothing to order. */
  | 'ephemeral'
  /** A backfill is running: keep it and feed it again after the backfill. */
  | 'hold'
  /** First publication seen, or a new epoch (history was lost): deliver and continue from it. */
  | 'restart'
  /** Already delivered: drop. */
  | 'duplicate'
  /** The next offset (or any later one on a channel without history): deliver and advance. */
  | 'next'
  /** Publications are missing before it: hold it and backfill the gap from history. */
  | 'gap';

/** The ordering decision for one arriving publication (pure: no I/O, no state change). */
export function classifyArrival(
  sequence: { position: StreamPosition | undefined; recoverable: boolean; holding: boolean } | undefined,
  publication: Pick<Publication, 'offset' | 'epoch'>,
): ArrivalDecision {
  if (!sequence) return 'untracked';
  if (publication.offset === undefined || publication.epoch === undefined) return 'ephemeral';
  if (sequence.holding) return 'hold';
  const position = sequence.position;
  if (!position || position.epoch !== publication.epoch) return 'restart';
  if (publication.offset <= position.offset) return 'duplicate';
  if (publication.offset === position.offset + 1 || !sequence.recoverable) return 'next';
  return 'gap';
}

/** What one page of history read during a backfill means. */
export type BackfillStep =
  /** The stream was replaced, or history no longer reaches back to the gap: the channel is lost. */
  | { type: 'lost'; reason: string; position: StreamPosition }
  /** Nothing to backfill (the stream is not ahead of the node). */
  | { type: 'done' }
  /** Deliver these (in order, skipping any already delivered meanwhile); read on while below `top`. */
  | { type: 'deliver'; publications: Publication[]; top: number };

/** Judge a history page read after `from` (pure). */
export function classifyBackfillPage(from: StreamPosition, read: HistoryReadResult): BackfillStep {
  if (read.position.epoch !== from.epoch) return { type: 'lost', reason: 'epoch changed', position: read.position };
  if (read.position.offset <= from.offset) return { type: 'done' };
  const first = read.publications[0];
  if (!first || first.offset !== from.offset + 1) {
    return { type: 'lost', reason: 'history no longer covers the gap', position: read.position };
  }
  return { type: 'deliver', publications: read.publications, top: read.position.offset };
}

/**
 * Node-level ordering of one channel's publications arriving over at-most-once pub/sub. It
 * delivers each offset once and in order; when pub/sub skipped some (a dropped or lagging
 * subscription) it backfills them from history, and when history cannot cover the gap it reports
 * the channel as lost, so local subscribers resynchronise instead of silently missing data.
 */
export class Sequencer {
  private readonly channels = new Map<string, ChannelSequence>();

  private readonly backfillPageSize: number;
  private readonly maxHeld: number;

  constructor(
    private readonly read: HistoryReader,
    private readonly deliver: (publication: Publication, exceptClient?: string) => void,
    private readonly lost: (channel: string, reason: string) => void,
    options: SequencerOptions = {},
  ) {
    this.backfillPageSize = options.backfillPageSize ?? 1000;
    this.maxHeld = options.maxHeldPublications ?? 10000;
  }

  /** Start tracking a channel (the node got its first local subscriber). */
  track(channel: string, recoverable: boolean): void {
    const existing = this.channels.get(channel);
    if (existing) existing.recoverable = recoverable;
    else this.channels.set(channel, { position: undefined, recoverable, held: undefined, backfilling: false, retry: false, auditMark: undefined, generation: 0 });
  }

  untrack(channel: string): void {
    this.channels.delete(channel);
  }

  /** The stream's position as read after subscribing: anything between the two is backfilled. */
  async advanceTo(channel: string, position: StreamPosition): Promise<void> {
    const sequence = this.channels.get(channel);
    if (!sequence) return;
    if (!sequence.position) {
      sequence.position = position;
      return;
    }
    if (sequence.position.epoch === position.epoch && position.offset > sequence.position.offset) {
      await this.backfill(channel, sequence);
    }
  }

  /** Catch up every tracked recoverable channel (after the pub/sub connection came back). */
  async resync(position: (channel: string) => Promise<StreamPosition>): Promise<void> {
    for (const [channel, sequence] of this.channels) {
      if (!sequence.position) continue;
      if (!sequence.recoverable) {
        sequence.position = undefined;
        continue;
      }
      try {
        const top = await position(channel);
        if (top.epoch !== sequence.position.epoch) this.markLost(channel, sequence, 'epoch changed while pub/sub was down', top);
        else if (top.offset > sequence.position.offset) await this.backfill(channel, sequence);
      } catch {
        // Redis slow or down again: keep the position; the next arrival or gap check backfills.
        sequence.retry = true;
      }
    }
  }

  /**
   * Compare every tracked recoverable channel with its stream's position and backfill what
   * pub/sub silently dropped (a publication missed at the end of a burst would otherwise wait
   * for the channel's next publication to show the gap). Run periodically.
   *
   * A publication counts as missed only when it was already in the stream at the PREVIOUS round
   * and has still not arrived: pub/sub may be about to deliver anything newer (a backlog not read
   * yet, e.g. right after a stalled link resumed), so a gap is never declared for it. A dropped
   * tail is thus backfilled within two rounds. A channel whose backfill failed is retried at once.
   */
  async audit(position: (channel: string) => Promise<StreamPosition>): Promise<void> {
    for (const [channel, sequence] of [...this.channels]) {
      if (!sequence.position || !sequence.recoverable || sequence.backfilling) continue;
      if (sequence.held || sequence.retry) {
        await this.backfill(channel, sequence);
        continue;
      }
      let top: StreamPosition;
      try {
        top = await position(channel);
      } catch {
        return; // Redis unavailable: try again next round
      }
      const now = sequence.position;
      if (this.channels.get(channel) !== sequence || !now || sequence.held || sequence.backfilling) continue;
      const mark = sequence.auditMark;
      sequence.auditMark = top;
      if (!mark || mark.epoch !== top.epoch) continue;
      if (top.epoch !== now.epoch) {
        // The stream was replaced a whole round ago (its position expired, or Redis lost it) and
        // no publication of the new epoch came through since: one may have been missed.
        if (top.offset > 0) this.markLost(channel, sequence, 'epoch changed', top);
      } else if (mark.offset > now.offset) {
        await this.backfill(channel, sequence);
      }
    }
  }

  /** One publication from pub/sub (`exceptClient`: a connection that must not receive it). */
  push(publication: Publication, exceptClient?: string): void {
    const sequence = this.channels.get(publication.channel);
    const decision = classifyArrival(sequence && { position: sequence.position, recoverable: sequence.recoverable, holding: sequence.held !== undefined }, publication);
    switch (decision) {
      case 'untracked':
      case 'duplicate':
        return;
      case 'ephemeral':
        this.deliver(publication, exceptClient);
        return;
      case 'hold': {
        const held = sequence!.held!;
        held.push({ publication, exceptClient });
        if (held.length > this.maxHeld) {
          // History has been unreadable for too long: give up on the gap.
          sequence!.held = undefined;
          this.markLost(publication.channel, sequence!, `more than ${this.maxHeld} publications held while history was unavailable`, undefined);
        } else if (!sequence!.backfilling) {
          void this.backfill(publication.channel, sequence!); // the last read failed: retry
        }
        return;
      }
      case 'restart':
      // A new stream (its history was lost): clients see the new epoch on the publication itself
      // and treat it as `recovered: false`.
      case 'next':
        sequence!.position = { offset: publication.offset!, epoch: publication.epoch! };
        this.deliver(publication, exceptClient);
        return;
      case 'gap':
        sequence!.held = [{ publication, exceptClient }];
        void this.backfill(publication.channel, sequence!);
    }
  }

  /**
   * Read history from the delivered position to the stream's top and deliver what is missing,
   * then the held arrivals. A failed read (Redis slow or down) keeps the position and the held
   * arrivals: the next arrival or gap check tries again. Only history that cannot cover the gap
   * (a new epoch, trimmed) marks the channel lost.
   */
  private async backfill(name: string, sequence: ChannelSequence): Promise<void> {
    if (sequence.backfilling) return;
    sequence.backfilling = true;
    sequence.retry = false;
    sequence.held ??= [];
    const generation = sequence.generation;
    let failed = false;
    try {
      for (let page = 0; page < 1000; page++) {
        const from = sequence.position;
        if (!from) return; // reset meanwhile (marked lost): continue from the next publication seen
        let read: HistoryReadResult;
        try {
          read = await this.read(name, from, this.backfillPageSize);
        } catch (err) {
          if (this.channels.get(name) !== sequence || sequence.generation !== generation) return;
          if (err instanceof ChorusError && err.code === ErrorCode.UNRECOVERABLE_POSITION) {
            this.markLost(name, sequence, 'epoch changed', undefined);
            return;
          }
          failed = true;
          sequence.retry = true;
          return;
        }
        if (this.channels.get(name) !== sequence || sequence.generation !== generation) return;
        const step = classifyBackfillPage(from, read);
        if (step.type === 'lost') return this.markLost(name, sequence, step.reason, step.position);
        if (step.type === 'done') return;
        for (const publication of step.publications) {
          if (sequence.position && publication.offset! <= sequence.position.offset) continue;
          sequence.position = { offset: publication.offset!, epoch: publication.epoch! };
          this.deliver(publication);
        }
        if (!sequence.position || sequence.position.offset >= step.top) return;
      }
    } finally {
      sequence.backfilling = false;
      if (!failed) {
        const held = sequence.held ?? [];
        sequence.held = undefined;
        if (this.channels.get(name) === sequence) for (const h of held) this.push(h.publication, h.exceptClient);
      }
    }
  }

  private markLost(name: string, sequence: ChannelSequence, reason: string, position: StreamPosition | undefined): void {
    // Continue from the stream's present position (or from the next publication seen).
    sequence.position = position;
    sequence.retry = false;
    sequence.auditMark = undefined;
    sequence.generation++;
    this.lost(name, reason);
  }
}
