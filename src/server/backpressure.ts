/**
 * The send-queue policies of namespaces whose `backpressure` is not `'disconnect'`
 * (docs/PROTOCOL.md, "Backpressure"). A connection keeps, next to its queue of encoded frames,
 * a tag per frame saying which publication it carries; when a policy publication does not fit,
 * `relieve` decides which queued publications to skip and where the `skipped` notices go.
 * Pure functions over arrays, plus `CongestionWatch`, the one shared timer that retries writes
 * held back while a transport is congested.
 */
import type { SkippedData } from '../protocol/index.js';
import type { Publication } from '../engines/types.js';
import type { BackpressurePolicy } from './options.js';
import type { FramePosition } from './transport.js';

/** A queued publication of a policy namespace. */
export interface PublicationTag {
  kind: 'publication';
  policy: Exclude<BackpressurePolicy, 'disconnect'>;
  channel: string;
  offset: number;
  epoch: string;
  key: string | undefined;
}

/** A queued `skipped` notice (merged with the next skip of the same channel when adjacent). */
export interface SkippedTag {
  kind: 'skipped';
  data: SkippedData;
}

/** What a queued frame is, for the policies; undefined for every other frame. */
export type QueueTag = PublicationTag | SkippedTag | undefined;

export function publicationTag(publication: Publication, policy: PublicationTag['policy']): PublicationTag {
  return {
    kind: 'publication',
    policy,
    channel: publication.channel,
    offset: publication.offset!,
    epoch: publication.epoch!,
    key: publication.key,
  };
}

export interface QueueContents {
  frames: Uint8Array[];
  tags: QueueTag[];
  bytes: number;
  /** Offsets skipped by this relief, for logs. */
  skipped: number;
}

/**
 * Make a queue that has `frames`/`tags` plus one new policy publication fit in `budget` bytes:
 * first every `latest-per-key` publication that has a newer queued one with the same channel
 * and key is skipped; then, while still over budget, the oldest `drop-oldest` publications
 * (the new one included, when it is the only one left). Each run of skipped offsets of a channel
 * becomes one `skipped` notice at the place of its first publication, so the client reads
 * notices and publications in offset order. Notices do not count against the budget. Returns
 * undefined when even that does not fit (publications without a key, or other frames, fill the
 * budget): the caller disconnects. `encodeSkipped` encodes a `skipped` frame in the
 * connection's codec.
 */
