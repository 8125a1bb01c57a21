import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RedisEngine } from '../src/engines/redis/index.js';
import type { BrokerEvent } from '../src/engines/types.js';
import { until } from './helpers.js';
import { RedisProcess } from './redis-helpers.js';

describe('Redis engine: publications pub/sub drops silently are backfilled by the periodic gap check', () => {
  let redis: RedisProcess;
  before(async () => {
    redis = await RedisProcess.start();
  });
  after(() => redis.stop());

  test('a node whose subscription silently stopped receives the missed tail from history', async () => {
    const a = new RedisEngine({ url: redis.url, gapCheckIntervalMs: 50 });
    const b = new RedisEngine({ url: redis.url, gapCheckIntervalMs: 0 });
    const got: number[] = [];
    const lost: string[] = [];
    a.setHandler((e: BrokerEvent) => {
      if (e.type === 'publication' && e.publication.channel === 'chat:gap') got.push(e.publication.offset!);
      if (e.type === 'lost') lost.push(e.channel);
    });
    b.setHandler(() => {});
    await Promise.all([a.start(), b.start()]);
    try {
      const history = { size: 100, ttlMs: 60000 };
      await a.subscribe('chat:gap', { recoverable: true });
      await b.publish('chat:gap', 1, { history });
      await until('live delivery', () => got.length === 1, 5000);
      // Drop the Redis subscription behind the engine's back: no reconnect, no error, no event.
      await a.subscriber.unsubscribe('chorus:{chat:gap}:p');
      await b.publish('chat:gap', 2, { history });
      await b.publish('chat:gap', 3, { history });
      // Nothing more is published: only the periodic check can find the missing tail.
      await until('backfilled by the gap check', () => got.length === 3, 5000);
      assert.deepEqual(got, [1, 2, 3]);
      assert.deepEqual(lost, []);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
