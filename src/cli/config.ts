/**
 * Standalone configuration: flags, environment, config file and defaults (highest first),
 * merged into one `StandaloneConfig`. Pure: the caller injects argv, env and a file reader,
 * so every rule here is unit-testable without touching the process. The config file is
 * checked by one schema (`config-schema.ts`); this file only merges sources and reads the
 * files the config names (PEM keys and certificates).
 */
import { redisConfigProblem, type RedisConfig } from './redis-engine-options.js';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { resolveOptions, type AuthOptions, type ServerOptions } from '../server/options.js';
import {
  configFileSchema,
  dataDirSchema,
  listenBacklogSchema,
  fallbackMessage,
  hostSchema,
  issueMessage,
  logLevelSchema,
  portSchema,
  redisUrlSchema,
  type ConfigFile,
  type LogLevel,
} from './config-schema.js';
import type { ProxyConfig, WebhookConfig } from './proxy-schema.js';

export { LOG_LEVELS, type LogLevel } from './config-schema.js';

/** Where the SQLite document store lives when there is no Redis URL. */
export const DEFAULT_DATA_DIR = './chorus-data';
/** The standalone server's listen backlog unless configured (the kernel caps it at net.core.somaxconn). */
export const DEFAULT_LISTEN_BACKLOG = 4096;

/** Every config problem is one of these; the message names the bad key. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_ERROR';
  override name = 'ConfigError';
}

/** Reads a file as UTF-8 text (throws like `fs.readFileSync` when it cannot). */
export type ReadFile = (path: string) => string;

export interface StandaloneConfig {
  /** TCP port; 0 picks a free one. Default 8080 (`PORT`, `--port`, file `port`). */
  port: number;
  /** Listen address. Default `0.0.0.0` (`HOST`, `--host`, file `host`). */
  host: string;
  /**
   * Connections the kernel queues before the server accepts them; the kernel caps it at
   * `net.core.somaxconn`. Default 4096 (`CHORUS_LISTEN_BACKLOG`, file `listenBacklog`).
   */
  listenBacklog: number;
  /** pino level. Default `info` (`LOG_LEVEL`, `--log-level`, file `logLevel`). */
  logLevel: LogLevel;
  /** Serializable server options, already validated by `resolveOptions`. Always has a JWT key source. */
  server: ServerOptions;
  /**
   * True when no JWT key and no connect proxy were configured: a random secret was generated and
   * `/demo/token` is on.
   */
  demo: boolean;
  /** The config file that was read, if any. */
  configFile: string | undefined;
  /** Redis engine settings; absent means the in-memory engine (one process). */
  redis: RedisConfig | undefined;
  /** Proxy hooks to the application's backend (file key `proxy`); absent means none. */
  proxy: ProxyConfig | undefined;
  /** Signed webhooks (file key `webhooks`); empty means none. */
  webhooks: WebhookConfig[];
  /**
   * Directory of the SQLite document store, used when there is no Redis URL (with one, documents
   * live in Redis). Default `./chorus-data` (`CHORUS_DATA_DIR`, file `dataDir`).
   */
  dataDir: string;
  /** `--help` was given: print usage and exit. Nothing else is meaningful then. */
  help: boolean;
}

export interface LoadOptions {
  /** Makes the demo-mode secret. Default: 32 random bytes, base64url. */
  generateSecret?: () => string;
}

export type { RedisConfig, RedisTlsConfig } from './redis-engine-options.js';

function invalid(key: string, message: string): never {
  throw new ConfigError(`invalid option ${key}: ${message}`);
}

/** A value checked by one of the schema's parts, with the key (flag, env var, file key) it came from. */
function checked<T extends z.ZodType>(schema: T, key: string, value: unknown): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) invalid(key, result.error.issues[0]?.message ?? 'is invalid');
  return result.data;
}

