import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import { tokenFromRequest } from '../src/server/auth.js';
import { SECRET, signToken, startServer, TestSocket, upgradeStatus, type TestServer } from './helpers.js';

describe('handshake authentication: every reject answers before the upgrade', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.close());

  const cases: Array<[string, () => Promise<string | undefined>, number]> = [
    ['missing token', async () => undefined, 401],
    ['malformed token', async () => 'not.a.jwt', 401],
    ['garbage token', async () => 'abc', 401],
    ['wrong signature', async () => signToken('ada', { secret: 'another-secret-another-secret-xx' }), 401],
    ['expired token', async () => signToken('ada', { expSeconds: -60 }), 401],
    ['not yet valid', async () => signToken('ada', { claims: { nbf: Math.floor(Date.now() / 1000) + 600 } }), 401],
    [
      'no sub',
      async () =>
        new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET)),
      401,
    ],
    [
      'alg none',
      async () => {
        const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: 'ada', exp: Math.floor(Date.now() / 1000) + 60 })}.`;
      },
      401,
    ],
    ['valid token', async () => signToken('ada'), 101],
  ];
  for (const [name, token, status] of cases) {
    test(`${name} -> ${status}`, async () => {
      const t = await token();
      const result = await upgradeStatus(t === undefined ? s.wsUrl : `${s.wsUrl}?token=${encodeURIComponent(t)}`);
      assert.equal(result.status, status);
      if (status === 401) {
        const body = JSON.parse(result.body);
        assert.equal(body.error.code, 'UNAUTHORIZED');
        if (t) assert.ok(!result.body.includes(t), 'the token is not echoed');
      }
    });
  }

  test('Authorization: Bearer header works and wins over the query', async () => {
    const good = await signToken('ada');
    assert.equal((await upgradeStatus(`${s.wsUrl}?token=bad`, { authorization: `Bearer ${good}` })).status, 101);
    assert.equal((await upgradeStatus(s.wsUrl, { authorization: 'Bearer nope' })).status, 401);
  });

  test('origin: none allowed, same origin allowed, foreign origin 403', async () => {
    const token = await signToken('ada');
    const url = `${s.wsUrl}?token=${token}`;
    assert.equal((await upgradeStatus(url)).status, 101);
    assert.equal((await upgradeStatus(url, { origin: `http://127.0.0.1:${s.port}` })).status, 101);
    const foreign = await upgradeStatus(url, { origin: 'http://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal(JSON.parse(foreign.body).error.code, 'ORIGIN_NOT_ALLOWED');
    assert.equal((await upgradeStatus(url, { origin: 'null' })).status, 403);
  });

  test('wrong path -> 404 before the upgrade', async () => {
    const r = await upgradeStatus(`ws://127.0.0.1:${s.port}/other?token=${await signToken('ada')}`);
    assert.equal(r.status, 404);
  });

  test('auth failures are counted in metrics', async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(text, /chorus_auth_failures_total\{reason="token"\} [1-9]/);
    assert.match(text, /chorus_auth_failures_total\{reason="origin"\} [1-9]/);
  });
});

describe('origin allow-list', () => {
  test('listed origins pass, others get 403, * allows all', async () => {
    const s = await startServer({ allowedOrigins: ['https://app.example.com'] });
    const star = await startServer({ allowedOrigins: ['*'] });
    try {
      const token = await signToken('ada');
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`, { origin: 'https://app.example.com' })).status, 101);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`, { origin: `http://127.0.0.1:${s.port}` })).status, 403);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 101);
      assert.equal((await upgradeStatus(`${star.wsUrl}?token=${token}`, { origin: 'http://anything.test' })).status, 101);
    } finally {
      await s.close();
      await star.close();
    }
  });
});

