/**
 * Standalone configuration: flags, environment, config file and defaults (highest first),
 * merged into one `StandaloneConfig`. Pure: the caller injects argv, env and a file reader,
 * so every rule here is unit-testable without touching the process.
 */
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { resolveOptions, type AuthOptions, type ServerOptions } from '../server/options.js';

/** Every config problem is one of these; the message names the bad key. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_ERROR';
  override name = 'ConfigError';
}

/** Reads a file as UTF-8 text (throws like `fs.readFileSync` when it cannot). */
export type ReadFile = (path: string) => string;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface StandaloneConfig {
  /** TCP port; 0 picks a free one. Default 8080 (`PORT`, `--port`, file `port`). */
  port: number;
  /** Listen address. Default `0.0.0.0` (`HOST`, `--host`, file `host`). */
  host: string;
  /** pino level. Default `info` (`LOG_LEVEL`, `--log-level`, file `logLevel`). */
  logLevel: LogLevel;
  /** Serializable server options, already validated by `resolveOptions`. Always has a JWT key source. */
  server: ServerOptions;
  /** True when no JWT key was configured: a random secret was generated and `/demo/token` is on. */
  demo: boolean;
  /** The config file that was read, if any. */
  configFile: string | undefined;
  /** Redis engine settings; absent means the in-memory engine (one process). */
  redis: RedisConfig | undefined;
  /** `--help` was given: print usage and exit. Nothing else is meaningful then. */
  help: boolean;
}

export interface LoadOptions {
  /** Makes the demo-mode secret. Default: 32 random bytes, base64url. */
  generateSecret?: () => string;
}

export const USAGE = `Usage: chorus [options]

Starts the Chorus standalone server (WebSocket endpoint, HTTP API, demo page).

Options (each overrides its environment variable, which overrides the config file):
  --port <n>         TCP port, 0 for any free port       (env PORT, default 8080)
  --host <addr>      listen address                       (env HOST, default 0.0.0.0)
  --config <file>    JSON config file                     (env CHORUS_CONFIG)
  --log-level <lvl>  fatal|error|warn|info|debug|trace|silent (env LOG_LEVEL, default info)
  --help             print this text

Environment:
  CHORUS_JWT_SECRET       HS256 secret for client tokens; without any key source the
                          server runs in DEMO mode (generated secret, open sign-in)
  CHORUS_API_KEY          bearer key for the HTTP API (/api/*); without it the API answers 401
  CHORUS_REDIS_URL        redis:// or rediss:// URL: run as one node of a cluster sharing Redis
                          (default: in-memory engine, one process)
  CHORUS_ALLOWED_ORIGINS  comma-separated browser Origin allow-list ("*" allows all);
                          default: only the server's own origin
  CHORUS_COMPRESSION      "on" turns on permessage-deflate for WebSocket clients that offer it
                          ("off" turns it off; default off; file key "compression")
`;

/** Keys the config file may have at the top level. */
const FILE_KEYS = new Set([
  'port',
  'host',
  'logLevel',
  'path',
  'auth',
  'apiKey',
  'compression',
  'allowedOrigins',
  'namespaces',
  'personalChannel',
  'limits',
  'heartbeat',
  'shutdown',
  'idempotencyWindowMs',
  'presenceTtlMs',
  'processMetrics',
  'nodeId',
  'redis',
]);

/** Keys of the file's `redis` object. */
const REDIS_KEYS = new Set(['url', 'prefix', 'commandTimeoutMs', 'gapCheckIntervalMs', 'sentinels', 'name', 'cluster', 'shardedPubSub', 'tls']);

/** Keys of the file's `redis.tls` object (files are read relative to the config file). */
const REDIS_TLS_KEYS = new Set(['caFile', 'certFile', 'keyFile', 'rejectUnauthorized', 'servername']);

/** TLS to Redis, resolved: PEM texts read from the `*File` keys. */
export interface RedisTlsConfig {
  /** CA certificate(s) the server's certificate must chain to (default: Node's public CAs). */
  ca?: string;
  /** Client certificate and key, for a server with `tls-auth-clients yes`. */
  cert?: string;
  key?: string;
  /** Default true; false accepts any server certificate (testing only). */
  rejectUnauthorized?: boolean;
  /** The name the server's certificate is checked against (SNI), when it differs from the host. */
  servername?: string;
}

