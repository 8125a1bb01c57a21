/**
 * The config file's schema: one zod schema for every key of `chorus.json`, the source of both
 * the runtime checks and the published JSON Schema (`docs/config.schema.json`, written by
 * `scripts/config-schema.ts`). Messages follow one style, `invalid option <key.path>: <problem>`,
 * built from zod issue paths by `issueMessage`. Values of secret keys never appear in a message.
 *
 * Cross-field rules of the server's own options (heartbeat timeout > interval, a JWT key
 * source, namespace joinLeave/personal) stay in `resolveOptions`, which embedders get too.
 */
import { z } from 'zod';
import { proxySchema, webhooksSchema } from './proxy-schema.js';
import { got, hostPort, nonEmptyString, positiveInt, trueOrFalse } from './schema-parts.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const JWT_ALGORITHMS = [
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const;

export const portSchema = z
  .int({ error: got('must be an integer from 0 to 65535') })
  .min(0, { error: got('must be an integer from 0 to 65535') })
  .max(65535, { error: got('must be an integer from 0 to 65535') });

export const hostSchema = z
  .string({ error: got('must be a host name or IP address') })
  .trim()
  .regex(/^\S+$/, { error: got('must be a host name or IP address') });

export const logLevelSchema = z.preprocess(
  (v) => (typeof v === 'string' ? v.trim().toLowerCase() : v),
  z.enum(LOG_LEVELS, { error: got(`must be one of ${LOG_LEVELS.join(', ')}`) }),
);

const absoluteUrl = (what: string) =>
  z.string({ error: `must be ${what}` }).refine((v) => URL.canParse(v), { error: `must be ${what}` });

/**
 * The listen backlog: connections the kernel queues before the server accepts them (`CHORUS_LISTEN_BACKLOG`,
 * file `listenBacklog`). Node's own default (511) lets a reconnect storm overflow the queue: the clients
 * whose SYNs are dropped retry after 1, 3, 7 s before admission ever sees them.
 */
export const listenBacklogSchema = positiveInt;

/** The SQLite document store's directory (`CHORUS_DATA_DIR`, file `dataDir`). */
export const dataDirSchema = z.string({ error: 'must be a directory path' }).trim().min(1, { error: 'must be a directory path' });

export const redisUrlSchema = z
  .string({ error: 'must be a redis:// or rediss:// URL' })
  .refine((v) => URL.canParse(v) && ['redis:', 'rediss:'].includes(new URL(v).protocol), { error: 'must be a redis:// or rediss:// URL' });

const pemPath = z.string({ error: 'must be a file path' }).min(1, { error: 'must be a file path' });

const redisTlsSchema = z
  .strictObject(
    {
      caFile: pemPath.optional().describe("PEM file of the CA(s) Redis's certificate must chain to, relative to the config file"),
      certFile: pemPath.optional().describe('PEM client certificate (with keyFile), for `tls-auth-clients yes`'),
      keyFile: pemPath.optional().describe('PEM client key (with certFile)'),
      rejectUnauthorized: trueOrFalse.optional().describe('Default true; false accepts any server certificate (testing only)'),
      servername: nonEmptyString.optional().describe("The name Redis's certificate is checked against (SNI)"),
    },
    { error: 'must be an object ({"caFile", "certFile", "keyFile", "rejectUnauthorized", "servername"})' },
  )
  .superRefine((tls, ctx) => {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: [tls.certFile === undefined ? 'certFile' : 'keyFile'], message: 'certFile and keyFile go together' });
    }
  });

const hostPorts = z
  .array(hostPort, { error: 'must be a non-empty array of {"host","port"}' })
  .min(1, { error: 'must be a non-empty array of {"host","port"}' });

