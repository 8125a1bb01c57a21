/**
 * Stream position tracking for one subscription (docs/PROTOCOL.md section 6.1), as a pure
 * unit: no I/O and no timers. The subscription feeds it live messages and history pages and
 * does what the returned `Step` says (deliver these messages, fetch history since here,
 * report a failed recovery).
 */
import type { HistoryResult, MessageData, SkippedData, StreamPosition } from '../protocol/index.js';

/** What to do with one live message, given the current position. */
export type MessageDecision =
  /** No offset (ephemeral): deliver, position unchanged. */
  | 'ephemeral'
  /** offset == position + 1, same epoch (or no position yet): deliver and advance. */
  | 'next'
  /** offset <= position, same epoch: already delivered, drop. */
  | 'duplicate'
  /** offset > position + 1, same epoch: publications are missing, recover them from history. */
  | 'gap'
  /** Another epoch: the stream's history was lost; recovery is impossible. */
  | 'epoch-changed';

export function classifyMessage(
  position: StreamPosition | undefined,
  message: Pick<MessageData, 'offset' | 'epoch'>,
): MessageDecision {
  if (message.offset === undefined || message.epoch === undefined) return 'ephemeral';
  if (position === undefined) return 'next';
  if (message.epoch !== position.epoch) return 'epoch-changed';
  if (message.offset <= position.offset) return 'duplicate';
  if (message.offset === position.offset + 1) return 'next';
  return 'gap';
}

/** The outcome of feeding the tracker. */
export interface Step {
  /** Messages to deliver to the app, in this order. */
  deliver: MessageData[];
  /** Publications were lost for good (epoch change, gap that history cannot fill): tell the app. */
  recoveryFailed: boolean;
  /** Fetch `history` with this `since` and feed the result to `applyHistory`. */
  fetchSince?: StreamPosition;
}

/** Default and maximum `limit` of one history page (the server caps it at 100). */
export const HISTORY_PAGE_LIMIT = 100;

export class PositionTracker {
  #position: StreamPosition | undefined;
  /** While recovering a gap: live messages received meanwhile, sorted by offset, unique. */
  #buffer: MessageData[] = [];
  /** While recovering a gap: the highest offset known to exist that must be delivered before the buffer. */
  #gapEnd = 0;
  #recovering = false;

  constructor(position?: StreamPosition) {
    this.#position = position === undefined ? undefined : { ...position };
  }

  /** The position after the last delivered publication, if known. */
  get position(): StreamPosition | undefined {
    return this.#position === undefined ? undefined : { ...this.#position };
  }

  /** Whether a gap is being recovered (a history fetch is expected). */
  get recovering(): boolean {
    return this.#recovering;
  }

  /** Set the position (subscribe ack) and forget any recovery in progress. */
  reset(position: StreamPosition | undefined): void {
    this.#position = position === undefined ? undefined : { offset: position.offset, epoch: position.epoch };
    this.abortRecovery();
  }

  /** Forget a recovery in progress (the connection dropped; resubscribing with `since` recovers instead). */
  abortRecovery(): void {
    this.#buffer = [];
    this.#gapEnd = 0;
    this.#recovering = false;
  }

