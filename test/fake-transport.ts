/**
 * An in-memory Transport and a Connection on it, for unit tests of the send queue, batching
 * and backpressure (no sockets): what the connection writes lands in `transport.sent`.
 */
import assert from 'node:assert/strict';
import { JSON_CODEC } from '../src/protocol/index.js';
import { Connection, type ConnectionHost } from '../src/server/connection.js';
import type { LimitReporter } from '../src/server/limit-reporter.js';
import type { Transport, TransportListener } from '../src/server/transport.js';

export class FakeTransport implements Transport {
  readonly kind = 'fake';
  readonly canPing = false;
  readonly bidirectional = true;
  readonly codec = JSON_CODEC;
  isOpen = true;
  isPaused = false;
  bufferedAmount = 0;
  readonly sent: Buffer[] = [];
  closedWith: { code: number; reason: string } | undefined;
  terminated = false;
  listen(_listener: TransportListener): void {}
  send(message: Uint8Array, binary: boolean): void {
    assert.equal(binary, false, 'frames go out as text');
    this.sent.push(Buffer.isBuffer(message) ? message : Buffer.from(message));
  }
  ping(): void {}
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.isOpen = false;
  }
  terminate(): void {
    this.terminated = true;
    this.isOpen = false;
  }
  pause(): void {
    this.isPaused = true;
  }
  resume(): void {
    this.isPaused = false;
  }
  /** Every message written, as text. */
  texts(): string[] {
    return this.sent.map((b) => b.toString('utf8'));
  }
  /** Every frame written, parsed (batched messages split at the newlines). */
  frames(): Array<{ event: string; data: any }> {
    return this.sent.flatMap((b) => b.toString('utf8').split('\n').map((t) => JSON.parse(t)));
  }
}

/**
 * A connection of user `ada` on a FakeTransport: flushes are only recorded in `scheduled`
 * (call `connection.flush()` yourself), limit reports in `reports`.
 */
export function fakeConnection(limits: Partial<ConnectionHost['limits']> = {}, host: Partial<Pick<ConnectionHost, 'congestion'>> = {}) {
  const transport = new FakeTransport();
  const scheduled: Connection[] = [];
  const reports: string[] = [];
  const reporter: LimitReporter = {
    limitHit: (limit) => reports.push(`limit:${limit}`),
    slowConsumer: () => reports.push('slowConsumer'),
    ephemeralDropped: () => reports.push('ephemeralDropped'),
  };
  const connectionHost: ConnectionHost = {
    limits: { maxQueuedBytes: 1000, maxMessageBytes: 1000, ratePerSecond: 50, rateBurst: 100, maxFaults: 10, faultWindowMs: 10000, maxPendingFrames: 256, resumePendingFrames: 32, ...limits },
    now: () => 1_000_000,
    flushes: { schedule: (c) => scheduled.push(c) },
    reporter,
    ...host,
  };
  const connection = new Connection(transport, { user: 'ada' }, connectionHost, 'c_test');
  return { transport, connection, scheduled, reports };
}