/** Serializable Redis engine settings (file key `redis`; `CHORUS_REDIS_URL` sets `url`). */
export interface RedisConfig {
  /** `redis://[:password@]host:port[/db]`, `rediss://` for TLS. */
  url?: string;
  /** Key prefix. Default `chorus`. */
  prefix?: string;
  /** Commands slower than this fail with UNAVAILABLE, in ms. Default 2000. */
  commandTimeoutMs?: number;
  /** Periodic check for publications pub/sub dropped, in ms; 0 turns it off. Default 10000. */
  gapCheckIntervalMs?: number;
  /** Redis Sentinel: sentinel addresses and the master `name`. */
  sentinels?: Array<{ host: string; port: number }>;
  name?: string;
  /** Redis Cluster start-up nodes. */
  cluster?: Array<{ host: string; port: number }>;
  /** Sharded pub/sub on Redis Cluster (Redis 7). Default false. */
  shardedPubSub?: boolean;
  /** TLS to Redis (file key `redis.tls`: caFile, certFile, keyFile, rejectUnauthorized, servername). Implied by `rediss://`. */
  tls?: RedisTlsConfig;
}

function hostPorts(key: string, value: unknown): Array<{ host: string; port: number }> {
  if (!Array.isArray(value) || value.length === 0) invalid(key, 'must be a non-empty array of {"host","port"}');
  return value.map((item, i) => {
    if (!isPlainObject(item) || typeof item.host !== 'string' || !item.host) invalid(`${key}[${i}].host`, 'must be a non-empty string');
    return { host: item.host as string, port: parsePort(`${key}[${i}].port`, item.port, false) };
  });
}

