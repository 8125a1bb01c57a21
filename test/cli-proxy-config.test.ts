import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/cli/config.js';

const file = (obj: unknown) => (path: string) => {
  if (path !== '/c.json') throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  return JSON.stringify(obj);
};

function error(obj: unknown): string {
  try {
    loadConfig(['--config', '/c.json'], {}, file(obj));
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  throw new Error('expected a ConfigError');
}

describe('config: proxy and webhooks keys', () => {
  it('the issue 11 contract parses as given', () => {
    const c = loadConfig(['--config', '/c.json'], {}, file({
      proxy: {
        connect: { url: 'http://app:8000/chorus/connect', timeoutMs: 3000 },
        refresh: { url: 'http://app:8000/chorus/refresh' },
        subscribe: { url: 'http://app:8000/chorus/subscribe' },
        publish: { url: 'http://app:8000/chorus/publish' },
        rpc: { url: 'http://app:8000/chorus/rpc' },
      },
      webhooks: [{ url: 'http://app:8000/chorus/hooks', secret: 'a-secret-of-16-chars', events: ['channel.occupied', 'channel.vacated', 'presence.join', 'presence.leave'] }],
    }));
    assert.equal(c.proxy?.connect?.timeoutMs, 3000);
    assert.equal(c.proxy?.rpc?.url, 'http://app:8000/chorus/rpc');
    assert.equal(c.webhooks.length, 1);
  });

  it('a connect proxy without a JWT key: no demo mode, no generated secret', () => {
    const c = loadConfig(['--config', '/c.json'], {}, file({ proxy: { connect: { url: 'http://app/connect' } } }));
    assert.equal(c.demo, false);
    assert.equal(c.server.auth?.secret, undefined);
  });

  it('no webhooks: an empty list; no proxy: undefined', () => {
    const c = loadConfig([], {}, file({}));
    assert.deepEqual(c.webhooks, []);
    assert.equal(c.proxy, undefined);
  });

  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown proxy kind', { proxy: { connnect: { url: 'http://a' } } }, /^invalid option proxy\.connnect: unknown key$/],
    ['bad proxy url', { proxy: { rpc: { url: 'ftp://a' } } }, /^invalid option proxy\.rpc\.url: must be an http:\/\/ or https:\/\/ URL$/],
    ['missing proxy url', { proxy: { rpc: {} } }, /^invalid option proxy\.rpc\.url: /],
    ['bad timeoutMs', { proxy: { subscribe: { url: 'http://a', timeoutMs: 0 } } }, /^invalid option proxy\.subscribe\.timeoutMs: must be a positive integer, got 0$/],
    ['bad maxInFlight', { proxy: { maxInFlight: 0 } }, /^invalid option proxy\.maxInFlight: must be a positive integer, got 0$/],
    ['bad maxQueued', { proxy: { maxQueued: -1 } }, /^invalid option proxy\.maxQueued: must be a non-negative integer, got -1$/],
    ['bad header name', { proxy: { connect: { url: 'http://a', headers: ['x y'] } } }, /^invalid option proxy\.connect\.headers: must be an HTTP header name, got "x y"$/],
    ['headers on another kind', { proxy: { rpc: { url: 'http://a', headers: ['x'] } } }, /^invalid option proxy\.rpc\.headers: unknown key$/],
    ['webhooks not an array', { webhooks: {} }, /^invalid option webhooks: must be an array$/],
    ['short webhook secret', { webhooks: [{ url: 'http://a', secret: 'short', events: ['presence.join'] }] }, /^invalid option webhooks\[0\]\.secret: must be a string of at least 16 characters$/],
    ['no events', { webhooks: [{ url: 'http://a', secret: 'x'.repeat(16), events: [] }] }, /^invalid option webhooks\[0\]\.events: must be a non-empty array of event names$/],
    ['unknown event', { webhooks: [{ url: 'http://a', secret: 'x'.repeat(16), events: ['channel.full'] }] }, /^invalid option webhooks\[0\]\.events: must be one of .*, got "channel.full"$/],
    ['bad maxAttempts', { webhooks: [{ url: 'http://a', secret: 'x'.repeat(16), events: ['presence.join'], maxAttempts: 0 }] }, /^invalid option webhooks\[0\]\.maxAttempts: /],
  ];
  for (const [name, obj, pattern] of cases) it(name, () => assert.match(error(obj), pattern));

  it('a webhook secret never appears in an error message', () => {
    assert.doesNotMatch(error({ webhooks: [{ url: 'nope', secret: 'webhook-secret-value-123', events: ['presence.join'] }] }), /webhook-secret-value-123/);
  });
});
