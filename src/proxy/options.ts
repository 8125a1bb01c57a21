/** Options of the proxy extension and the webhook sender, with their defaults. */

/** The kinds of proxy call, each with its own endpoint. */
export const PROXY_KINDS = ['connect', 'refresh', 'subscribe', 'publish', 'rpc'] as const;
export type ProxyKind = (typeof PROXY_KINDS)[number];

/** Events a webhook may subscribe to. */
export const WEBHOOK_EVENTS = ['channel.occupied', 'channel.vacated', 'presence.join', 'presence.leave'] as const;
export type WebhookEventName = (typeof WEBHOOK_EVENTS)[number];

export interface ProxyEndpoint {
  /** `http://` or `https://` URL the call is POSTed to. */
  url: string;
  /** How long one call may take before it fails with UNAVAILABLE, in ms. Default 3000. */
  timeoutMs?: number;
}

export interface ConnectEndpoint extends ProxyEndpoint {
  /** Upgrade-request headers passed to the backend (lower-cased); the Cookie header always is. Default none. */
  headers?: string[];
}

export interface ProxyOptions {
  connect?: ConnectEndpoint;
  refresh?: ProxyEndpoint;
  subscribe?: ProxyEndpoint;
  publish?: ProxyEndpoint;
  rpc?: ProxyEndpoint;
  /** Proxy calls in flight at once, all kinds together. Default 64. */
  maxInFlight?: number;
  /** Calls waiting for a free slot; past this a call fails at once with UNAVAILABLE. Default 1024. */
  maxQueued?: number;
}

export interface WebhookOptions {
  /** `http://` or `https://` URL the batches are POSTed to. */
  url: string;
  /** HMAC-SHA256 key of `X-Chorus-Signature` (at least 16 characters). */
  secret: string;
  /** Events sent to this webhook. */
  events: readonly WebhookEventName[];
  /** How long one delivery may take, in ms. Default 5000. */
  timeoutMs?: number;
  /** Events per request at most. Default 100. */
  maxBatch?: number;
  /** Tries per batch (the first included) before it is dropped and logged. Default 10. */
  maxAttempts?: number;
}

export const PROXY_DEFAULTS = { timeoutMs: 3000, maxInFlight: 64, maxQueued: 1024 } as const;
export const WEBHOOK_DEFAULTS = { timeoutMs: 5000, maxBatch: 100, maxAttempts: 10 } as const;

/** Retry backoff of webhook deliveries: full jitter between these, doubling per attempt, in ms. */
export const WEBHOOK_BACKOFF = { minMs: 200, maxMs: 30_000 } as const;

/** Largest backend answer read, in bytes; larger is a malformed answer. */
export const MAX_ANSWER_BYTES = 1024 * 1024;
