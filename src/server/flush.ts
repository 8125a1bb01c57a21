import type { Logger } from 'pino';
import { Disconnect } from '../protocol/index.js';
import { BatchCache, type FlushTotals } from './batch.js';
import type { Connection, FlushScheduler } from './connection.js';

/**
 * The flush scheduler: connections with queued frames are written once per turn of the event
 * loop, all in one pass, so a fan-out's frames reach each socket as one message and each
 * distinct batch is joined once (BatchCache).
 */
export class FlushLoop implements FlushScheduler {
  private readonly dirty = new Set<Connection>();
  private scheduled = false;

  constructor(
    private readonly logger: Logger,
    /** Called once per flush with what was written. */
    private readonly flushed: (totals: FlushTotals) => void,
  ) {}

  schedule(connection: Connection): void {
    this.dirty.add(connection);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flushAll());
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
  }
}