/** Validates `redis.tls` and reads its PEM files (relative to the config file). */
function fileRedisTls(raw: unknown, configPath: string, readFile: ReadFile): RedisTlsConfig {
  if (!isPlainObject(raw)) invalid('redis.tls', 'must be an object ({"caFile", "certFile", "keyFile", "rejectUnauthorized", "servername"})');
  for (const key of Object.keys(raw)) if (!REDIS_TLS_KEYS.has(key)) invalid(`redis.tls.${key}`, 'unknown key');
  const tls: RedisTlsConfig = {};
  const pem = (key: 'caFile' | 'certFile' | 'keyFile'): string | undefined => {
    const value = raw[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || !value) invalid(`redis.tls.${key}`, 'must be a file path');
    const path = resolve(dirname(configPath), value);
    let text: string;
    try {
      text = readFile(path);
    } catch (err) {
      invalid(`redis.tls.${key}`, `cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (!text.includes('-----BEGIN ')) invalid(`redis.tls.${key}`, `${JSON.stringify(path)} is not a PEM file`);
    return text;
  };
  const ca = pem('caFile');
  const cert = pem('certFile');
  const key = pem('keyFile');
  if ((cert === undefined) !== (key === undefined)) invalid(cert === undefined ? 'redis.tls.certFile' : 'redis.tls.keyFile', 'certFile and keyFile go together');
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  if (raw.rejectUnauthorized !== undefined) {
    if (typeof raw.rejectUnauthorized !== 'boolean') invalid('redis.tls.rejectUnauthorized', 'must be true or false');
    tls.rejectUnauthorized = raw.rejectUnauthorized;
  }
  if (raw.servername !== undefined) {
    if (typeof raw.servername !== 'string' || !raw.servername) invalid('redis.tls.servername', 'must be a non-empty string');
    tls.servername = raw.servername;
  }
  return tls;
}

function fileRedis(raw: unknown, configPath: string, readFile: ReadFile): RedisConfig | undefined {
  if (raw === undefined) return undefined;
  if (!isPlainObject(raw)) invalid('redis', 'must be an object');
  for (const key of Object.keys(raw)) if (!REDIS_KEYS.has(key)) invalid(`redis.${key}`, 'unknown key');
  const redis: RedisConfig = {};
  if (raw.url !== undefined) redis.url = redisUrl('redis.url', raw.url);
  if (raw.prefix !== undefined) {
    if (typeof raw.prefix !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(raw.prefix)) invalid('redis.prefix', 'must be 1-64 characters of A-Z a-z 0-9 _ . : -');
    redis.prefix = raw.prefix;
  }
  if (raw.commandTimeoutMs !== undefined) {
    if (typeof raw.commandTimeoutMs !== 'number' || !Number.isSafeInteger(raw.commandTimeoutMs) || raw.commandTimeoutMs < 1) {
      invalid('redis.commandTimeoutMs', `must be a positive integer, got ${JSON.stringify(raw.commandTimeoutMs)}`);
    }
    redis.commandTimeoutMs = raw.commandTimeoutMs;
  }
  if (raw.gapCheckIntervalMs !== undefined) {
    if (typeof raw.gapCheckIntervalMs !== 'number' || !Number.isSafeInteger(raw.gapCheckIntervalMs) || raw.gapCheckIntervalMs < 0) {
      invalid('redis.gapCheckIntervalMs', `must be a non-negative integer, got ${JSON.stringify(raw.gapCheckIntervalMs)}`);
    }
    redis.gapCheckIntervalMs = raw.gapCheckIntervalMs;
  }
  if (raw.sentinels !== undefined) redis.sentinels = hostPorts('redis.sentinels', raw.sentinels);
  if (raw.name !== undefined) {
    if (typeof raw.name !== 'string' || !raw.name) invalid('redis.name', 'must be a non-empty string');
    redis.name = raw.name;
  }
  if (redis.sentinels && !redis.name) invalid('redis.name', 'is required with redis.sentinels (the master name)');
  if (raw.cluster !== undefined) redis.cluster = hostPorts('redis.cluster', raw.cluster);
  if (raw.shardedPubSub !== undefined) {
    if (typeof raw.shardedPubSub !== 'boolean') invalid('redis.shardedPubSub', 'must be true or false');
    if (raw.shardedPubSub && !redis.cluster) invalid('redis.shardedPubSub', 'needs redis.cluster');
    redis.shardedPubSub = raw.shardedPubSub;
  }
  if (raw.tls !== undefined) redis.tls = fileRedisTls(raw.tls, configPath, readFile);
  return redis;
}

function redisUrl(key: string, value: unknown): string {
  if (typeof value !== 'string') invalid(key, 'must be a redis:// or rediss:// URL');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    invalid(key, 'must be a redis:// or rediss:// URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') invalid(key, 'must be a redis:// or rediss:// URL');
  return value;
}

/** Keys of the file's `auth` object (`publicKeyFile` is read into `publicKey`). */
const AUTH_KEYS = new Set([
  'secret',
  'publicKey',
  'publicKeyFile',
  'algorithms',
  'jwksUrl',
  'issuer',
  'audience',
  'clockToleranceSec',
]);

const JWT_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

const FLAGS: Record<string, 'port' | 'host' | 'config' | 'logLevel'> = {
  '--port': 'port',
  '--host': 'host',
  '--config': 'config',
  '--log-level': 'logLevel',
};

function invalid(key: string, message: string): never {
  throw new ConfigError(`invalid option ${key}: ${message}`);
}

interface Flags {
  port?: string;
  host?: string;
  config?: string;
  logLevel?: string;
  help: boolean;
}

/** Parses `--name value` and `--name=value` flags; anything else is an error. */
export function parseFlags(argv: readonly string[]): Flags {
  const flags: Flags = { help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      flags.help = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const field = FLAGS[name];
    if (field === undefined) invalid(arg.startsWith('-') ? name : JSON.stringify(arg), 'unknown command-line argument (see --help)');
    let value: string | undefined;
    if (eq > 0 && arg.startsWith('--')) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
      if (value === undefined || value.startsWith('--')) invalid(name, 'needs a value');
    }
    flags[field] = value;
  }
  return flags;
}

/** An env var, with empty strings treated as unset (as most deploy tools write them). */
function envVar(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** A port from a flag or env var (text) or from the config file (a JSON number only). */
function parsePort(key: string, value: unknown, fromText = true): number {
  const n = fromText && typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) {
    invalid(key, `must be an integer from 0 to 65535, got ${JSON.stringify(value)}`);
  }
  return n;
}

function parseHost(key: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '' || /\s/.test(value.trim())) {
    invalid(key, `must be a host name or IP address, got ${JSON.stringify(value)}`);
  }
  return value.trim();
}

function parseLogLevel(key: string, value: unknown): LogLevel {
  const v = typeof value === 'string' ? value.trim().toLowerCase() : value;
  if (typeof v !== 'string' || !(LOG_LEVELS as readonly string[]).includes(v)) {
    invalid(key, `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return v as LogLevel;
}

function optionalString(key: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'string' || value.length === 0)) {
    invalid(key, `must be a non-empty string, got ${JSON.stringify(value)}`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readConfigFile(path: string, readFile: ReadFile, source: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    invalid(source, `cannot read config file ${JSON.stringify(path)} (${reason})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    invalid(source, `config file ${JSON.stringify(path)} is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(parsed)) invalid(source, `config file ${JSON.stringify(path)} must hold a JSON object`);
  for (const key of Object.keys(parsed)) {
    if (!FILE_KEYS.has(key)) invalid(key, `unknown key in config file ${JSON.stringify(path)}`);
  }
  return parsed;
}

/** Validates the file's `auth` object and reads `publicKeyFile` (relative to the config file). */
function fileAuth(raw: unknown, configPath: string, readFile: ReadFile): AuthOptions | undefined {
  if (raw === undefined) return undefined;
  if (!isPlainObject(raw)) invalid('auth', 'must be an object');
  for (const key of Object.keys(raw)) {
    if (!AUTH_KEYS.has(key)) invalid(`auth.${key}`, 'unknown key');
  }
  for (const key of ['secret', 'publicKey', 'publicKeyFile', 'jwksUrl', 'issuer', 'audience']) {
    optionalString(`auth.${key}`, raw[key]);
  }
  const { publicKeyFile, ...auth } = raw as AuthOptions & { publicKeyFile?: string };
  if (auth.algorithms !== undefined) {
    if (
      !Array.isArray(auth.algorithms) ||
      auth.algorithms.length === 0 ||
      auth.algorithms.some((a) => typeof a !== 'string' || !JWT_ALGORITHMS.includes(a))
    ) {
      invalid('auth.algorithms', `must be a non-empty array of JWT algorithms (${JWT_ALGORITHMS.join(', ')})`);
    }
  }
  if (publicKeyFile !== undefined) {
    if (auth.publicKey !== undefined) invalid('auth.publicKeyFile', 'give either publicKey or publicKeyFile, not both');
    const keyPath = resolve(dirname(configPath), publicKeyFile);
    let pem: string;
    try {
      pem = readFile(keyPath);
    } catch (err) {
      invalid('auth.publicKeyFile', `cannot read ${JSON.stringify(keyPath)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    auth.publicKey = pem;
  }
  if (auth.publicKey !== undefined && !auth.publicKey.includes('-----BEGIN PUBLIC KEY-----')) {
    invalid(publicKeyFile !== undefined ? 'auth.publicKeyFile' : 'auth.publicKey', 'must be a PEM (SPKI) public key ("-----BEGIN PUBLIC KEY-----")');
  }
  return auth;
}

/** Splits `CHORUS_ALLOWED_ORIGINS`; each entry must be `*` or `scheme://host[:port]`. */
export function parseOrigins(key: string, value: string): string[] {
  const origins = value
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o.length > 0);
  for (const o of origins) {
    if (o === '*') continue;
    let url: URL;
    try {
      url = new URL(o);
    } catch {
      invalid(key, `${JSON.stringify(o)} is not an origin (scheme://host[:port])`);
    }
    if (url.origin !== o.replace(/\/$/, '')) invalid(key, `${JSON.stringify(o)} is not an origin (scheme://host[:port], no path)`);
  }
  return origins.map((o) => o.replace(/\/$/, ''));
}

/**
 * Builds the standalone config. Precedence per key: flags, then env, then the config file,
 * then defaults. Throws `ConfigError` naming the bad key (a flag, an env var or a file key).
 */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readFile: ReadFile,
  options: LoadOptions = {},
): StandaloneConfig {
  const flags = parseFlags(argv);
  if (flags.help) {
    return { port: 8080, host: '0.0.0.0', logLevel: 'info', server: {}, demo: false, configFile: undefined, redis: undefined, help: true };
  }

  const configFile = flags.config ?? envVar(env, 'CHORUS_CONFIG');
  const configSource = flags.config !== undefined ? '--config' : 'CHORUS_CONFIG';
  const file = configFile === undefined ? {} : readConfigFile(configFile, readFile, configSource);

  const port =
    flags.port !== undefined
      ? parsePort('--port', flags.port)
      : envVar(env, 'PORT') !== undefined
        ? parsePort('PORT', envVar(env, 'PORT'))
        : file.port !== undefined
          ? parsePort('port', file.port, false)
          : 8080;
  const host =
    flags.host !== undefined
      ? parseHost('--host', flags.host)
      : envVar(env, 'HOST') !== undefined
        ? parseHost('HOST', envVar(env, 'HOST'))
        : file.host !== undefined
          ? parseHost('host', file.host)
          : '0.0.0.0';
  const logLevel =
    flags.logLevel !== undefined
      ? parseLogLevel('--log-level', flags.logLevel)
      : envVar(env, 'LOG_LEVEL') !== undefined
        ? parseLogLevel('LOG_LEVEL', envVar(env, 'LOG_LEVEL'))
        : file.logLevel !== undefined
          ? parseLogLevel('logLevel', file.logLevel)
          : 'info';

  const { port: _p, host: _h, logLevel: _l, auth: rawAuth, redis: rawRedis, ...rest } = file;
  let redis = fileRedis(rawRedis, configFile ?? '.', readFile);
  const envRedis = envVar(env, 'CHORUS_REDIS_URL');
  if (envRedis !== undefined) redis = { ...redis, url: redisUrl('CHORUS_REDIS_URL', envRedis) };
  const server = rest as ServerOptions;
  const auth: AuthOptions = { ...fileAuth(rawAuth, configFile ?? '.', readFile) };

  const envSecret = envVar(env, 'CHORUS_JWT_SECRET');
  if (envSecret !== undefined) auth.secret = envSecret;
  const envApiKey = envVar(env, 'CHORUS_API_KEY');
  if (envApiKey !== undefined) server.apiKey = envApiKey;
  const envOrigins = envVar(env, 'CHORUS_ALLOWED_ORIGINS');
  if (envOrigins !== undefined) server.allowedOrigins = parseOrigins('CHORUS_ALLOWED_ORIGINS', envOrigins);
  const envCompression = envVar(env, 'CHORUS_COMPRESSION');
  if (envCompression !== undefined) {
    if (envCompression !== 'on' && envCompression !== 'off') invalid('CHORUS_COMPRESSION', `must be "on" or "off", got ${JSON.stringify(envCompression)}`);
    // "on" keeps a file's compression settings; "off" wins over them.
    server.compression = envCompression === 'off' ? false : typeof server.compression === 'object' ? server.compression : true;
  }

  optionalString('nodeId', server.nodeId);
  if (server.processMetrics !== undefined && typeof server.processMetrics !== 'boolean') {
    invalid('processMetrics', `must be true or false, got ${JSON.stringify(server.processMetrics)}`);
  }
  if (server.personalChannel !== undefined && typeof server.personalChannel !== 'boolean') {
    invalid('personalChannel', `must be true or false, got ${JSON.stringify(server.personalChannel)}`);
  }

  const demo = auth.secret === undefined && auth.publicKey === undefined && auth.jwksUrl === undefined;
  if (demo) auth.secret = (options.generateSecret ?? (() => randomBytes(32).toString('base64url')))();
  server.auth = auth;

  try {
    resolveOptions(server);
  } catch (err) {
    if (err instanceof TypeError) throw new ConfigError(err.message);
    throw err;
  }
  return { port, host, logLevel, server, demo, configFile, redis, help: false };
}