export function relieve(
  frames: Uint8Array[],
  tags: QueueTag[],
  added: { frame: Uint8Array; tag: PublicationTag },
  budget: number,
  encodeSkipped: (data: SkippedData) => Uint8Array,
): QueueContents | undefined {
  const allFrames = [...frames, added.frame];
  const allTags = [...tags, added.tag];
  const skip = new Array<boolean>(allFrames.length).fill(false);
  const newest = new Set<string>();
  for (let i = allTags.length - 1; i >= 0; i--) {
    const tag = allTags[i];
    if (tag?.kind !== 'publication' || tag.policy !== 'latest-per-key' || tag.key === undefined) continue;
    const id = `${tag.channel}\u0000${tag.key}`;
    if (newest.has(id)) skip[i] = true;
    else newest.add(id);
  }
  let bytes = 0;
  for (let i = 0; i < allFrames.length; i++) if (!skip[i] && allTags[i]?.kind !== 'skipped') bytes += allFrames[i]!.length;
  for (let i = 0; i < allFrames.length && bytes > budget; i++) {
    const tag = allTags[i];
    if (skip[i] || tag?.kind !== 'publication' || tag.policy !== 'drop-oldest') continue;
    skip[i] = true;
    bytes -= allFrames[i]!.length;
  }
  const out: QueueContents = { frames: [], tags: [], bytes: 0, skipped: 0 };
  /** channel -> index in `out` of its last entry (publication or notice). */
  const last = new Map<string, number>();
  for (let i = 0; i < allFrames.length; i++) {
    const tag = allTags[i];
    if (tag === undefined) {
      push(out, allFrames[i]!, undefined);
      continue;
    }
    const channel = tag.kind === 'skipped' ? tag.data.channel : tag.channel;
    if (tag.kind === 'skipped' || !skip[i]) {
      last.set(channel, out.frames.length);
      push(out, allFrames[i]!, tag.kind === 'skipped' ? { kind: 'skipped', data: { ...tag.data } } : tag);
      continue;
    }
    out.skipped++;
    const at = last.get(channel);
    const previous = at === undefined ? undefined : out.tags[at];
    if (previous?.kind === 'skipped' && previous.data.epoch === tag.epoch && previous.data.to + 1 === tag.offset) {
      previous.data.to = tag.offset;
      continue;
    }
    last.set(channel, out.frames.length);
    push(out, new Uint8Array(0), { kind: 'skipped', data: { channel, epoch: tag.epoch, from: tag.offset, to: tag.offset } });
  }
  // Encode the notices (new or extended) and total the bytes. Notices do not count against the
  // budget: there is at most one per run of skipped offsets, so they are bounded by what is kept.
  out.bytes = 0;
  let notices = 0;
  for (let i = 0; i < out.frames.length; i++) {
    const tag = out.tags[i];
    if (tag?.kind === 'skipped') {
      out.frames[i] = encodeSkipped(tag.data);
      notices += out.frames[i]!.length;
    }
    out.bytes += out.frames[i]!.length;
  }
  return out.bytes - notices > budget ? undefined : out;
}

function push(out: QueueContents, frame: Uint8Array, tag: QueueTag): void {
  out.frames.push(frame);
  out.tags.push(tag);
}

/** What the watch retries: a connection whose writes are held while its transport is congested. */
export interface HeldWriter {
  retryFlush(): void;
}

/**
 * One shared timer for every connection whose writes are held back (its transport holds half of
 * its send-queue budget): every `intervalMs` each is asked to try again, and re-registers itself
 * if still congested. The timer runs only while someone is held and is unref'd.
 */
export class CongestionWatch {
  private readonly held = new Set<HeldWriter>();
  private timer: NodeJS.Timeout | undefined;

  /** @param intervalMs time between two retries, in ms. Default 20. */
  constructor(private readonly intervalMs = 20) {}

  hold(writer: HeldWriter): void {
    this.held.add(writer);
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  release(writer: HeldWriter): void {
    this.held.delete(writer);
    if (this.held.size === 0) this.stop();
  }

  private tick(): void {
    const writers = [...this.held];
    this.held.clear();
    for (const writer of writers) writer.retryFlush();
    if (this.held.size === 0) this.stop();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The watch shared by the connections of a process unless their host provides one. */
export const sharedCongestionWatch = new CongestionWatch();

/**
 * The positions of a queue after `relieve` (SSE needs them for its event ids): kept frames keep
 * theirs, a `skipped` notice moves its channel to the last skipped offset.
 */
export function positionsAfterRelief(
  frames: Uint8Array[],
  positions: Array<FramePosition | undefined>,
  added: Uint8Array,
  addedPosition: FramePosition | undefined,
  relieved: { frames: Uint8Array[]; tags: QueueTag[] },
): Array<FramePosition | undefined> {
  const byFrame = new Map<Uint8Array, FramePosition | undefined>();
  frames.forEach((frame, i) => byFrame.set(frame, positions[i]));
  byFrame.set(added, addedPosition);
  return relieved.frames.map((frame, i) => {
    const tag = relieved.tags[i];
    if (tag?.kind === 'skipped') return { channel: tag.data.channel, offset: tag.data.to, epoch: tag.data.epoch };
    if (tag?.kind === 'publication') return { channel: tag.channel, offset: tag.offset, epoch: tag.epoch };
    return byFrame.get(frame);
  });
}
