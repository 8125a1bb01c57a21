import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { ConfigError, loadConfig, parseOrigins, type ReadFile } from '../src/cli/config.js';
import { STANDALONE_NAMESPACES } from '../src/cli/namespaces.js';
import { ChannelRules } from '../src/server/channels.js';
import { resolveOptions } from '../src/server/options.js';
import { staticPath, WEB_ROOT, DIST_ROOT } from '../src/cli/static.js';
import { redisConfigProblem } from '../src/cli/redis-engine-options.js';
import { cleanName, demoUserId } from '../src/cli/demo.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECRET = 'x'.repeat(40);

/** A fake file system: path -> contents. Missing paths throw ENOENT like readFileSync. */
function files(map: Record<string, string>): ReadFile {
  return (path) => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return text;
  };
}
const noFiles = files({});
const fixedSecret = { generateSecret: () => 'generated-secret-for-tests' };

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw new Error(`expected a ConfigError, got ${String(err)}`);
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('loadConfig: defaults and demo mode', () => {
  it('uses the documented defaults and turns on demo mode without a key', () => {
    const c = loadConfig([], {}, noFiles, fixedSecret);
    assert.equal(c.port, 8080);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.logLevel, 'info');
    assert.equal(c.demo, true);
    assert.equal(c.help, false);
    assert.equal(c.configFile, undefined);
    assert.equal(c.server.auth?.secret, 'generated-secret-for-tests');
    assert.equal(c.server.apiKey, undefined);
    assert.equal(c.server.allowedOrigins, undefined);
  });

  it('generates a different random secret each time by default', () => {
    const a = loadConfig([], {}, noFiles).server.auth?.secret;
    const b = loadConfig([], {}, noFiles).server.auth?.secret;
    assert.ok(a && a.length >= 32);
    assert.notEqual(a, b);
  });

  it('--help short-circuits everything else', () => {
    assert.equal(loadConfig(['--help'], { PORT: 'nope' }, noFiles).help, true);
    assert.equal(loadConfig(['-h'], {}, noFiles).help, true);
  });
});