/** The file's `redis` object (`CHORUS_REDIS_URL` sets `url`). */
export const redisSchema = z
  .strictObject(
    {
      url: redisUrlSchema.optional().describe('redis://[:password@]host:port[/db], rediss:// for TLS'),
      prefix: z
        .string({ error: 'must be 1-64 characters of A-Z a-z 0-9 _ . : -' })
        .regex(/^[A-Za-z0-9_.:-]{1,64}$/, { error: 'must be 1-64 characters of A-Z a-z 0-9 _ . : -' })
        .optional()
        .describe('Key prefix. Default "chorus"'),
      commandTimeoutMs: positiveInt.optional().describe("One engine operation's budget: commands slower than this fail with UNAVAILABLE, in ms. Default 2000"),
      outcomeTimeoutMs: z
        .int({ error: got('must be a non-negative integer') })
        .min(0, { error: got('must be a non-negative integer') })
        .optional()
        .describe('How long a publish whose reply was lost or late is looked up before OUTCOME_UNKNOWN, in ms. Default 2000'),
      maxHeldPublications: positiveInt
        .optional()
        .describe('Most publications held per channel while history is unreadable before the channel is reported lost (4005). Default 10000'),
      gapCheckIntervalMs: z
        .int({ error: got('must be a non-negative integer') })
        .min(0, { error: got('must be a non-negative integer') })
        .optional()
        .describe('Periodic check for publications pub/sub dropped, in ms; 0 turns it off. Default 10000'),
      sentinels: hostPorts.optional().describe('Redis Sentinel addresses (with name)'),
      name: nonEmptyString.optional().describe('The Sentinel master name'),
      cluster: hostPorts.optional().describe('Redis Cluster start-up nodes'),
      shardedPubSub: trueOrFalse.optional().describe('Sharded pub/sub on Redis Cluster (Redis 7). Default false'),
      tls: redisTlsSchema.optional().describe('TLS to Redis; implied by rediss://'),
    },
    { error: 'must be an object' },
  )
  .superRefine((redis, ctx) => {
    if (redis.sentinels && !redis.name) ctx.addIssue({ code: 'custom', path: ['name'], message: 'is required with redis.sentinels (the master name)' });
    if (redis.shardedPubSub && !redis.cluster) ctx.addIssue({ code: 'custom', path: ['shardedPubSub'], message: 'needs redis.cluster' });
  });

const authSchema = z
  .strictObject(
    {
      secret: nonEmptyString.optional().describe('HS256 shared secret (CHORUS_JWT_SECRET overrides it)'),
      publicKey: z
        .string({ error: 'must be a PEM (SPKI) public key ("-----BEGIN PUBLIC KEY-----")' })
        .regex(/-----BEGIN PUBLIC KEY-----/, { error: 'must be a PEM (SPKI) public key ("-----BEGIN PUBLIC KEY-----")' })
        .optional()
        .describe('PEM public key (SPKI) for RS/PS/ES/EdDSA tokens'),
      publicKeyFile: nonEmptyString.optional().describe('File holding publicKey, relative to the config file'),
      algorithms: z
        .array(z.enum(JWT_ALGORITHMS, { error: got(`must be a non-empty array of JWT algorithms (${JWT_ALGORITHMS.join(', ')})`) }), {
          error: `must be a non-empty array of JWT algorithms (${JWT_ALGORITHMS.join(', ')})`,
        })
        .min(1, { error: `must be a non-empty array of JWT algorithms (${JWT_ALGORITHMS.join(', ')})` })
        .optional()
        .describe("Algorithms accepted with publicKey. Default: the key's own"),
      jwksUrl: absoluteUrl('an absolute URL').optional().describe('JWKS URL; keys are fetched and cached'),
      issuer: nonEmptyString.optional().describe('Required iss claim'),
      audience: nonEmptyString.optional().describe('Required aud claim'),
      clockToleranceSec: z
        .int({ error: got('must be a non-negative integer') })
        .min(0, { error: got('must be a non-negative integer') })
        .optional()
        .describe('Clock skew tolerated for exp/nbf, in seconds. Default 5'),
    },
    { error: 'must be an object' },
  )
  .superRefine((auth, ctx) => {
    if (auth.publicKeyFile !== undefined && auth.publicKey !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['publicKeyFile'], message: 'give either publicKey or publicKeyFile, not both' });
    }
  });

