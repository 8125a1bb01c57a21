/**
 * Requests of one kind made during one turn of the event loop, sent to Redis together at its
 * end: a burst of handshakes, each arriving in its own I/O callback, costs one command (one
 * Lua call, one SUBSCRIBE) for all of them instead of one each. ioredis' auto-pipelining alone
 * groups only the commands issued within one callback (it flushes on `process.nextTick`).
 */
export class TurnBatch<T, R> {
  private pending: Array<{ item: T; resolve: (result: R) => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;

  /**
   * @param send sends the items as one command; resolves with one result per item, in order.
   *   A rejection (or a reply of the wrong length) fails every item of the batch.
   * @param maxItems the most items in one command; a fuller batch is sent at once
   */
  constructor(
    private readonly send: (items: T[]) => Promise<R[]>,
    private readonly maxItems = 500,
  ) {}

  /** Queue an item; resolves with its result when the batch it joined is answered. */
  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.pending.length >= this.maxItems) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate: after every I/O callback of this turn (each handshake's request) has run.
        setImmediate(this.flushScheduled);
      }
    });
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private flush(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let sent: Promise<R[]>;
    try {
      sent = this.send(batch.map((b) => b.item));
    } catch (err) {
      for (const b of batch) b.reject(err);
      return;
    }
    sent.then(
      (results) => {
        if (results.length !== batch.length) {
          const err = new Error(`batched reply has ${results.length} results for ${batch.length} requests`);
          for (const b of batch) b.reject(err);
          return;
        }
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
      },
      (err: unknown) => {
        for (const b of batch) b.reject(err);
      },
    );
  }
}