describe('loadConfig: every env var', () => {
  const cases: Array<[string, Record<string, string>, (c: ReturnType<typeof loadConfig>) => void]> = [
    ['PORT', { PORT: '9001' }, (c) => assert.equal(c.port, 9001)],
    ['PORT=0 (any free port)', { PORT: '0' }, (c) => assert.equal(c.port, 0)],
    ['HOST', { HOST: '127.0.0.1' }, (c) => assert.equal(c.host, '127.0.0.1')],
    ['LOG_LEVEL', { LOG_LEVEL: 'DEBUG' }, (c) => assert.equal(c.logLevel, 'debug')],
    [
      'CHORUS_JWT_SECRET',
      { CHORUS_JWT_SECRET: SECRET },
      (c) => {
        assert.equal(c.server.auth?.secret, SECRET);
        assert.equal(c.demo, false);
      },
    ],
    ['CHORUS_API_KEY', { CHORUS_API_KEY: 'k-123' }, (c) => assert.equal(c.server.apiKey, 'k-123')],
    [
      'CHORUS_ALLOWED_ORIGINS',
      { CHORUS_ALLOWED_ORIGINS: ' https://a.example , http://b.example:8080/,' },
      (c) => assert.deepEqual(c.server.allowedOrigins, ['https://a.example', 'http://b.example:8080']),
    ],
    ['CHORUS_ALLOWED_ORIGINS=*', { CHORUS_ALLOWED_ORIGINS: '*' }, (c) => assert.deepEqual(c.server.allowedOrigins, ['*'])],
    [
      'CHORUS_REDIS_URL',
      { CHORUS_REDIS_URL: 'rediss://:pw@redis.internal:6380/2' },
      (c) => assert.deepEqual(c.redis, { url: 'rediss://:pw@redis.internal:6380/2' }),
    ],
    ['no CHORUS_REDIS_URL: memory engine', {}, (c) => assert.equal(c.redis, undefined)],
    ['CHORUS_DATA_DIR', { CHORUS_DATA_DIR: '/var/lib/chorus' }, (c) => assert.equal(c.dataDir, '/var/lib/chorus')],
    ['no CHORUS_DATA_DIR: ./chorus-data', {}, (c) => assert.equal(c.dataDir, './chorus-data')],
    [
      'empty env vars count as unset',
      { PORT: '', HOST: ' ', CHORUS_JWT_SECRET: '', CHORUS_API_KEY: '', CHORUS_ALLOWED_ORIGINS: '', LOG_LEVEL: '' },
      (c) => {
        assert.equal(c.port, 8080);
        assert.equal(c.host, '0.0.0.0');
        assert.equal(c.demo, true);
        assert.equal(c.server.apiKey, undefined);
        assert.equal(c.server.allowedOrigins, undefined);
        assert.equal(c.logLevel, 'info');
      },
    ],
  ];
  for (const [name, env, check] of cases) {
    it(name, () => check(loadConfig([], env, noFiles, fixedSecret)));
  }

  it('dataDir: CHORUS_DATA_DIR over the file key over ./chorus-data', () => {
    const fs = files({ '/c.json': '{"dataDir": "/srv/docs"}' });
    assert.equal(loadConfig(['--config', '/c.json'], {}, fs).dataDir, '/srv/docs');
    assert.equal(loadConfig(['--config', '/c.json'], { CHORUS_DATA_DIR: '/tmp/d' }, fs).dataDir, '/tmp/d');
  });

  it('listenBacklog: CHORUS_LISTEN_BACKLOG over the file key over 4096; a bad value is named', () => {
    assert.equal(loadConfig([], {}, noFiles, fixedSecret).listenBacklog, 4096);
    const fs = files({ '/c.json': '{"listenBacklog": 1}' });
    assert.equal(loadConfig(['--config', '/c.json'], {}, fs).listenBacklog, 1);
    assert.equal(loadConfig(['--config', '/c.json'], { CHORUS_LISTEN_BACKLOG: '8192' }, fs).listenBacklog, 8192);
    assert.throws(() => loadConfig([], { CHORUS_LISTEN_BACKLOG: '0' }, noFiles, fixedSecret), /^ConfigError: invalid option CHORUS_LISTEN_BACKLOG: must be a positive integer, got 0$/);
    assert.throws(() => loadConfig([], { CHORUS_LISTEN_BACKLOG: 'lots' }, noFiles, fixedSecret), /CHORUS_LISTEN_BACKLOG: must be a positive integer, got "lots"/);
    assert.throws(() => loadConfig(['--config', '/c.json'], {}, files({ '/c.json': '{"listenBacklog": 1.5}' })), /listenBacklog: must be a positive integer, got 1.5/);
  });

  it('namespaces may be document namespaces (document: true)', () => {
    const fs = files({ '/c.json': '{"namespaces": [{"pattern": "notes:*", "document": true, "publish": "none"}]}' });
    assert.deepEqual(loadConfig(['--config', '/c.json'], {}, fs).server.namespaces, [{ pattern: 'notes:*', document: true, publish: 'none' }]);
  });

  it('CHORUS_CONFIG names the config file', () => {
    const c = loadConfig([], { CHORUS_CONFIG: '/etc/chorus.json' }, files({ '/etc/chorus.json': '{"port": 7000}' }));
    assert.equal(c.port, 7000);
    assert.equal(c.configFile, '/etc/chorus.json');
  });
});