const namespaceSchema = z.strictObject(
  {
    pattern: z
      .string({ error: 'must be a non-empty string of at most 255 characters' })
      .min(1, { error: 'must be a non-empty string of at most 255 characters' })
      .max(255, { error: 'must be a non-empty string of at most 255 characters' })
      .describe('Channel-name pattern; * matches any run of characters (e.g. "chat:*")'),
    subscribe: z.enum(['any', 'none'], { error: got('must be one of "any", "none"') }).optional().describe('Who may subscribe. Default "any"'),
    publish: z
      .enum(['any', 'subscribers', 'none'], { error: got('must be one of "any", "subscribers", "none"') })
      .optional()
      .describe('Who may publish from a client. Default "any"'),
    personal: trueOrFalse.optional().describe('Only the user named after the prefix may subscribe (pattern must end in *). Default false'),
    historySize: z.int({ error: got('must be a non-negative integer') }).min(0, { error: got('must be a non-negative integer') }).optional().describe('Publications kept per channel; 0 disables history. Default 0'),
    historyTtlMs: positiveInt.optional().describe('History kept after the last publication, in ms. Default 300000'),
    recoveryMaxMissed: z.int({ error: got('must be a non-negative integer') }).min(0, { error: got('must be a non-negative integer') }).optional().describe('Recovery fails above this many missed publications. Default 1000'),
    presence: trueOrFalse.optional().describe('Track presence. Default false'),
    joinLeave: trueOrFalse.optional().describe('Send join/leave events (needs presence). Default: same as presence'),
    joinLeaveMaxMembers: z.int({ error: got('must be a non-negative integer') }).min(0, { error: got('must be a non-negative integer') }).optional().describe('No join/leave events above this many members. Default 1000'),
    ephemeral: trueOrFalse.optional().describe('Allow ephemeral publications. Default true'),
    ephemeralPerSecond: z.number({ error: got('must be a positive number') }).positive({ error: got('must be a positive number') }).optional().describe('Ephemeral publications per user per channel per second. Default 10'),
    backpressure: z
      .enum(['disconnect', 'latest-per-key', 'drop-oldest'], { error: got('must be one of "disconnect", "latest-per-key", "drop-oldest"') })
      .optional()
      .describe('A subscriber that does not keep up: disconnected (4003), or kept with the newest queued publication per key, or with the oldest dropped; told what it skipped. Default "disconnect"'),
    document: trueOrFalse
      .optional()
      .describe('Channels are shared Yjs documents (/yjs/<name>, doc.* frames), never subscribed or published to; history defaults to 1000 / 3600000 ms. Default false'),
  },
  { error: 'must be an object' },
);

/** A strict object of positive integers, all optional (limits, heartbeat, shutdown). */
function numbers<K extends string>(docs: Record<K, string>, allowZero: readonly NoInfer<K>[] = []) {
  const shape = {} as Record<K, z.ZodOptional<z.ZodInt>>;
  for (const key of Object.keys(docs) as K[]) {
    const zero = allowZero.includes(key);
    const problem = zero ? 'must be a non-negative integer' : 'must be a positive integer';
    shape[key] = z.int({ error: got(problem) }).min(zero ? 0 : 1, { error: got(problem) }).optional().describe(docs[key]);
  }
  return z.strictObject(shape, { error: 'must be an object' });
}

const limitsSchema = numbers({
  maxMessageBytes: 'Largest WebSocket message, in bytes; larger closes with 1009. Default 65536',
  maxConnectionsPerUser: 'Open connections per user; more get HTTP 429. Default 5',
  maxSubscriptionsPerConnection: 'Subscriptions per connection. Default 512',
  maxQueuedBytes: 'Bytes queued unsent per connection before 4003. Default 1048576',
  ratePerSecond: 'Token-bucket refill per connection, frames per second. Default 50',
  rateBurst: 'Token-bucket capacity per connection, frames. Default 100',
  maxFaults: 'Faulty frames within faultWindowMs that close with 1008. Default 10',
  faultWindowMs: 'Window for maxFaults, in ms. Default 10000',
  handshakeTimeoutMs: 'Longest authentication of an upgrade before HTTP 503, in ms. Default 10000',
  maxHistoryLimit: 'Largest limit of a history request. Default 100',
  maxPendingFrames: 'Frames of one connection waiting to be handled before the server stops reading from it (flood control). Default 256',
  resumePendingFrames: 'Waiting frames at or below which a paused connection is read again; below maxPendingFrames. Default 32',
  maxEarlyMessages: 'HTTP streaming: how far past the next expected seq a POST may arrive; further is 400. Default 64',
  maxHeldMessages: 'HTTP streaming: forwarded messages held while a session is paused; one more closes it with 1008. Default 256',
}, ['resumePendingFrames']);

