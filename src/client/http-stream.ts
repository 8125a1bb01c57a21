/**
 * The client's side of the HTTP streaming fallback (docs/PROTOCOL.md section 15), shaped like a
 * WebSocket so the client's state machine drives it unchanged: `GET <stream URL>` opens a session
 * whose response streams newline-separated JSON frames; `send` queues frames that go out as
 * `POST <stream URL>/<session>?seq=<n>`, one request at a time, batched. Isomorphic: uses the
 * standard `fetch` and streams.
 */
import { refusalFrom, type Refusal, type ReportsRefusal } from './refusal.js';
import type { WebSocketLike } from './types.js';

/** The `fetch` surface used (the standard one). */
export type FetchLike = (
  url: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<{
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  body: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(): Promise<void> } } | null;
  text(): Promise<string>;
}>;

/** Largest POST body the client builds from queued frames, in bytes (a larger single frame goes alone). */
export const MAX_POST_BYTES = 16 * 1024;
/** Attempts of one POST on network errors (same seq: the server drops repeats). */
const POST_ATTEMPTS = 3;

export class HttpStreamSocket implements WebSocketLike, ReportsRefusal {
  readyState = 0;
  readonly protocol = '';
  binaryType?: string;
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: any) => void) | null = null;
  onclose: ((event: any) => void) | null = null;
  onerror: ((event: any) => void) | null = null;
  /** Told when the server refuses to open the stream (its status and, on a 503, `Retry-After`), before `onerror`. */
  onrefused: ((refusal: Refusal) => void) | null = null;
  readonly #abort = new AbortController();
  readonly #fetch: FetchLike;
  readonly #base: string;
  #session = '';
  #seq = 0;
  #outbox: string[] = [];
  #posting = false;
  #disconnectCode: number | undefined;

  /** @param url the stream URL with its `?token=` */
  constructor(url: string, fetchImpl: FetchLike) {
    this.#fetch = fetchImpl;
    const parsed = new URL(url);
    this.#base = `${parsed.origin}${parsed.pathname}`;
    void this.#run(url);
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) throw new Error('the stream is not open');
    if (typeof data !== 'string') throw new TypeError('the HTTP stream carries JSON text only');
    this.#outbox.push(data);
    void this.#pump();
  }

  close(): void {
    if (this.readyState === 3) return;
    this.#finish(1000, '');
  }

  async #run(url: string): Promise<void> {
    let reader;
    try {
      const res = await this.#fetch(url, { headers: { accept: 'application/x-ndjson' }, signal: this.#abort.signal });
      const session = res.headers.get('chorus-session');
      if (!res.ok || res.body === null || session === null) {
        const text = await res.text().catch(() => '');
        if (!res.ok && this.readyState !== 3) this.onrefused?.({ ...refusalFrom(res.status, res.headers.get('retry-after')), detail: text.slice(0, 200) });
        return this.#fail(`HTTP ${res.status} ${text.slice(0, 200)}`);
      }
      this.#session = session;
      reader = res.body.getReader();
    } catch (err) {
      return this.#fail(String((err as Error)?.message ?? err));
    }
    if (this.readyState === 3) return;
    this.readyState = 1;
    this.onopen?.({});
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.readyState === 3) break;
        buffer += decoder.decode(value, { stream: true });
        const end = buffer.lastIndexOf('\n');
        if (end < 0) continue;
        const lines = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        this.#peekDisconnect(lines);
        this.onmessage?.({ data: lines });
      }
    } catch {
      // The stream was cut: closed below.
    }
    this.#finish(this.#disconnectCode ?? 1006, '');
  }

  /** Remember the code of a `disconnect` frame: the stream's end carries no close code of its own. */
  #peekDisconnect(lines: string): void {
    if (!lines.includes('"disconnect"')) return;
    for (const line of lines.split('\n')) {
      if (!line.startsWith('{"event":"disconnect"')) continue;
      try {
        const code = (JSON.parse(line) as { data?: { code?: unknown } }).data?.code;
        if (typeof code === 'number') this.#disconnectCode = code;
      } catch {
        // not a frame: the client reports it
      }
    }
  }

  async #pump(): Promise<void> {
    if (this.#posting || this.#outbox.length === 0 || this.readyState !== 1) return;
    this.#posting = true;
    let size = 0;
    let count = 0;
    while (count < this.#outbox.length && (count === 0 || size + this.#outbox[count]!.length + 1 <= MAX_POST_BYTES)) {
      size += this.#outbox[count]!.length + 1;
      count++;
    }
    const body = this.#outbox.splice(0, count).join('\n');
    const seq = this.#seq++;
    let failure: string | undefined;
    for (let attempt = 1; attempt <= POST_ATTEMPTS; attempt++) {
      try {
        const res = await this.#fetch(`${this.#base}/${this.#session}?seq=${seq}`, {
          method: 'POST',
          // text/plain keeps a cross-origin POST a "simple" request (no preflight).
          headers: { 'content-type': 'text/plain;charset=UTF-8' },
          body,
          signal: this.#abort.signal,
        });
        failure = res.ok ? undefined : `POST answered HTTP ${res.status}`;
        break;
      } catch (err) {
        failure = String((err as Error)?.message ?? err);
        if (this.readyState !== 1) break;
      }
    }
    this.#posting = false;
    if (failure !== undefined) {
      // The session is gone (404), the message too big (413: the stream brings the 1009), or the network failed.
      if (this.readyState === 1) this.onerror?.({ message: failure });
      return;
    }
    void this.#pump();
  }

  #fail(message: string): void {
    if (this.readyState === 3) return;
    this.onerror?.({ message });
    this.#finish(1006, message);
  }

  #finish(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.#abort.abort();
    this.onclose?.({ code, reason });
  }
}
