/**
 * Calls to the application's backend: HTTP POST of a JSON body to the kind's endpoint over
 * keep-alive agents, at most `maxInFlight` at once with at most `maxQueued` waiting, each bounded
 * by the endpoint's `timeoutMs` (waiting included). The answer must be HTTP 200 with
 * `{"result": {...}}` (allow) or `{"error": {"code", "message"}}` (deny with that code);
 * anything else, a timeout or a connection failure is `UNAVAILABLE` and is logged naming what
 * was wrong (never the body, which may hold cookies or tokens).
 */
import type { Logger } from 'pino';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { ChorusError, ErrorCode } from '../protocol/index.js';
import { Agents, post, PostError } from './http-post.js';
import { PROXY_DEFAULTS, type ProxyEndpoint, type ProxyKind, type ProxyOptions } from './options.js';

/** Error codes a backend may deny with: upper-case letters, digits and `_`, 1-64 characters. */
const CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;
/** Longest denial message passed on to the client, in characters. */
const MAX_MESSAGE_CHARS = 500;

export type Outcome = 'allow' | 'deny' | 'unavailable' | 'malformed';

/** What an answer was: the result object, a denial, or malformed (with the problem, for the log). */
export type Answer = { result: Record<string, unknown> } | { error: ChorusError } | { malformed: string };