interface Flags {
  port?: string;
  host?: string;
  config?: string;
  logLevel?: string;
  help: boolean;
}

/** The serve command's flags, as `node:util` `parseArgs` options. */
const FLAG_OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  config: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Parses `--name value` and `--name=value` flags with `node:util`'s `parseArgs`; anything
 * else (unknown flags, positional arguments, a flag without its value) is a ConfigError.
 */
export function parseFlags(argv: readonly string[]): Flags {
  // Non-strict, so every problem is reported here in our own words, naming the argument.
  const { tokens } = parseArgs({ args: [...argv], options: FLAG_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const flags: Flags = { help: false };
  for (const token of tokens) {
    if (token.kind === 'positional') invalid(JSON.stringify(token.value), 'unknown command-line argument (see --help)');
    if (token.kind !== 'option') continue; // the `--` terminator: what follows is positional
    if (token.name === 'help' || token.name === 'h') {
      flags.help = true;
      continue;
    }
    const spec = (FLAG_OPTIONS as Record<string, { type: string }>)[token.name];
    if (spec === undefined || spec.type !== 'string') invalid(token.rawName, 'unknown command-line argument (see --help)');
    // `--host --port 1`: a separate value that looks like a long flag is a missing value.
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('--'))) invalid(token.rawName, 'needs a value');
    if (token.name === 'log-level') flags.logLevel = token.value;
    else flags[token.name as 'port' | 'host' | 'config'] = token.value;
  }
  return flags;
}

