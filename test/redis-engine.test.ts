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

describe('Redis engine: the requests of one event-loop turn go out batched', () => {
  let redis: RedisProcess;
  before(async () => {
    redis = await RedisProcess.start();
  });
  after(() => redis.stop());

  /** Commands redis-server ran since the last reset, by name. */
  async function commandCalls(engine: RedisEngine): Promise<Record<string, number>> {
    const info = String(await engine.client.info('commandstats'));
    const calls: Record<string, number> = {};
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
    return calls;
  }

  test('reservations, positions and SUBSCRIBEs of one turn are one command each, with the same answers', async () => {
    const batched = new RedisEngine({ url: redis.url, prefix: 'batched' });
    const single = new RedisEngine({ url: redis.url, prefix: 'single', redis: { enableAutoPipelining: false } });
    for (const e of [batched, single]) e.setHandler(() => {});
    await Promise.all([batched.start(), single.start()]);
    try {
      // Warm the scripts (the first call of each loads it), then count one turn's commands.
      await batched.connections.reserve('warm', 'w1', 1, 60000);
      await batched.history.position('warm');
      await batched.client.config('RESETSTAT');
      const [reserved, positions] = await Promise.all([
        // u1 twice against a cap of 2 with a third: the third is refused, in order within the batch.
        Promise.all(['c1', 'c2', 'c3'].map((id) => batched.connections.reserve('u1', id, 2, 60000))),
        Promise.all(['ch:a', 'ch:b', 'ch:c'].map((channel) => batched.history.position(channel))),
        Promise.all(['ch:a', 'ch:b', 'ch:c'].map((channel) => batched.subscribe(channel))),
      ]);
      assert.deepEqual(reserved, [true, true, false]);
      const calls = await commandCalls(batched);
      assert.equal(calls.subscribe, 1, 'one SUBSCRIBE for three channels');
      // One script call for the reservations, one for the positions read, one for the positions the
      // broker reads after subscribing.
      assert.equal(calls.evalsha, 3, JSON.stringify(calls));
      // Positions: created at offset 0 with an epoch each, and the same as a plain read sees.
      for (const [i, channel] of ['ch:a', 'ch:b', 'ch:c'].entries()) {
        assert.equal(positions[i]!.offset, 0);
        assert.deepEqual((await batched.history.read(channel, { limit: 0 })).position, positions[i]);
      }
      await batched.publish('ch:b', 'x', { history: { size: 10, ttlMs: 60000 } });
      const [b] = await Promise.all([batched.history.position('ch:b'), batched.history.position('ch:a')]);
      assert.deepEqual(b, { offset: 1, epoch: positions[1]!.epoch });
      // The unbatched engine answers the same.
      assert.deepEqual(await Promise.all(['c1', 'c2', 'c3'].map((id) => single.connections.reserve('u1', id, 2, 60000))), [true, true, false]);
    } finally {
      await Promise.all([batched.close(), single.close()]);
    }
  });

  test('a batch holds at most 500 requests: 1,001 in one turn are three commands (500, 500, 1), every answer right', async () => {
    const engine = new RedisEngine({ url: redis.url, prefix: 'cap' });
    engine.setHandler(() => {});
    await engine.start();
    try {
      await engine.connections.reserve('warm', 'w1', 1, 60000);
      await engine.history.position('warm');
      await engine.client.config('RESETSTAT');
      // Users u0..u999 once each, and u0 again: at a cap of 1 the last (in the third batch) is refused.
      const ids = Array.from({ length: 1001 }, (_, i) => (i < 1000 ? { user: `u${i}`, id: `c${i}` } : { user: 'u0', id: 'again' }));
      const reserved = await Promise.all(ids.map(({ user, id }) => engine.connections.reserve(user, id, 1, 60000)));
      assert.equal(reserved.filter(Boolean).length, 1000);
      assert.equal(reserved[1000], false, 'the 1,001st, a second connection of u0, is over the cap');
      assert.equal((await commandCalls(engine)).evalsha, 3);
      await engine.client.config('RESETSTAT');
      const positions = await Promise.all(Array.from({ length: 1001 }, (_, i) => engine.history.position(`cap:${i}`)));
      assert.ok(positions.every((p) => p.offset === 0 && typeof p.epoch === 'string' && p.epoch.length > 0));
      assert.equal(new Set(positions.map((p) => p.epoch)).size > 1, true, 'each stream has its own epoch');
      assert.equal((await commandCalls(engine)).evalsha, 3);
    } finally {
      await engine.close();
    }
  });
});