describe('loadConfig: precedence flags > env > file > defaults', () => {
  const file = JSON.stringify({
    port: 7000,
    host: '10.0.0.1',
    logLevel: 'warn',
    apiKey: 'file-key',
    allowedOrigins: ['https://file.example'],
    auth: { secret: 'file-secret-file-secret-file-secret', issuer: 'me' },
    limits: { maxConnectionsPerUser: 3 },
  });
  const fs = files({ '/c.json': file, '/other.json': '{"port": 7100}' });

  it('file over defaults', () => {
    const c = loadConfig(['--config', '/c.json'], {}, fs);
    assert.equal(c.port, 7000);
    assert.equal(c.host, '10.0.0.1');
    assert.equal(c.logLevel, 'warn');
    assert.equal(c.server.apiKey, 'file-key');
    assert.deepEqual(c.server.allowedOrigins, ['https://file.example']);
    assert.equal(c.server.auth?.secret, 'file-secret-file-secret-file-secret');
    assert.equal(c.server.auth?.issuer, 'me');
    assert.deepEqual(c.server.limits, { maxConnectionsPerUser: 3 });
    assert.equal(c.demo, false);
  });

  it('env over file', () => {
    const env = {
      PORT: '7001',
      HOST: '10.0.0.2',
      LOG_LEVEL: 'error',
      CHORUS_API_KEY: 'env-key',
      CHORUS_ALLOWED_ORIGINS: 'https://env.example',
      CHORUS_JWT_SECRET: SECRET,
    };
    const c = loadConfig(['--config', '/c.json'], env, fs);
    assert.equal(c.port, 7001);
    assert.equal(c.host, '10.0.0.2');
    assert.equal(c.logLevel, 'error');
    assert.equal(c.server.apiKey, 'env-key');
    assert.deepEqual(c.server.allowedOrigins, ['https://env.example']);
    assert.equal(c.server.auth?.secret, SECRET);
    assert.equal(c.server.auth?.issuer, 'me', 'other auth keys from the file stay');
  });

  it('flags over env', () => {
    const env = { PORT: '7001', HOST: '10.0.0.2', LOG_LEVEL: 'error', CHORUS_CONFIG: '/c.json' };
    const c = loadConfig(['--port', '7002', '--host=127.0.0.1', '--log-level', 'debug', '--config=/other.json'], env, fs);
    assert.equal(c.port, 7002);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.configFile, '/other.json', '--config wins over CHORUS_CONFIG');
  });

  it('passes the serializable server options through', () => {
    const cfg = {
      path: '/realtime',
      auth: { secret: SECRET, audience: 'chat', clockToleranceSec: 2 },
      namespaces: [{ pattern: 'room:*', presence: true, historySize: 10 }],
      personalChannel: false,
      heartbeat: { intervalMs: 1000, timeoutMs: 3000 },
      shutdown: { drainTimeoutMs: 500, reconnectSpreadMs: 0 },
      idempotencyWindowMs: 5000,
      nodeId: 'node-a',
      ssePath: false,
      streamPath: '/live',
      cluster: { reportIntervalMs: 500 },
      limits: { maxPendingFrames: 64, resumePendingFrames: 0, maxEarlyMessages: 8, maxHeldMessages: 16 },
    };
    const c = loadConfig([], { CHORUS_CONFIG: '/s.json' }, files({ '/s.json': JSON.stringify(cfg) }));
    assert.equal(c.server.path, '/realtime');
    assert.deepEqual(c.server.namespaces, cfg.namespaces);
    assert.equal(c.server.personalChannel, false);
    assert.deepEqual(c.server.heartbeat, cfg.heartbeat);
    assert.deepEqual(c.server.shutdown, cfg.shutdown);
    assert.equal(c.server.idempotencyWindowMs, 5000);
    assert.equal(c.server.nodeId, 'node-a');
    assert.equal(c.server.auth?.audience, 'chat');
    assert.equal(c.server.ssePath, false);
    assert.equal(c.server.streamPath, '/live');
    assert.deepEqual(c.server.cluster, { reportIntervalMs: 500 });
    assert.deepEqual(c.server.limits, cfg.limits);
  });

  it('reads redis.tls PEM files relative to the config file', () => {
    const ca = '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n';
    const cert = '-----BEGIN CERTIFICATE-----\nME\n-----END CERTIFICATE-----\n';
    const key = '-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n';
    const fsTls = files({
      '/etc/chorus/c.json': JSON.stringify({
        redis: { url: 'rediss://redis.internal:6380', tls: { caFile: 'tls/ca.crt', certFile: '/abs/client.crt', keyFile: 'tls/client.key', servername: 'redis.internal' } },
      }),
      '/etc/chorus/tls/ca.crt': ca,
      '/abs/client.crt': cert,
      '/etc/chorus/tls/client.key': key,
    });
    const c = loadConfig(['--config', '/etc/chorus/c.json'], {}, fsTls);
    assert.deepEqual(c.redis, { url: 'rediss://redis.internal:6380', tls: { ca, cert, key, servername: 'redis.internal' } });
    const insecure = loadConfig(['--config', '/c.json'], {}, files({ '/c.json': JSON.stringify({ redis: { tls: { rejectUnauthorized: false } } }) }));
    assert.deepEqual(insecure.redis, { tls: { rejectUnauthorized: false } });
  });

  it('reads the Redis outcome and held-publication limits at their edges', () => {
    const c = loadConfig(['--config', '/c.json'], {}, files({ '/c.json': JSON.stringify({ redis: { outcomeTimeoutMs: 0, maxHeldPublications: 1 } }) }));
    assert.deepEqual(c.redis, { outcomeTimeoutMs: 0, maxHeldPublications: 1 });
  });

  it("maps the Redis engine's own option errors to config-file keys", () => {
    assert.equal(redisConfigProblem({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 1 }), undefined);
    assert.deepEqual(redisConfigProblem({ commandTimeoutMs: 0 }), { key: 'redis.commandTimeoutMs', problem: 'must be a positive integer, got 0' });
    assert.equal(redisConfigProblem({ tls: { cert: 'PEM' } })?.key, 'redis.tls.keyFile');
    assert.deepEqual(redisConfigProblem({ shardedPubSub: true }), { key: 'redis.shardedPubSub', problem: 'needs redis.cluster' });
    assert.equal(redisConfigProblem({ cluster: [{ host: '', port: 7000 }] })?.key, 'redis.cluster[0].host');
  });

  it('reads admission (server-paced handshakes) at its edges', () => {
    const load = (admission: unknown) => loadConfig(['--config', '/c.json'], {}, files({ '/c.json': JSON.stringify({ admission }) }));
    assert.deepEqual(load({ ratePerSecond: 0, burst: 1, maxPending: 0, maxRetryAfterSec: 1 }).server.admission, { ratePerSecond: 0, burst: 1, maxPending: 0, maxRetryAfterSec: 1 });
    assert.match(configError(() => load({ burst: 0 })), /admission\.burst.*positive integer/);
    assert.match(configError(() => load({ maxRetryAfterSec: 0 })), /admission\.maxRetryAfterSec.*positive integer/);
    assert.match(configError(() => load({ ratePerSecond: -1 })), /admission\.ratePerSecond.*non-negative integer/);
    assert.match(configError(() => load({ rate: 5 })), /admission/);
  });

  it('reads auth.publicKeyFile relative to the config file; no demo mode then', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n';
    const fsKey = files({
      '/etc/chorus/c.json': JSON.stringify({ auth: { publicKeyFile: 'keys/pub.pem', algorithms: ['ES256'] } }),
      '/etc/chorus/keys/pub.pem': pem,
    });
    const c = loadConfig(['--config', '/etc/chorus/c.json'], {}, fsKey);
    assert.equal(c.server.auth?.publicKey, pem);
    assert.deepEqual(c.server.auth?.algorithms, ['ES256']);
    assert.equal('publicKeyFile' in (c.server.auth ?? {}), false);
    assert.equal(c.demo, false);
    assert.equal(c.server.auth?.secret, undefined);
  });

  it('a jwksUrl in the file turns demo mode off', () => {
    const c = loadConfig([], { CHORUS_CONFIG: '/j.json' }, files({ '/j.json': '{"auth":{"jwksUrl":"https://id.example/jwks.json"}}' }));
    assert.equal(c.demo, false);
    assert.equal(c.server.auth?.secret, undefined);
  });
});

