import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FaultSwitches } from '../src/engines/bus/index.js';
import { EngineOptionError, RedisEngine, validateRedisEngineOptions, type RedisEngineOptions } from '../src/engines/redis/index.js';

describe('Redis engine options are validated by the engine', () => {
  const bad: Array<[RedisEngineOptions, string, string]> = [
    [{ url: 'http://127.0.0.1:6379' }, 'url', 'must be a redis:// or rediss:// URL'],
    [{ url: 'not a url' }, 'url', 'must be a redis:// or rediss:// URL'],
    [{ prefix: '' }, 'prefix', 'must be 1-64 characters of A-Z a-z 0-9 _ . : -'],
    [{ prefix: 'a b' }, 'prefix', 'must be 1-64 characters of A-Z a-z 0-9 _ . : -'],
    [{ prefix: 'x'.repeat(65) }, 'prefix', 'must be 1-64 characters of A-Z a-z 0-9 _ . : -'],
    [{ commandTimeoutMs: 0 }, 'commandTimeoutMs', 'must be a positive integer, got 0'],
    [{ commandTimeoutMs: 1.5 }, 'commandTimeoutMs', 'must be a positive integer, got 1.5'],
    [{ gapCheckIntervalMs: -1 }, 'gapCheckIntervalMs', 'must be a non-negative integer, got -1'],
    [{ backfillPageSize: 0 }, 'backfillPageSize', 'must be a positive integer, got 0'],
    [{ outcomeTimeoutMs: -1 }, 'outcomeTimeoutMs', 'must be a non-negative integer, got -1'],
    [{ maxHeldPublications: 0 }, 'maxHeldPublications', 'must be a positive integer, got 0'],
    [{ name: '' }, 'name', 'must be a non-empty string'],
    [{ cluster: [] }, 'cluster', 'must be a non-empty array of {"host","port"}'],
    [{ cluster: [{ host: '', port: 7000 }] }, 'cluster[0].host', 'must be a non-empty string'],
    [{ cluster: [{ host: 'h', port: 70000 }] }, 'cluster[0].port', 'must be an integer from 0 to 65535, got 70000'],
    [{ shardedPubSub: true }, 'shardedPubSub', 'needs cluster'],
    [{ redis: { sentinels: [{ host: 'h', port: 26379 }] } }, 'redis.name', 'is required with redis.sentinels (the master name)'],
    [{ redis: { sentinels: [], name: 'm' } }, 'redis.sentinels', 'must be a non-empty array of {"host","port"}'],
    [{ redis: { tls: { cert: 'PEM' } } }, 'redis.tls.key', 'cert and key go together'],
    [{ redis: { tls: { key: 'PEM' } } }, 'redis.tls.cert', 'cert and key go together'],
  ];
  for (const [options, key, problem] of bad) {
    test(`${key}: ${JSON.stringify(options)}`, () => {
      assert.throws(
        () => validateRedisEngineOptions(options),
        (err: unknown) =>
          err instanceof EngineOptionError &&
          err instanceof TypeError &&
          err.code === 'INVALID_ENGINE_OPTION' &&
          err.key === key &&
          err.problem === problem &&
          err.message === `redis engine option ${key} ${problem}`,
      );
    });
  }

  test('the constructor throws before opening any connection', () => {
    assert.throws(() => new RedisEngine({ commandTimeoutMs: -5 }), /redis engine option commandTimeoutMs must be a positive integer, got -5/);
  });

  test('good options resolve with their defaults', () => {
    assert.deepEqual(validateRedisEngineOptions({}), {
      prefix: 'chorus',
      shardedPubSub: false,
      commandTimeoutMs: 2000,
      outcomeTimeoutMs: 2000,
      maxHeldPublications: 10000,
      backfillPageSize: 1000,
      gapCheckIntervalMs: 10000,
      batchPerTurn: true,
    });
    // Batching per turn is off in Cluster mode (a batch's keys span slots) and without auto-pipelining.
    assert.equal(validateRedisEngineOptions({ cluster: [{ host: 'h', port: 1 }] }).batchPerTurn, false);
    assert.equal(validateRedisEngineOptions({ redis: { enableAutoPipelining: false } }).batchPerTurn, false);
    const edge = validateRedisEngineOptions({
      url: 'rediss://:pw@h:1/2',
      prefix: 'x'.repeat(64),
      commandTimeoutMs: 1,
      gapCheckIntervalMs: 0,
      outcomeTimeoutMs: 0,
      maxHeldPublications: 1,
      cluster: [{ host: 'h', port: 0 }, 'h2:7001', 7002],
      shardedPubSub: true,
      redis: { sentinels: [{ host: 'h', port: 65535 }], name: 'm', tls: { cert: 'C', key: 'K' } },
    });
    assert.deepEqual(
      [edge.commandTimeoutMs, edge.gapCheckIntervalMs, edge.outcomeTimeoutMs, edge.maxHeldPublications, edge.shardedPubSub],
      [1, 0, 0, 1, true],
    );
  });
});

describe('test bus fault switches', () => {
  const p = (channel: string) => ({ channel, data: null, time: 0 });
  test('rules apply in the order set, to matching node and channel, for their count', () => {
    const faults = new FaultSwitches();
    faults.add('drop', { to: 'b', channel: 'x', count: 2 });
    faults.add('delay', { ms: 20 });
    faults.add('duplicate', {});
    assert.equal(faults.pending, 4);
    const seen = [
      faults.next('a', p('x')), // not for b: the delay rule matches any node
      faults.next('b', p('y')), // not channel x: the duplicate rule
      faults.next('b', p('x')),
      faults.next('b', p('x')),
      faults.next('b', p('x')), // all used up
    ];
    assert.deepEqual(seen, [{ kind: 'delay', ms: 20 }, { kind: 'duplicate' }, { kind: 'drop' }, { kind: 'drop' }, { kind: 'deliver' }]);
    assert.equal(faults.pending, 0);
    assert.throws(() => faults.add('drop', { count: 0 }), TypeError);
  });
});
