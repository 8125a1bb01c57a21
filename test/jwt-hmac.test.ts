import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { SignJWT, type JWTHeaderParameters } from 'jose';
import { verifyHmacJwt } from '../src/server/jwt-hmac.js';

const SECRET = 'fast-path-secret-0123456789-abcdefgh';
const KEY = Buffer.from(SECRET);
const NOW = 1_800_000_000;

async function sign(claims: Record<string, unknown>, header: Partial<JWTHeaderParameters> = {}, secret = SECRET): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', ...header }).sign(new TextEncoder().encode(secret));
}

describe('verifyHmacJwt: the synchronous HMAC fast path only ever accepts plain valid tokens', () => {
  test('valid tokens give their claims (HS256, HS512, typ and kid allowed, exp and nbf inside the tolerance)', async () => {
    assert.equal(verifyHmacJwt(await sign({ sub: 'ada', exp: NOW + 60 }), KEY, ['HS256'], NOW, 5)?.sub, 'ada');
    assert.equal(verifyHmacJwt(await sign({ sub: 'ada' }, { alg: 'HS512', typ: 'JWT', kid: 'k1' }), KEY, ['HS256', 'HS512'], NOW, 5)?.sub, 'ada');
    assert.equal(verifyHmacJwt(await sign({ sub: 'ada', exp: NOW - 4 }), KEY, ['HS256'], NOW, 5)?.sub, 'ada');
    assert.equal(verifyHmacJwt(await sign({ sub: 'ada', nbf: NOW + 5 }), KEY, ['HS256'], NOW, 5)?.sub, 'ada');
  });

  const cases: Array<[string, () => Promise<string>, string[]?]> = [
    ['wrong secret', () => sign({ sub: 'ada' }, {}, 'another-secret-0123456789-abcdefghij')],
    ['tampered payload', async () => {
      const [h, , s] = (await sign({ sub: 'ada' })).split('.');
      return `${h}.${Buffer.from(JSON.stringify({ sub: 'root' })).toString('base64url')}.${s}`;
    }],
    ['alg not allowed', () => sign({ sub: 'ada' }, { alg: 'HS384' }), ['HS256']],
    ['a crit header (left to jose)', async () => {
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const input = `${b64({ alg: 'HS256', crit: ['x'], x: 1 })}.${b64({ sub: 'ada' })}`;
      return `${input}.${createHmac('sha256', KEY).update(input).digest('base64url')}`;
    }],
    ['expired at exp - tolerance', () => sign({ sub: 'ada', exp: NOW - 5 })],
    ['not yet valid past the tolerance', () => sign({ sub: 'ada', nbf: NOW + 6 })],
    ['exp not a number', () => sign({ sub: 'ada', exp: 'soon' })],
    ['iat not a number', () => sign({ sub: 'ada', iat: 'now' })],
    ['not three parts', async () => `${await sign({ sub: 'ada' })}.x`],
    ['alg none', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"ada"}').toString('base64url')}.`],
  ];
  for (const [name, make, algorithms] of cases) {
    test(`refused (left to jose): ${name}`, async () => {
      assert.equal(verifyHmacJwt(await make(), KEY, algorithms ?? ['HS256'], NOW, 5), undefined);
    });
  }
});