describe('loadConfig: errors name the bad key', () => {
  const file = (obj: unknown): ReadFile => files({ '/c.json': JSON.stringify(obj) });
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['bad PORT', () => loadConfig([], { PORT: 'eighty' }, noFiles), /^invalid option PORT: .*"eighty"/],
    ['PORT out of range', () => loadConfig([], { PORT: '70000' }, noFiles), /^invalid option PORT: /],
    ['bad --port', () => loadConfig(['--port', '-1'], {}, noFiles), /^invalid option --port: needs a value|^invalid option --port: /],
    ['bad --port value', () => loadConfig(['--port=abc'], {}, noFiles), /^invalid option --port: .*"abc"/],
    ['flag without value', () => loadConfig(['--host'], {}, noFiles), /^invalid option --host: needs a value/],
    ['unknown flag', () => loadConfig(['--verbose'], {}, noFiles), /^invalid option --verbose: unknown command-line argument/],
    ['stray argument', () => loadConfig(['serve'], {}, noFiles), /^invalid option "serve": unknown/],
    ['bad LOG_LEVEL', () => loadConfig([], { LOG_LEVEL: 'loud' }, noFiles), /^invalid option LOG_LEVEL: must be one of/],
    ['bad HOST', () => loadConfig([], { HOST: 'a b' }, noFiles), /^invalid option HOST: /],
    ['bad dataDir', () => loadConfig(['--config', '/c.json'], {}, file({ dataDir: 7 })), /^invalid option dataDir: must be a directory path/],
    [
      'bad namespace document flag',
      () => loadConfig(['--config', '/c.json'], {}, file({ namespaces: [{ pattern: 'd:*', document: 'yes' }] })),
      /^invalid option namespaces\[0\]\.document: /,
    ],
    [
      'bad CHORUS_ALLOWED_ORIGINS',
      () => loadConfig([], { CHORUS_ALLOWED_ORIGINS: 'https://ok.example,not a url' }, noFiles),
      /^invalid option CHORUS_ALLOWED_ORIGINS: "not a url"/,
    ],
    [
      'origin with a path',
      () => loadConfig([], { CHORUS_ALLOWED_ORIGINS: 'https://ok.example/app' }, noFiles),
      /^invalid option CHORUS_ALLOWED_ORIGINS: /,
    ],
    [
      'nested bad value (from resolveOptions)',
      () => loadConfig(['--config', '/c.json'], {}, file({ limits: { maxConnectionsPerUser: 'x' } })),
      /^invalid option limits\.maxConnectionsPerUser: must be a positive integer, got "x"$/,
    ],
    [
      'nested unknown key (from resolveOptions)',
      () => loadConfig(['--config', '/c.json'], {}, file({ limits: { maxConections: 3 } })),
      /^invalid option limits\.maxConections: unknown key/,
    ],
    [
      'bad namespace',
      () => loadConfig(['--config', '/c.json'], {}, file({ namespaces: [{ pattern: 'a:*', publish: 'everyone' }] })),
      /^invalid option namespaces\[0\]\.publish: /,
    ],
    ['unknown top-level key', () => loadConfig(['--config', '/c.json'], {}, file({ prot: 1 })), /^invalid option prot: unknown key/],
    ['unknown auth key', () => loadConfig(['--config', '/c.json'], {}, file({ auth: { secrett: 'x' } })), /^invalid option auth\.secrett: unknown key/],
    ['bad port in file', () => loadConfig(['--config', '/c.json'], {}, file({ port: '80' })), /^invalid option port: /],
    ['bad logLevel in file', () => loadConfig(['--config', '/c.json'], {}, file({ logLevel: 3 })), /^invalid option logLevel: /],
    ['bad host in file', () => loadConfig(['--config', '/c.json'], {}, file({ host: '' })), /^invalid option host: /],
    ['bad path', () => loadConfig(['--config', '/c.json'], {}, file({ path: 'ws' })), /^invalid option path: /],
    ['bad auth.jwksUrl', () => loadConfig(['--config', '/c.json'], {}, file({ auth: { jwksUrl: 'nope' } })), /^invalid option auth\.jwksUrl: /],
    [
      'bad auth.algorithms',
      () => loadConfig(['--config', '/c.json'], {}, file({ auth: { secret: SECRET, algorithms: ['none'] } })),
      /^invalid option auth\.algorithms: /,
    ],
    ['bad auth.publicKey', () => loadConfig(['--config', '/c.json'], {}, file({ auth: { publicKey: 'abc' } })), /^invalid option auth\.publicKey: must be a PEM/],
    [
      'missing auth.publicKeyFile',
      () => loadConfig(['--config', '/c.json'], {}, file({ auth: { publicKeyFile: 'missing.pem' } })),
      /^invalid option auth\.publicKeyFile: cannot read "\/missing\.pem" \(ENOENT\)/,
    ],
    ['bad CHORUS_REDIS_URL', () => loadConfig([], { CHORUS_REDIS_URL: 'http://x' }, noFiles), /^invalid option CHORUS_REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL$/],
    ['unknown redis key', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { host: 'x' } })), /^invalid option redis\.host: unknown key/],
    ['bad redis.gapCheckIntervalMs', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { gapCheckIntervalMs: -1 } })), /^invalid option redis\.gapCheckIntervalMs: /],
    ['bad redis.commandTimeoutMs', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { commandTimeoutMs: 0 } })), /^invalid option redis\.commandTimeoutMs: /],
    ['bad redis.outcomeTimeoutMs', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { outcomeTimeoutMs: -1 } })), /^invalid option redis\.outcomeTimeoutMs: /],
    ['bad redis.maxHeldPublications', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { maxHeldPublications: 0 } })), /^invalid option redis\.maxHeldPublications: /],
    ['sentinels without a name', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { sentinels: [{ host: 'a', port: 26379 }] } })), /^invalid option redis\.name: is required/],
    ['bad cluster node', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { cluster: [{ host: 'a', port: 'x' }] } })), /^invalid option redis\.cluster\[0\]\.port: /],
    ['redis.tls not an object', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { tls: true } })), /^invalid option redis\.tls: must be an object/],
    ['unknown redis.tls key', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { tls: { ca: 'x' } } })), /^invalid option redis\.tls\.ca: unknown key/],
    [
      'missing redis.tls.caFile',
      () => loadConfig(['--config', '/c.json'], {}, file({ redis: { tls: { caFile: 'ca.crt' } } })),
      /^invalid option redis\.tls\.caFile: cannot read "\/ca\.crt" \(ENOENT\)/,
    ],
    [
      'redis.tls.caFile not PEM',
      () => loadConfig(['--config', '/c.json'], {}, files({ '/c.json': JSON.stringify({ redis: { tls: { caFile: 'ca.crt' } } }), '/ca.crt': 'junk' })),
      /^invalid option redis\.tls\.caFile: "\/ca\.crt" is not a PEM file/,
    ],
    ['empty redis.tls.caFile', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { tls: { caFile: '' } } })), /^invalid option redis\.tls\.caFile: must be a file path/],
    [
      'redis.tls.certFile without keyFile',
      () =>
        loadConfig(['--config', '/c.json'], {}, files({ '/c.json': JSON.stringify({ redis: { tls: { certFile: 'c.crt' } } }), '/c.crt': '-----BEGIN CERTIFICATE-----' })),
      /^invalid option redis\.tls\.keyFile: certFile and keyFile go together/,
    ],
    ['bad redis.tls.rejectUnauthorized', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { tls: { rejectUnauthorized: 'no' } } })), /^invalid option redis\.tls\.rejectUnauthorized: must be true or false/],
    ['bad redis.tls.servername', () => loadConfig(['--config', '/c.json'], {}, file({ redis: { tls: { servername: 1 } } })), /^invalid option redis\.tls\.servername: /],
    ['bad presenceTtlMs', () => loadConfig(['--config', '/c.json'], {}, file({ presenceTtlMs: -1 })), /^invalid option presenceTtlMs: /],
    ['bad personalChannel', () => loadConfig(['--config', '/c.json'], {}, file({ personalChannel: 'yes' })), /^invalid option personalChannel: /],
    ['bad ssePath', () => loadConfig(['--config', '/c.json'], {}, file({ ssePath: 'sse' })), /^invalid option ssePath: must start with "\/" or be false/],
    ['bad streamPath', () => loadConfig(['--config', '/c.json'], {}, file({ streamPath: true })), /^invalid option streamPath: must start with "\/" or be false/],
    ['bad cluster', () => loadConfig(['--config', '/c.json'], {}, file({ cluster: { replyTimeoutMs: 0 } })), /^invalid option cluster\.replyTimeoutMs: /],
    ['bad limits.maxHeldMessages', () => loadConfig(['--config', '/c.json'], {}, file({ limits: { maxHeldMessages: 0 } })), /^invalid option limits\.maxHeldMessages: /],
    ['bad heartbeat', () => loadConfig(['--config', '/c.json'], {}, file({ heartbeat: { intervalMs: 5000, timeoutMs: 1000 } })), /^invalid option heartbeat\.timeoutMs: /],
    ['config file is not an object', () => loadConfig(['--config', '/c.json'], {}, file([1, 2])), /^invalid option --config: .*must hold a JSON object/],
    [
      'unreadable config file',
      () => loadConfig([], { CHORUS_CONFIG: '/nope.json' }, noFiles),
      /^invalid option CHORUS_CONFIG: cannot read config file "\/nope\.json" \(ENOENT\)/,
    ],
    [
      'bad JSON in the config file',
      () => loadConfig(['--config', '/c.json'], {}, files({ '/c.json': '{"port": 80,}' })),
      /^invalid option --config: config file "\/c\.json" is not valid JSON/,
    ],
  ];
  for (const [name, fn, pattern] of cases) {
    it(name, () => assert.match(configError(fn), pattern));
  }

  it('a secret in the config never appears in an error message', () => {
    const msg = configError(() =>
      loadConfig(['--config', '/c.json'], { CHORUS_API_KEY: 'api-key-value' }, file({ auth: { secret: 'topsecret-value' }, limits: { rateBurst: 0 } })),
    );
    assert.doesNotMatch(msg, /topsecret-value|api-key-value/);
  });
});

