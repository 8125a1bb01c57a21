/** The outbox of one process (memory engine): every local change is a cluster-wide one. */
import { randomUUID } from 'node:crypto';
import type { Outbox, QueuedEvent, WebhookEvent, WebhookQueue } from './types.js';

/** Events held per target while it is down; past this the oldest are dropped (and counted by the sender's log). */
export const MEMORY_OUTBOX_MAX_EVENTS = 100_000;

class MemoryQueue implements WebhookQueue {
  readonly items: QueuedEvent[] = [];
  private taken = new Set<string>();
  private wake: (() => void) | undefined;
  private closed = false;
  dropped = 0;

  push(event: WebhookEvent): void {
    if (this.items.length >= MEMORY_OUTBOX_MAX_EVENTS) {
      this.items.shift();
      this.dropped++;
    }
    this.items.push({ handle: event.id, event });
    this.wake?.();
  }

  async take(max: number): Promise<QueuedEvent[]> {
    for (let waited = false; ; waited = true) {
      if (this.closed) return [];
      const free = this.items.filter((i) => !this.taken.has(i.handle)).slice(0, max);
      if (free.length > 0 || waited) {
        for (const i of free) this.taken.add(i.handle);
        return free;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => resolve(), 1000);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  async keep(): Promise<void> {}

  async ack(items: readonly QueuedEvent[]): Promise<void> {
    const done = new Set(items.map((i) => i.handle));
    for (let i = this.items.length - 1; i >= 0; i--) if (done.has(this.items[i]!.handle)) this.items.splice(i, 1);
    for (const h of done) this.taken.delete(h);
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }
}

export class MemoryOutbox implements Outbox {
  private readonly queues = new Map<string, MemoryQueue>();

  async publish(event: WebhookEvent): Promise<void> {
    for (const queue of this.queues.values()) queue.push(event);
  }

  async localChannel(channel: string, occupied: boolean, now: number): Promise<void> {
    await this.publish({ id: randomUUID(), type: occupied ? 'channel.occupied' : 'channel.vacated', time: now, channel });
  }

  async maintain(): Promise<void> {}

  queue(id: string): WebhookQueue {
    let queue = this.queues.get(id);
    if (!queue) this.queues.set(id, (queue = new MemoryQueue()));
    return queue;
  }

  async close(): Promise<void> {
    for (const queue of this.queues.values()) queue.close();
  }
}