/** An integer in [min, max] (compression settings). */
function intIn(min: number, max: number) {
  const problem = `must be an integer from ${min} to ${max}`;
  return z.int({ error: got(problem) }).min(min, { error: got(problem) }).max(max, { error: got(problem) });
}

/** permessage-deflate: true for the defaults, or the settings (src/server/compression.ts). */
const compressionSchema = z.union(
  [
    trueOrFalse,
    z.strictObject(
      {
        threshold: intIn(0, 2 ** 31).optional().describe('Messages smaller than this are sent uncompressed, in bytes. Default 1024'),
        concurrency: intIn(1, 1024).optional().describe('Compression jobs running at once in the process. Default 10'),
        contextTakeover: trueOrFalse.optional().describe('Keep the deflate context between messages. Default false'),
        level: intIn(1, 9).optional().describe('zlib level. Default 1'),
        memLevel: intIn(1, 9).optional().describe('zlib memLevel. Default 4'),
        windowBits: intIn(9, 15).optional().describe('Server LZ77 window, in bits. Default 11'),
      },
      { error: 'must be true, false or an object' },
    ),
  ],
  { error: 'must be true, false or an object' },
);

/** An endpoint path; `alternative` names what else the key may be, in its errors. */
const endpointPathOr = (alternative?: string) => {
  const problem = alternative ? `must start with "/" or ${alternative}` : 'must start with "/"';
  return z.string({ error: problem }).regex(/^\//, { error: problem });
};
const endpointPath = endpointPathOr();

/** The whole config file. */
export const configFileSchema = z
  .strictObject(
    {
      $schema: z.string().optional().describe('The JSON Schema of this file, for editors (ignored by chorus)'),
      port: portSchema.optional().describe('TCP port; 0 picks a free one. Default 8080 (PORT, --port override it)'),
      host: hostSchema.optional().describe('Listen address. Default 0.0.0.0 (HOST, --host override it)'),
      logLevel: logLevelSchema.optional().describe('pino level. Default info (LOG_LEVEL, --log-level override it)'),
      path: endpointPath.optional().describe('WebSocket endpoint path. Default /ws'),
      ssePath: z
        .union([z.literal(false), endpointPathOr('be false')], { error: 'must start with "/" or be false' })
        .optional()
        .describe('Server-Sent Events endpoint path; false turns it off. Default /sse'),
      streamPath: z
        .union([z.literal(false), endpointPathOr('be false')], { error: 'must start with "/" or be false' })
        .optional()
        .describe('HTTP streaming (WebSocket fallback) endpoint path; false turns it off. Default /stream'),
      auth: authSchema.optional().describe('JWT verification (CHORUS_JWT_SECRET sets secret); none configured means demo mode'),
      apiKey: nonEmptyString.optional().describe('Bearer key for the HTTP API (CHORUS_API_KEY overrides it)'),
      compression: compressionSchema.optional().describe('permessage-deflate for WebSocket clients that offer it (CHORUS_COMPRESSION=on|off overrides it). Default off'),
      allowedOrigins: z.array(z.string({ error: got('must be an array of strings') }), { error: 'must be an array of strings' }).optional().describe('Allowed browser origins (scheme://host[:port] or *)'),
      namespaces: z.array(namespaceSchema, { error: 'must be an array' }).optional().describe('Channel namespaces, first match wins'),
      personalChannel: trueOrFalse.optional().describe('Subscribe every connection to user:<sub>. Default true'),
      limits: limitsSchema.optional(),
      admission: numbers(
        {
          ratePerSecond: 'Handshakes a node starts per second, sustained; over it HTTP 503 with Retry-After; 0 = unpaced. Default 1000',
          burst: 'Handshakes admitted at once above the rate. Default 1000',
          maxPending: 'Handshakes in admission at once; more get HTTP 503; 0 = no cap. Default 1000',
          maxRetryAfterSec: 'Largest Retry-After sent, in seconds. Default 30',
        },
        ['ratePerSecond', 'maxPending'],
      )
        .optional()
        .describe('Server-paced admission (reconnect storms): 503 OVER_CAPACITY with Retry-After instead of queueing handshakes'),
      heartbeat: numbers({
        intervalMs: 'How often the server pings each connection, in ms. Default 30000',
        timeoutMs: 'A connection silent this long is closed with 4002, in ms (> intervalMs). Default 90000',
      }).optional(),
      shutdown: numbers(
        {
          drainTimeoutMs: 'Graceful shutdown waits this long for clients, in ms. Default 10000',
          reconnectSpreadMs: 'Clients reconnect after a random delay below this, in ms. Default 5000',
        },
        ['reconnectSpreadMs'],
      ).optional(),
      cluster: numbers({
        reportIntervalMs: "How often a node publishes its figures for the dashboard and admin console, in ms (a node's report expires after three). Default 2000",
        replyTimeoutMs: "How long a cluster-wide command waits for the other nodes' answers, in ms. Default 1000",
      })
        .optional()
        .describe('Cluster reporting (dashboard, admin console)'),
      idempotencyWindowMs: positiveInt.optional().describe('Window in which a retried publish is applied once, in ms. Default 120000'),
      presenceTtlMs: positiveInt.optional().describe('Lifetime of presence and connection entries in the engine, in ms. Default 60000'),
      processMetrics: trueOrFalse.optional().describe('Export Node process metrics. Default true'),
      nodeId: nonEmptyString.optional().describe('Node id shown in connected and logs. Default: random'),
      redis: redisSchema.optional().describe('Run as one node of a cluster sharing Redis; absent means the in-memory engine'),
      proxy: proxySchema.optional().describe("Delegate decisions to the application's HTTP backend"),
      webhooks: webhooksSchema.optional().describe("Signed event notifications to the application's backend"),
      listenBacklog: listenBacklogSchema
        .optional()
        .describe('Connections the kernel queues before the server accepts them (capped by net.core.somaxconn). Default 4096 (CHORUS_LISTEN_BACKLOG overrides it)'),
      dataDir: dataDirSchema
        .optional()
        .describe('Directory of the SQLite file that keeps documents when there is no redis.url. Default ./chorus-data (CHORUS_DATA_DIR overrides it)'),
    },
    { error: 'must hold a JSON object' },
  )
  .describe('Chorus standalone server configuration (chorus.json)');

export type ConfigFile = z.output<typeof configFileSchema>;

/** `['namespaces', 0, 'publish']` -> `namespaces[0].publish`. */
export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  return out;
}