describe('helpers', () => {
  it('the standalone namespaces include doc:* as a document namespace', () => {
    const rules = new ChannelRules(resolveOptions({ auth: { secret: SECRET }, namespaces: STANDALONE_NAMESPACES }).namespaces);
    assert.equal(rules.resolve('doc:notes').document, true);
    assert.equal(rules.resolve('chat:lobby').document, false);
  });

  it('parseOrigins trims, drops empties and trailing slashes', () => {
    assert.deepEqual(parseOrigins('X', 'http://a.test/, ,https://b.test:444'), ['http://a.test', 'https://b.test:444']);
  });

  it('staticPath maps mounts and rejects traversal', () => {
    assert.equal(staticPath('/'), `${WEB_ROOT}/index.html`);
    assert.equal(staticPath('/web/style.css'), `${WEB_ROOT}/style.css`);
    assert.equal(staticPath('/dashboard'), `${WEB_ROOT}/dashboard.html`);
    assert.equal(staticPath('/editor'), `${WEB_ROOT}/editor.html`);
    assert.equal(staticPath('/assets/chat.js'), `${DIST_ROOT}/web/chat.js`);
    assert.equal(staticPath('/lib/client/index.js'), `${DIST_ROOT}/client/index.js`);
    assert.equal(staticPath('/lib/protocol/codes.js'), `${DIST_ROOT}/protocol/codes.js`);
    for (const bad of [
      '/web/../package.json',
      '/web/%2e%2e/package.json',
      '/web/..%2fpackage.json',
      '/lib/client/../server/index.js',
      '/lib/client/%2Fetc%2Fpasswd',
      '/lib/client//etc/passwd',
      '/web/.env',
      '/web/a%00.js',
      '/web/%E0%A4%A',
      '/web/..\\package.json',
      '/web/',
      '/src/cli/main.ts',
      '/package.json',
    ]) {
      const p = staticPath(bad);
      assert.ok(p === undefined || p.startsWith(WEB_ROOT + '/') || p.startsWith(DIST_ROOT + '/'), `${bad} -> ${p}`);
      assert.ok(p === undefined || !p.includes('..'), `${bad} -> ${p}`);
    }
    assert.equal(staticPath('/web/../package.json'), undefined);
    assert.equal(staticPath('/lib/client//etc/passwd'), undefined);
  });

  it('demo user ids are sanitized with a random suffix; names are checked', () => {
    assert.match(demoUserId('Ada Lovelace'), /^ada-lovelace-[0-9a-f]{6}$/);
    assert.match(demoUserId('<script>'), /^script-[0-9a-f]{6}$/);
    assert.match(demoUserId('日本'), /^guest-[0-9a-f]{6}$/);
    assert.notEqual(demoUserId('bob'), demoUserId('bob'));
    assert.equal(cleanName('  Ada \n Lovelace '), 'Ada Lovelace');
    assert.equal(cleanName(''), undefined);
    assert.equal(cleanName('x'.repeat(41)), undefined);
    assert.equal(cleanName(42), undefined);
  });
});