/** Checks the answer's outer shape (the kind-specific fields of `result` are checked by the caller's user). */
export function parseAnswer(status: number, body: string): Answer {
  if (status !== 200) return { malformed: `HTTP status ${status} (expected 200)` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { malformed: 'the body is not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { malformed: 'the body is not a JSON object' };
  const answer = parsed as Record<string, unknown>;
  const hasResult = 'result' in answer;
  const hasError = 'error' in answer;
  if (hasResult === hasError) return { malformed: 'the body must have exactly one of "result" and "error"' };
  if (hasResult) {
    const result = answer.result;
    if (typeof result !== 'object' || result === null || Array.isArray(result)) return { malformed: '"result" is not an object' };
    return { result: result as Record<string, unknown> };
  }
  const error = answer.error;
  if (typeof error !== 'object' || error === null || Array.isArray(error)) return { malformed: '"error" is not an object' };
  const { code, message } = error as Record<string, unknown>;
  if (typeof code !== 'string' || !CODE_PATTERN.test(code)) return { malformed: '"error.code" is not an upper-case code like "PERMISSION_DENIED"' };
  if (message !== undefined && typeof message !== 'string') return { malformed: '"error.message" is not a string' };
  return { error: new ChorusError(code, (message ?? 'denied by the backend').slice(0, MAX_MESSAGE_CHARS)) };
}

/** The error a caller sees when the backend cannot be used; the reason is only logged. */
export function unavailable(): ChorusError {
  return new ChorusError(ErrorCode.UNAVAILABLE, 'the application backend is unavailable; try again later');
}

interface Waiter {
  start(): void;
  fail(reason: string): void;
  timer: NodeJS.Timeout;
}

export interface CallerOptions extends ProxyOptions {
  logger: Logger;
  /** Where the proxy metrics are registered (the server's). */
  registry?: Registry;
}

export class ProxyCaller {
  private readonly endpoints = new Map<ProxyKind, { url: URL; timeoutMs: number }>();
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly agents: Agents;
  private readonly logger: Logger;
  private inFlight = 0;
  private readonly queue: Waiter[] = [];
  private readonly inFlightGauge: Gauge<'kind'>;
  private readonly queuedGauge: Gauge;
  private readonly duration: Histogram<'kind' | 'outcome'>;

  constructor(options: CallerOptions) {
    for (const kind of ['connect', 'refresh', 'subscribe', 'publish', 'rpc'] as const) {
      const endpoint: ProxyEndpoint | undefined = options[kind];
      if (endpoint) this.endpoints.set(kind, { url: new URL(endpoint.url), timeoutMs: endpoint.timeoutMs ?? PROXY_DEFAULTS.timeoutMs });
    }
    this.maxInFlight = options.maxInFlight ?? PROXY_DEFAULTS.maxInFlight;
    this.maxQueued = options.maxQueued ?? PROXY_DEFAULTS.maxQueued;
    if (!Number.isSafeInteger(this.maxInFlight) || this.maxInFlight < 1) throw new TypeError('invalid option proxy.maxInFlight: must be a positive integer');
    if (!Number.isSafeInteger(this.maxQueued) || this.maxQueued < 0) throw new TypeError('invalid option proxy.maxQueued: must be a non-negative integer');
    this.agents = new Agents(this.maxInFlight);
    this.logger = options.logger;
    const registers = options.registry ? [options.registry] : [];
    this.inFlightGauge = new Gauge({ name: 'chorus_proxy_calls_in_flight', help: 'Proxy calls to the backend in flight', labelNames: ['kind'], registers });
    this.queuedGauge = new Gauge({ name: 'chorus_proxy_calls_queued', help: 'Proxy calls waiting for a free slot (proxy.maxInFlight)', registers });
    this.duration = new Histogram({
      name: 'chorus_proxy_call_duration_seconds',
      help: 'Proxy call latency by kind and outcome (allow, deny, unavailable, malformed), queueing included',
      labelNames: ['kind', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }

  has(kind: ProxyKind): boolean {
    return this.endpoints.has(kind);
  }

  /**
   * Call the backend. Resolves with the answer's `result` object; throws the backend's denial
   * as a ChorusError with its code, or UNAVAILABLE (timeout, down, queue full, malformed answer).
   */
  async call(kind: ProxyKind, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const endpoint = this.endpoints.get(kind);
    if (!endpoint) throw new Error(`no ${kind} proxy is configured`);
    const started = performance.now();
    const deadline = started + endpoint.timeoutMs;
    const finish = (outcome: Outcome): void => this.duration.observe({ kind, outcome }, (performance.now() - started) / 1000);
    try {
      await this.acquire(endpoint.timeoutMs);
    } catch (err) {
      finish('unavailable');
      this.logger.warn({ kind, reason: (err as Error).message }, 'proxy call not sent');
      throw unavailable();
    }
    this.inFlightGauge.inc({ kind });
    let answer: Answer;
    try {
      const left = Math.max(1, Math.round(deadline - performance.now()));
      const res = await post(endpoint.url, JSON.stringify(body), {}, left, this.agents);
      answer = parseAnswer(res.status, res.body);
    } catch (err) {
      finish('unavailable');
      const reason = err instanceof PostError ? err.message : 'request failed';
      this.logger.warn({ kind, reason }, `${kind} proxy failed: ${reason}`);
      throw unavailable();
    } finally {
      this.inFlightGauge.dec({ kind });
      this.release();
    }
    if ('malformed' in answer) {
      finish('malformed');
      this.logger.error({ kind, problem: answer.malformed }, `${kind} proxy answer malformed: ${answer.malformed}`);
      throw unavailable();
    }
    if ('error' in answer) {
      finish('deny');
      throw answer.error;
    }
    finish('allow');
    return answer.result;
  }

  /** Log a malformed `result` field found by the kind's own checks, and return the error to throw. */
  malformed(kind: ProxyKind, problem: string): ChorusError {
    this.logger.error({ kind, problem }, `${kind} proxy answer malformed: ${problem}`);
    return unavailable();
  }

  private acquire(timeoutMs: number): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return Promise.resolve();
    }
    if (this.queue.length >= this.maxQueued) return Promise.reject(new Error(`${this.maxQueued} calls already wait (proxy.maxQueued)`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        fail: (reason) => {
          clearTimeout(waiter.timer);
          reject(new Error(reason));
        },
        timer: setTimeout(() => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          this.queuedGauge.set(this.queue.length);
          reject(new Error(`no free slot within ${timeoutMs} ms (proxy.maxInFlight ${this.maxInFlight})`));
        }, timeoutMs),
      };
      waiter.timer.unref();
      this.queue.push(waiter);
      this.queuedGauge.set(this.queue.length);
    });
  }

  private release(): void {
    const next = this.queue.shift();
    this.queuedGauge.set(this.queue.length);
    if (next) next.start(); // the slot passes on: inFlight stays the same
    else this.inFlight--;
  }

  close(): void {
    for (const waiter of this.queue.splice(0)) waiter.fail('the proxy is closing');
    this.queuedGauge.set(0);
    this.agents.destroy();
  }
}