describe('asymmetric keys and JWKS', () => {
  test('RS256 public key', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const s = await startServer({ auth: { publicKey: await exportSPKI(publicKey) } });
    try {
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('ada').setExpirationTime('1h').sign(privateKey);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 101);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${await signToken('ada')}`)).status, 401, 'HS256 is not accepted');
    } finally {
      await s.close();
    }
  });

  test('ES256 public key (algorithm taken from the key)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const s = await startServer({ auth: { publicKey: await exportSPKI(publicKey) } });
    try {
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('ada').setExpirationTime('1h').sign(privateKey);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 101);
    } finally {
      await s.close();
    }
  });

  test('Ed25519 public key (EdDSA, algorithm taken from the key)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const s = await startServer({ auth: { publicKey: await exportSPKI(publicKey) } });
    try {
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA' }).setSubject('ada').setExpirationTime('1h').sign(privateKey);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 101);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${await signToken('ada')}`)).status, 401, 'HS256 is not accepted');
    } finally {
      await s.close();
    }
  });

  test('JWKS URL served over loopback', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const jwks = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    jwks.listen(0, '127.0.0.1');
    await once(jwks, 'listening');
    const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
    const s = await startServer({ auth: { jwksUrl: url } });
    try {
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('ada').setExpirationTime('1h').sign(privateKey);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${token}`)).status, 101);
      const other = await generateKeyPair('RS256');
      const forged = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('ada').setExpirationTime('1h').sign(other.privateKey);
      assert.equal((await upgradeStatus(`${s.wsUrl}?token=${forged}`)).status, 401);
    } finally {
      await s.close();
      jwks.closeAllConnections();
      jwks.close();
    }
  });

  test('authentication slower than the handshake timeout -> 503 TIMEOUT', async () => {
    const s = await startServer({
      authenticate: () => new Promise(() => {}),
      limits: { handshakeTimeoutMs: 100 },
    });
    try {
      const r = await upgradeStatus(s.wsUrl);
      assert.equal(r.status, 503);
      assert.equal(JSON.parse(r.body).error.code, 'TIMEOUT');
    } finally {
      await s.close();
    }
  });
});

describe('token expiry during a connection', () => {
  test('an expired token closes the connection with 4001', async () => {
    const s = await startServer({ heartbeat: { intervalMs: 20, timeoutMs: 5000 }, auth: { secret: SECRET, clockToleranceSec: 0 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada', { expSeconds: 1 }));
      const expiresAt = (a.frames[0]!.data as any).expiresAt;
      assert.ok(expiresAt > Date.now());
      // `find`: the token's expiry is whole seconds away, so it can fall within ms of the
      // connected frame, and the disconnect frame can arrive in the same message.
      const disconnect = await a.find((f) => f.event === 'disconnect', 5000);
      assert.deepEqual(disconnect.data, { code: 4001, reason: 'token expired', reconnect: true });
      const { code } = await a.closed;
      assert.equal(code, 4001);
    } finally {
      await s.close();
    }
  });

  test('refresh with a new token extends the connection; wrong user or bad token is TOKEN_INVALID', async () => {
    const s = await startServer({ heartbeat: { intervalMs: 20, timeoutMs: 5000 }, auth: { secret: SECRET, clockToleranceSec: 0 } });
    try {
      const a = await TestSocket.connect(s.wsUrl, await signToken('ada', { expSeconds: 1 }));
      assert.equal(((await a.request('refresh', { token: await signToken('bob') })).data as any).code, 'TOKEN_INVALID');
      assert.equal(((await a.request('refresh', { token: 'junk' })).data as any).code, 'TOKEN_INVALID');
      assert.equal(((await a.request('refresh', { token: await signToken('ada', { expSeconds: -5 }) })).data as any).code, 'TOKEN_INVALID');
      const ack = await a.ok('refresh', { token: await signToken('ada', { expSeconds: 60 }) });
      assert.ok(ack.expiresAt > Date.now() + 50000);
      // Past the first token's expiry, still connected: wait for the pings to prove it.
      const start = Date.now();
      while (Date.now() - start < 1500) await a.next((f) => f.event === 'ping', 2000);
      assert.equal(a.closeCode, undefined);
      a.close();
    } finally {
      await s.close();
    }
  });
});

describe('tokenFromRequest: where a handshake carries its token', () => {
  const req = (url: string, authorization?: string) => ({ url, headers: authorization ? { authorization } : {} }) as unknown as http.IncomingMessage;

  test('the `token` query parameter as URLSearchParams reads it, escapes decoded; Authorization: Bearer first', () => {
    const cases: Array<[string, string | undefined]> = [
      ['/ws?token=a.b-c_d', 'a.b-c_d'],
      ['/ws?x=1&token=a.b&token=second', 'a.b'],
      ['/ws?xtoken=no&token=yes', 'yes'],
      ['/ws?token=', undefined],
      ['/ws?token', undefined],
      ['/ws?tokens=a', undefined],
      ['/ws', undefined],
      ['/ws?token=a%2Eb+c', 'a.b c'],
      ['/ws?a=%26token%3Dx&token=real', 'real'],
    ];
    for (const [url, expected] of cases) {
      assert.equal(tokenFromRequest(req(url)), expected, url);
      const reference = new URLSearchParams(url.split('?')[1] ?? '').get('token') || undefined;
      assert.equal(expected, reference, `the same as URLSearchParams for ${url}`);
    }
    assert.equal(tokenFromRequest(req('/ws?token=query', 'Bearer header')), 'header');
    assert.equal(tokenFromRequest(req('/ws?token=query', 'Basic abc')), 'query');
  });
});
