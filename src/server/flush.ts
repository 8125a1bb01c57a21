import type { Logger } from 'pino';
import { Disconnect } from '../protocol/index.js';
import { BatchCache, type FlushTotals } from './batch.js';
import type { Connection, FlushScheduler } from './connection.js';

/** A flush within this many ms before the next frame means a backlog: batch on the next turn. */
export const BACKLOG_WINDOW_MS = 1;

/**
 * The flush scheduler: connections with queued frames are written once per turn of the event
 * loop, all in one pass, so a fan-out's frames reach each socket as one message and each
 * distinct batch is joined once (BatchCache).
 *
 * Batching only adds latency when there is a backlog to batch: when the last flush was more than
 * BACKLOG_WINDOW_MS ago (a lone publication on a quiet node) the flush runs as soon as the
 * current fan-out has finished (a microtask), not after the rest of the turn's I/O. While flushes
 * follow each other closely (saturated fan-out) they wait for the next turn (setImmediate), so
 * the publications of one turn still go out as one message per socket.
 */
export class FlushLoop implements FlushScheduler {
  private readonly dirty = new Set<Connection>();
  private scheduled = false;
  private lastFlushAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly logger: Logger,
    /** Called once per flush with what was written. */
    private readonly flushed: (totals: FlushTotals) => void,
    /** The clock, ms (the server's injected clock). */
    private readonly now: () => number = () => Number.NEGATIVE_INFINITY,
  ) {}

  schedule(connection: Connection): void {
    this.dirty.add(connection);
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.now() - this.lastFlushAt > BACKLOG_WINDOW_MS) queueMicrotask(() => this.flushAll());
    else setImmediate(() => this.flushAll());
  }

  sent(bytes: number): void {
    this.flushed({ bytes, frames: 1, messages: 1 });
  }

  /** Forget a closed connection. */
  forget(connection: Connection): void {
    this.dirty.delete(connection);
  }

  /** Write every connection's queued frames. */
  flushAll(): void {
    this.scheduled = false;
    const dirty = [...this.dirty];
    this.dirty.clear();
    const batches = new BatchCache();
    const totals: FlushTotals = { bytes: 0, frames: 0, messages: 0 };
    for (const connection of dirty) {
      try {
        connection.flush(batches, totals);
      } catch (err) {
        this.logger.warn({ err, client: connection.id }, 'write failed');
        connection.terminate(Disconnect.writeFailed);
      }
    }
    if (totals.frames > 0) this.flushed(totals);
    this.lastFlushAt = this.now();
  }
}