/** An env var, with empty strings treated as unset (as most deploy tools write them). */
function envVar(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** A port from a flag or env var (text): digits only, then the schema's range check. */
function textPort(key: string, value: string): number {
  return checked(portSchema, key, /^\s*\d+\s*$/.test(value) ? Number(value) : value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads, parses and validates the config file against the schema. */
function readConfigFile(path: string, readFile: ReadFile, source: string): ConfigFile {
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
  const result = configFileSchema.safeParse(parsed, { error: fallbackMessage });
  if (!result.success) {
    const [key, message] = issueMessage(result.error.issues[0]!, path);
    invalid(key, message);
  }
  return result.data;
}

/** Reads a PEM file named by `key` (relative to the config file). */
function readPem(key: string, file: string, configPath: string, readFile: ReadFile, marker: string, notPem: (path: string) => string): string {
  const path = resolve(dirname(configPath), file);
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    invalid(key, `cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!text.includes(marker)) invalid(key, notPem(path));
  return text;
}

/** The file's `auth`, with `publicKeyFile` read into `publicKey`. */
function fileAuth(raw: ConfigFile['auth'], configPath: string, readFile: ReadFile): AuthOptions {
  if (raw === undefined) return {};
  const { publicKeyFile, ...auth } = raw;
  if (publicKeyFile !== undefined) {
    auth.publicKey = readPem('auth.publicKeyFile', publicKeyFile, configPath, readFile, '-----BEGIN PUBLIC KEY-----', () =>
      'must be a PEM (SPKI) public key ("-----BEGIN PUBLIC KEY-----")',
    );
  }
  return auth as AuthOptions;
}

/** The file's `redis`, with the `tls.*File` PEM files read. */
function fileRedis(raw: ConfigFile['redis'], configPath: string, readFile: ReadFile): RedisConfig | undefined {
  if (raw === undefined) return undefined;
  const { tls: rawTls, ...redis } = raw;
  if (rawTls === undefined) return redis;
  const { caFile, certFile, keyFile, ...tls } = rawTls;
  const pem = (key: string, file: string | undefined): string | undefined =>
    file === undefined ? undefined : readPem(`redis.tls.${key}`, file, configPath, readFile, '-----BEGIN ', (path) => `${JSON.stringify(path)} is not a PEM file`);
  const ca = pem('caFile', caFile);
  const cert = pem('certFile', certFile);
  const key = pem('keyFile', keyFile);
  return { ...redis, tls: { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}), ...tls } };
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

/** First defined of flag, env var, file value: checked with the key it came from. */
function pick<T>(
  sources: Array<[key: string, value: unknown]>,
  check: (key: string, value: unknown) => T,
  fallback: T,
): T {
  for (const [key, value] of sources) if (value !== undefined) return check(key, value);
  return fallback;
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
    return { port: 8080, host: '0.0.0.0', listenBacklog: DEFAULT_LISTEN_BACKLOG, logLevel: 'info', server: {}, demo: false, configFile: undefined, redis: undefined, proxy: undefined, webhooks: [], dataDir: DEFAULT_DATA_DIR, help: true };
  }

  const configFile = flags.config ?? envVar(env, 'CHORUS_CONFIG');
  const configSource = flags.config !== undefined ? '--config' : 'CHORUS_CONFIG';
  const file: ConfigFile = configFile === undefined ? {} : readConfigFile(configFile, readFile, configSource);

  const port = pick(
    [['--port', flags.port], ['PORT', envVar(env, 'PORT')]],
    (key, value) => textPort(key, value as string),
    file.port ?? 8080,
  );
  const host = pick([['--host', flags.host], ['HOST', envVar(env, 'HOST')]], (key, value) => checked(hostSchema, key, value), file.host ?? '0.0.0.0');
  const logLevel = pick(
    [['--log-level', flags.logLevel], ['LOG_LEVEL', envVar(env, 'LOG_LEVEL')]],
    (key, value) => checked(logLevelSchema, key, value),
    file.logLevel ?? 'info',
  );

  const { $schema: _s, port: _p, host: _h, logLevel: _l, auth: rawAuth, redis: rawRedis, proxy, webhooks, dataDir: fileDataDir, listenBacklog: fileBacklog, ...rest } = file;
  const listenBacklog = pick(
    [['CHORUS_LISTEN_BACKLOG', envVar(env, 'CHORUS_LISTEN_BACKLOG')]],
    (key, value) => checked(listenBacklogSchema, key, /^\d+$/.test(String(value)) ? Number(value) : value),
    fileBacklog ?? DEFAULT_LISTEN_BACKLOG,
  );
  const dataDir = pick([['CHORUS_DATA_DIR', envVar(env, 'CHORUS_DATA_DIR')]], (key, value) => checked(dataDirSchema, key, value), fileDataDir ?? DEFAULT_DATA_DIR);
  let redis = fileRedis(rawRedis, configFile ?? '.', readFile);
  const envRedis = envVar(env, 'CHORUS_REDIS_URL');
  if (envRedis !== undefined) redis = { ...redis, url: checked(redisUrlSchema, 'CHORUS_REDIS_URL', envRedis) };
  const redisProblem = redis ? redisConfigProblem(redis) : undefined;
  if (redisProblem) invalid(redisProblem.key, redisProblem.problem);
  const server = rest as ServerOptions;
  const auth = fileAuth(rawAuth, configFile ?? '.', readFile);

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

  const hasKey = auth.secret !== undefined || auth.publicKey !== undefined || auth.jwksUrl !== undefined;
  // With a connect proxy the backend says who connects: a JWT key is optional, and there is no demo mode.
  const demo = !hasKey && proxy?.connect === undefined;
  if (demo) auth.secret = (options.generateSecret ?? (() => randomBytes(32).toString('base64url')))();
  server.auth = auth;

  try {
    // The standalone server passes the connect proxy as `authenticate`; it stands in for it here.
    resolveOptions(proxy?.connect && !hasKey ? { ...server, authenticate: () => Promise.reject(new Error('unused')) } : server);
  } catch (err) {
    if (err instanceof TypeError) throw new ConfigError(err.message);
    throw err;
  }
  return { port, host, listenBacklog, logLevel, server, demo, configFile, redis, proxy, webhooks: webhooks ?? [], dataDir, help: false };
}
