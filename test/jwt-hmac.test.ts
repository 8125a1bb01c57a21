import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { SignJWT, type JWTHeaderParameters } from 'jose';
import { HmacKey, verifyHmacJwt } from '../src/server/jwt-hmac.js';

const SECRET = 'fast-path-secret-0123456789-abcdefgh';
const RAW_KEY = Buffer.from(SECRET);
const KEY = new HmacKey(RAW_KEY);
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
      return `${input}.${createHmac('sha256', RAW_KEY).update(input).digest('base64url')}`;
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

describe('HmacKey: RFC 2104 HMAC from one-shot hashes', () => {
  test('equals createHmac for SHA-256/384/512, keys shorter than, as long as and longer than a block, messages up to the limit', () => {
    const keys = [Buffer.from('k'), Buffer.alloc(64, 7), Buffer.alloc(128, 9), Buffer.from('x'.repeat(300)), Buffer.alloc(0)];
    const messages = ['', 'a', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ', 'A'.repeat(1000), 'b'.repeat(8192)];
    for (const raw of keys) {
      const key = new HmacKey(raw);
      for (const hash of ['sha256', 'sha384', 'sha512']) {
        for (const message of messages) {
          assert.deepEqual(key.mac(hash, message), createHmac(hash, raw).update(message).digest(), `${hash}, key of ${raw.length} B, message of ${message.length}`);
        }
      }
    }
    assert.equal(new HmacKey(RAW_KEY).mac('sha256', 'c'.repeat(8193)), undefined, 'longer than the scratch space: left to the slow path');
  });

  test('a token with characters outside base64url is never accepted by the fast path', async () => {
    const token = await sign({ sub: 'ada' });
    const [h, p, s] = token.split('.');
    // U+0165's low byte is "e" (0x65): a MAC over the low bytes of the characters would still match.
    assert.ok(p!.startsWith('e'));
    const forged = `${h}.\u0165${p!.slice(1)}.${s}`;
    assert.notEqual(forged, token);
    assert.equal(verifyHmacJwt(token, KEY, ['HS256'], NOW, 5)?.sub, 'ada');
    assert.equal(verifyHmacJwt(forged, KEY, ['HS256'], NOW, 5), undefined);
  });
});