// ---------- end to end: the `chorus` command ----------

interface Proc {
  lines: string[];
  stderr: string[];
  exit: Promise<[number | null, NodeJS.Signals | null]>;
  waitForLine(pred: (obj: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(signal: NodeJS.Signals): void;
}

/** Documents' SQLite file of spawned servers: a temp dir, not ./chorus-data in the repository. */
const CLI_DATA_DIR = mkdtempSync(join(tmpdir(), 'chorus-cli-data-'));
process.once('exit', () => rmSync(CLI_DATA_DIR, { recursive: true, force: true }));

function startCli(env: Record<string, string>, args: string[] = []): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', CHORUS_DATA_DIR: CLI_DATA_DIR, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters) w();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exit = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  exit.then(() => {
    for (const w of waiters) w();
  });
  let exited = false;
  exit.then(() => (exited = true));

  function parsed(): Record<string, unknown>[] {
    return lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  return {
    lines,
    stderr,
    exit,
    kill: (signal) => child.kill(signal),
    waitForLine(pred, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = parsed().find(pred);
          if (hit) {
            done();
            resolve(hit);
          } else if (exited) {
            done();
            reject(new Error(`process exited before the line appeared; stdout:\n${lines.join('\n')}\nstderr:\n${stderr.join('')}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for a log line; stdout:\n${lines.join('\n')}\nstderr:\n${stderr.join('')}`));
        }, timeoutMs);
        timer.unref();
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

function httpRequest(
  port: number,
  path: string,
  method = 'GET',
  body?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('chorus command (end to end)', { timeout: 60_000 }, () => {
  it('starts in demo mode on port 0, serves /healthz and the page, stops on SIGTERM with exit 0', async () => {
    const proc = startCli({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' });
    try {
      const listening = await proc.waitForLine((o) => o.msg === 'listening');
      const port = listening.port as number;
      assert.ok(Number.isInteger(port) && port > 0, `port in the listening line: ${JSON.stringify(listening)}`);
      assert.equal(listening.url, `http://127.0.0.1:${port}`);

      const health = await httpRequest(port, '/healthz');
      assert.equal(health.status, 200);

      const page = await httpRequest(port, '/');
      assert.equal(page.status, 200);
      assert.match(String(page.headers['content-type']), /^text\/html/);
      assert.match(page.body, /<title>Chorus chat demo<\/title>/);
      const js = await httpRequest(port, '/assets/chat.js');
      assert.equal(js.status, 200);
      assert.match(String(js.headers['content-type']), /^text\/javascript/);
      assert.equal((await httpRequest(port, '/web/../package.json')).status, 404);
      assert.equal((await httpRequest(port, '/web/%2e%2e/package.json')).status, 404);
      assert.equal((await httpRequest(port, '/nope')).status, 404);

      // The HTTP API is off without CHORUS_API_KEY.
      const api = await httpRequest(port, '/api/channels');
      assert.equal(api.status, 401);

      // Demo sign-in issues a token; it must never be logged.
      const tokenRes = await httpRequest(port, '/demo/token', 'POST', JSON.stringify({ name: 'Ada' }));
      assert.equal(tokenRes.status, 200);
      const { token, user } = JSON.parse(tokenRes.body) as { token: string; user: string };
      assert.match(user, /^ada-[0-9a-f]{6}$/);
      assert.equal(token.split('.').length, 3);
      assert.equal((await httpRequest(port, '/demo/token', 'POST', '{"name":""}')).status, 400);
      assert.equal((await httpRequest(port, '/demo/token', 'POST', 'not json')).status, 400);
      assert.equal((await httpRequest(port, '/demo/token')).status, 405);

      const warn = await proc.waitForLine((o) => o.level === 40 && /DEMO MODE/.test(String(o.msg)));
      assert.match(String(warn.msg), /anyone/i);
      await proc.waitForLine((o) => o.level === 30 && /HTTP API disabled/.test(String(o.msg)));

      // A connected client is told to go away (1001) on SIGTERM, and the process still exits 0.
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}`);
      const firstFrame = new Promise<string>((resolve, reject) => {
        ws.once('message', (data) => resolve(String(data)));
        ws.once('error', reject);
      });
      const closed = once(ws, 'close') as Promise<[number, Buffer]>;
      assert.match(await firstFrame, /"event":"connected"/);
      proc.kill('SIGTERM');
      const [closeCode] = await closed;
      assert.equal(closeCode, 1001);
      const [code, signal] = await proc.exit;
      assert.equal(signal, null);
      assert.equal(code, 0, `stderr: ${proc.stderr.join('')}`);

      const output = proc.lines.join('\n') + proc.stderr.join('');
      assert.ok(!output.includes(token), 'a token was logged');
      assert.ok(!output.includes(token.split('.')[2]!), 'a token signature was logged');
      assert.doesNotMatch(output, /"secret"\s*:\s*"(?!\[redacted\])/);
    } finally {
      proc.kill('SIGKILL');
    }
  });

  it('with CHORUS_JWT_SECRET and CHORUS_API_KEY: no demo mode, no secrets in the logs, API on', async () => {
    const apiKey = 'api-key-that-must-not-be-logged';
    const secret = 'jwt-secret-that-must-not-be-logged-0123456789';
    const proc = startCli({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'debug', CHORUS_JWT_SECRET: secret, CHORUS_API_KEY: apiKey });
    try {
      const listening = await proc.waitForLine((o) => o.msg === 'listening');
      const port = listening.port as number;
      assert.equal(listening.demo, false);
      assert.equal((await httpRequest(port, '/demo/token', 'POST', '{"name":"x"}')).status, 404);
      const res = await new Promise<number>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port, path: '/api/channels', headers: { authorization: `Bearer ${apiKey}` } },
          (r) => {
            r.resume();
            resolve(r.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(res, 200);
      proc.kill('SIGINT');
      const [code] = await proc.exit;
      assert.equal(code, 0);
      const output = proc.lines.join('\n') + proc.stderr.join('');
      assert.ok(!/DEMO MODE/.test(output));
      assert.ok(!output.includes(apiKey), 'the API key was logged');
      assert.ok(!output.includes(secret), 'the JWT secret was logged');
    } finally {
      proc.kill('SIGKILL');
    }
  });

  it('a config error exits 1 with a message naming the key', async () => {
    const proc = startCli({ PORT: 'abc' });
    const [code] = await proc.exit;
    assert.equal(code, 1);
    assert.match(proc.stderr.join(''), /^chorus: config error: invalid option PORT: /m);
  });

  it('--help prints usage and exits 0', async () => {
    const proc = startCli({}, ['--help']);
    const [code] = await proc.exit;
    assert.equal(code, 0);
    assert.match(proc.lines.join('\n'), /Usage: chorus/);
    assert.match(proc.lines.join('\n'), /CHORUS_JWT_SECRET/);
  });
});
