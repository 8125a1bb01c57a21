/**
 * The config file's `proxy` object and `webhooks` array (issue 11's fixed contract, plus the
 * bounds every call to the backend has). Defaults live in `src/proxy/options.ts`.
 */
import { z } from 'zod';
import { WEBHOOK_EVENTS } from '../proxy/options.js';
import { got, httpUrl, positiveInt } from './schema-parts.js';

const nonNegativeInt = z.int({ error: got('must be a non-negative integer') }).min(0, { error: got('must be a non-negative integer') });

const timeoutMs = positiveInt.optional().describe('How long a call may take before it fails with UNAVAILABLE, in ms. Default 3000');

function endpoint(what: string) {
  return z
    .strictObject({ url: httpUrl.describe(`POST target of the ${what} proxy`), timeoutMs }, { error: 'must be an object ({"url", "timeoutMs"})' })
    .describe(`The ${what} proxy`);
}

const headerName = z
  .string({ error: 'must be an array of header names' })
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, { error: got('must be an HTTP header name') });

const connectEndpoint = z
  .strictObject(
    {
      url: httpUrl.describe('POST target of the connect proxy'),
      timeoutMs,
      headers: z
        .array(headerName, { error: 'must be an array of header names' })
        .optional()
        .describe('Upgrade-request headers passed to the backend (cookies always are). Default none'),
    },
    { error: 'must be an object ({"url", "timeoutMs", "headers"})' },
  )
  .describe('The connect proxy: decides who a connecting client is (with or without a JWT)');

export const proxySchema = z.strictObject(
  {
    connect: connectEndpoint.optional(),
    refresh: endpoint('refresh').optional(),
    subscribe: endpoint('subscribe').optional(),
    publish: endpoint('publish').optional(),
    rpc: endpoint('rpc').optional(),
    maxInFlight: positiveInt.optional().describe('Proxy calls in flight at once, all kinds together. Default 64'),
    maxQueued: nonNegativeInt.optional().describe('Calls waiting for a free slot; more fail at once with UNAVAILABLE. Default 1024'),
  },
  { error: 'must be an object' },
);

const webhookSchema = z.strictObject(
  {
    url: httpUrl.describe('POST target of the webhook'),
    secret: z
      .string({ error: 'must be a string of at least 16 characters' })
      .min(16, { error: 'must be a string of at least 16 characters' })
      .describe('HMAC-SHA256 key of X-Chorus-Signature'),
    events: z
      .array(z.enum(WEBHOOK_EVENTS, { error: got(`must be one of ${WEBHOOK_EVENTS.join(', ')}`) }), { error: 'must be a non-empty array of event names' })
      .min(1, { error: 'must be a non-empty array of event names' })
      .describe('Events sent to this webhook'),
    timeoutMs: positiveInt.optional().describe('How long one delivery may take, in ms. Default 5000'),
    maxBatch: positiveInt.optional().describe('Events per request at most. Default 100'),
    maxAttempts: positiveInt.optional().describe('Tries per batch before it is dropped (and logged). Default 10'),
  },
  { error: 'must be an object' },
);

export const webhooksSchema = z.array(webhookSchema, { error: 'must be an array' });

export type ProxyConfig = z.output<typeof proxySchema>;
export type WebhookConfig = z.output<typeof webhookSchema>;