/** Issue codes about one value's type or format (not about an object's keys or shape). */
const SCALAR_ISSUES = new Set(['invalid_type', 'invalid_value', 'invalid_format']);

/**
 * One zod issue as `[key, problem]`, e.g. `['limits.rateBurst', 'must be a positive integer, got 0']`.
 * A bad element of a list of plain values (`auth.algorithms[1]`) is reported at the list.
 */
export function issueMessage(issue: z.core.$ZodIssue, fileName: string): [string, string] {
  if (issue.code === 'unrecognized_keys') {
    const key = keyPath([...issue.path, issue.keys[0] ?? '']);
    return [key, issue.path.length === 0 ? `unknown key in config file ${JSON.stringify(fileName)}` : 'unknown key'];
  }
  const path = [...issue.path];
  const scalar = SCALAR_ISSUES.has(issue.code) && !(issue.code === 'invalid_type' && (issue.expected === 'object' || issue.expected === 'array'));
  if (scalar && typeof path.at(-1) === 'number') path.pop();
  return [keyPath(path), issue.message];
}

/**
 * Messages for issues the schema does not word itself (passed to `safeParse`): the schema's
 * own messages win over these.
 */
export function fallbackMessage(issue: { code?: string; expected?: unknown; input?: unknown }): string {
  if (issue.code === 'invalid_type') return `must be ${issue.expected === 'object' ? 'an object' : issue.expected === 'array' ? 'an array' : `a ${String(issue.expected)}`}`;
  return 'is invalid';
}

/** The JSON Schema published as `docs/config.schema.json`. */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configFileSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { ...schema, title: 'chorus.json' };
}

/** `docs/config.schema.json` exactly as committed (written by `scripts/config-schema.ts`). */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
