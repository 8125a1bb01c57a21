/** A minimal SSE reader for tests: node:http, events parsed as the EventSource spec does. */
import http from 'node:http';
import { withTimeout } from './helpers.js';

export interface SseEvent {
  id: string | undefined;
  /** The parsed JSON frame of `data:`. */
  frame: any;
  raw: string;
}

export class SseReader {
  readonly events: SseEvent[] = [];
  comments = 0;
  /** The last id seen, as an EventSource remembers it. */
  lastEventId = '';
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  body = '';
  ended = false;
  readonly done: Promise<void>;
  private buffer = '';
  private waiters: Array<() => void> = [];
  private req: http.ClientRequest | undefined;
  res: http.IncomingMessage | undefined;

  constructor(url: string, headers: Record<string, string> = {}, options: { paused?: boolean } = {}) {
    this.done = new Promise((resolve) => {
      this.req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
        this.res = res;
        this.status = res.statusCode ?? 0;
        this.headers = res.headers;
        if (options.paused) res.pause();
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (this.status !== 200) this.body += chunk;
          else this.feed(chunk);
        });
        res.on('end', () => {
          this.ended = true;
          this.wake();
          resolve();
        });
        res.on('close', () => {
          this.ended = true;
          this.wake();
          resolve();
        });
        this.wake();
      });
      this.req.on('error', () => {
        this.ended = true;
        this.wake();
        resolve();
      });
    });
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments++;
        else if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (id !== undefined) this.lastEventId = id;
      if (data.length > 0) this.events.push({ id, frame: JSON.parse(data.join('\n')), raw: data.join('\n') });
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Wait until `check()` holds (re-checked on every event, comment or end). */
  async until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
    await withTimeout(
      (async () => {
        while (!check()) {
          if (this.ended && !check()) throw new Error(`stream ended while waiting for ${what}`);
          await new Promise<void>((resolve) => this.waiters.push(resolve));
        }
      })(),
      ms,
      what,
    );
  }

  /** Publications received for a channel. */
  messages(channel: string): any[] {
    return this.events.filter((e) => e.frame.event === 'message' && e.frame.data.channel === channel).map((e) => e.frame.data);
  }

  close(): void {
    this.req?.destroy();
  }
}

export function sseUrl(base: string, channels: string[], params: Record<string, string> = {}): string {
  const query = new URLSearchParams();
  for (const c of channels) query.append('channel', c);
  for (const [k, v] of Object.entries(params)) query.set(k, v);
  return `${base}/sse?${query.toString()}`;
}