  /** Feed one live message. */
  receive(message: MessageData): Step {
    const decision = classifyMessage(this.#position, message);
    if (decision === 'ephemeral') return step([message]);
    const offset = message.offset as number;
    const epoch = message.epoch as string;
    if (this.#recovering) {
      if (decision === 'epoch-changed') {
        const failed = this.failRecovery();
        const next = this.receive(message);
        return { deliver: [...failed.deliver, ...next.deliver], recoveryFailed: true };
      }
      if (decision !== 'duplicate') this.#buffer = insertSorted(this.#buffer, message);
      return step([]);
    }
    switch (decision) {
      case 'next':
        this.#position = { offset, epoch };
        return step([message]);
      case 'duplicate':
        return step([]);
      case 'epoch-changed':
        this.#position = { offset, epoch };
        return { deliver: [message], recoveryFailed: true };
      case 'gap':
        this.#recovering = true;
        this.#buffer = [message];
        this.#gapEnd = offset - 1;
        return { deliver: [], recoveryFailed: false, fetchSince: this.position as StreamPosition };
    }
  }

  /**
   * Feed a `skipped` notice: offsets `from`..`to` were left out on purpose (a backpressure
   * policy), so they are not a gap. Outside a recovery, a notice that starts at or before the
   * next expected offset moves the position to `to`; one further ahead is itself a gap (fetched
   * from history up to `from - 1`, then skipped). During a recovery the notice is ignored:
   * history delivers those offsets if it still has them.
   */
  skip(notice: Pick<SkippedData, 'from' | 'to' | 'epoch'>): Step {
    const position = this.#position;
    if (position === undefined) {
      this.#position = { offset: notice.to, epoch: notice.epoch };
      return step([]);
    }
    if (this.#recovering || notice.epoch !== position.epoch || notice.to <= position.offset) return step([]);
    if (notice.from <= position.offset + 1) {
      this.#position = { offset: notice.to, epoch: notice.epoch };
      return step([]);
    }
    return this.recoverTo({ offset: notice.from - 1, epoch: notice.epoch });
  }

  /**
   * Start recovering up to `target` (inclusive) without a live message, e.g. a server-side
   * subscription re-announced at a later offset after a reconnect. Same epoch and ahead of the
   * position: a history fetch; another epoch: a failed recovery and a jump.
   */
  recoverTo(target: StreamPosition): Step {
    const position = this.#position;
    if (position === undefined) {
      this.reset(target);
      return step([]);
    }
    if (target.epoch !== position.epoch) {
      this.reset(target);
      return { deliver: [], recoveryFailed: true };
    }
    if (target.offset <= position.offset) return step([]);
    if (this.#recovering) {
      this.#gapEnd = Math.max(this.#gapEnd, target.offset);
      return step([]);
    }
    this.#recovering = true;
    this.#gapEnd = target.offset;
    return { deliver: [], recoveryFailed: false, fetchSince: { ...position } };
  }

  /** Feed one history page fetched with `since` = the `fetchSince` of the previous step. */
  applyHistory(result: Pick<HistoryResult, 'publications' | 'epoch'>): Step {
    const position = this.#position;
    if (!this.#recovering || position === undefined) return step([]);
    if (result.epoch !== position.epoch) return this.failRecovery();
    const deliver: MessageData[] = [];
    let progressed = false;
    for (const publication of result.publications) {
      const decision = classifyMessage(this.#position, publication);
      if (decision === 'duplicate' || decision === 'ephemeral') continue;
      if (decision !== 'next') {
        // A hole inside history (retention trimmed it) or another epoch: cannot fill the gap.
        const failed = this.failRecovery();
        return { deliver: [...deliver, ...failed.deliver], recoveryFailed: true };
      }
      this.#position = { offset: publication.offset as number, epoch: publication.epoch as string };
      deliver.push(publication);
      progressed = true;
    }
    deliver.push(...this.#drainBuffer());
    if (this.#done()) {
      this.abortRecovery();
      return step(deliver);
    }
    if (!progressed) {
      const failed = this.failRecovery();
      return { deliver: [...deliver, ...failed.deliver], recoveryFailed: true };
    }
    return { deliver, recoveryFailed: false, fetchSince: this.position as StreamPosition };
  }

  /**
   * Give up recovering (history failed or cannot fill the gap): jump over the gap, deliver the
   * buffered messages in order and report the loss.
   */
  failRecovery(): Step {
    if (!this.#recovering || this.#position === undefined) return step([]);
    const buffered = this.#buffer;
    const first = buffered[0];
    const jumpTo = Math.max(this.#gapEnd, first !== undefined ? (first.offset as number) - 1 : 0);
    if (jumpTo > this.#position.offset) {
      this.#position = { offset: jumpTo, epoch: first?.epoch ?? this.#position.epoch };
    }
    const deliver: MessageData[] = [];
    for (const message of buffered) {
      if (message.epoch !== this.#position.epoch || (message.offset as number) <= this.#position.offset) continue;
      this.#position = { offset: message.offset as number, epoch: this.#position.epoch };
      deliver.push(message);
    }
    this.abortRecovery();
    return { deliver, recoveryFailed: true };
  }

  /** Deliver the buffered messages that now follow the position; drop the ones already covered. */
  #drainBuffer(): MessageData[] {
    const out: MessageData[] = [];
    while (this.#buffer.length > 0 && this.#position !== undefined) {
      const head = this.#buffer[0] as MessageData;
      const decision = classifyMessage(this.#position, head);
      if (decision === 'duplicate') {
        this.#buffer.shift();
      } else if (decision === 'next') {
        this.#buffer.shift();
        this.#position = { offset: head.offset as number, epoch: head.epoch as string };
        out.push(head);
      } else {
        break;
      }
    }
    return out;
  }

  #done(): boolean {
    return this.#buffer.length === 0 && (this.#position?.offset ?? 0) >= this.#gapEnd;
  }
}

function step(deliver: MessageData[]): Step {
  return { deliver, recoveryFailed: false };
}

function insertSorted(buffer: MessageData[], message: MessageData): MessageData[] {
  const offset = message.offset as number;
  if (buffer.some((m) => m.offset === offset)) return buffer;
  const out = [...buffer, message];
  out.sort((a, b) => (a.offset as number) - (b.offset as number));
  return out;
}
