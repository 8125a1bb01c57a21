/**
 * Which transport the next connection attempt uses. The first in `transports` (normally the
 * WebSocket) is tried first; after `failuresBeforeFallback` attempts in a row that end before
 * the server's `connected` frame (blocked, a proxy stripping the upgrade, 1006 before open), the
 * next one is used (see `failedBeforeConnected`). Once connected over a fallback, the client is told to try the WebSocket again
 * after `websocketRetryMs`. No I/O and no timers: the client acts on what it returns.
 */

/** `websocket`, or the HTTP streaming emulation (a streaming response down, POSTs up). */
export type TransportName = 'websocket' | 'http-stream';

export const TRANSPORT_NAMES: readonly TransportName[] = ['websocket', 'http-stream'];

export class TransportChooser {
  #index = 0;
  #failures = 0;

  constructor(
    readonly transports: readonly TransportName[],
    private readonly failuresBeforeFallback: number,
    readonly websocketRetryMs: number,
  ) {
    if (transports.length === 0 || transports.some((t) => !TRANSPORT_NAMES.includes(t)) || new Set(transports).size !== transports.length) {
      throw new TypeError(`transports must be a non-empty list of distinct names from ${TRANSPORT_NAMES.join(', ')}`);
    }
  }

  /** The transport of the next attempt. */
  get current(): TransportName {
    return this.transports[this.#index]!;
  }

  /** Whether the current transport is a fallback (not the first choice). */
  get onFallback(): boolean {
    return this.#index > 0;
  }

  /** The attempt reached `connected`. */
  connected(): void {
    this.#failures = 0;
  }

  /**
   * The attempt ended before `connected` (or could not start). The first transport gets
   * `failuresBeforeFallback` attempts in a row, each fallback one; then the next is tried, and
   * after the last the first again (a server that is down fails on every transport, so it is
   * not mistaken for a blocked WebSocket for long).
   */
  failedBeforeConnected(): void {
    this.#failures++;
    if (this.#failures >= (this.#index === 0 ? this.failuresBeforeFallback : 1)) {
      this.#index = (this.#index + 1) % this.transports.length;
      this.#failures = 0;
    }
  }

  /** Go back to the first transport (after `websocketRetryMs` on a fallback). */
  retryFirst(): void {
    this.#index = 0;
    this.#failures = 0;
  }
}
