import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { BrokerEvent, Engine } from '../src/engines/types.js';
import { ChorusError } from '../src/protocol/index.js';
import { withTimeout } from './helpers.js';

/** One contract, every engine: the server relies on exactly these behaviours. */
export function contract(name: string, make: () => Promise<{ engine: Engine; cleanup: () => Promise<void> }>) {
  describe(`engine contract: ${name}`, () => {
    let engine: Engine;
    let cleanup: () => Promise<void>;
    const events: BrokerEvent[] = [];
    const history = { size: 5, ttlMs: 60000 };
    let n = 0;
    const ch = () => `chat:${name}-${++n}-${Date.now()}`;

    before(async () => {
      ({ engine, cleanup } = await make());
      engine.broker.setHandler((e) => events.push(e));
      await engine.start();
    });
    after(() => cleanup?.());

    const waitFor = (pred: (e: BrokerEvent) => boolean) =>
      withTimeout(
        (async () => {
          for (;;) {
            const found = events.find(pred);
            if (found) return found;
            await new Promise((r) => setTimeout(r, 2));
          }
        })(),
        3000,
        'broker event',
      );

    test('offsets count from 1 per channel, one epoch; subscribers receive publications in order', async () => {
      const c = ch();
      await engine.broker.subscribe(c, { recoverable: true });
      const empty = await engine.history.position(c);
      assert.equal(empty.offset, 0);
      const results = [];
      for (let i = 1; i <= 3; i++) results.push(await engine.broker.publish(c, { i }, { history }));
      assert.deepEqual(results.map((r) => r.offset), [1, 2, 3]);
      assert.ok(results.every((r) => r.epoch === empty.epoch));
      await waitFor((e) => e.type === 'publication' && e.publication.channel === c && e.publication.offset === 3);
      const got = events.filter((e) => e.type === 'publication' && e.publication.channel === c).map((e: any) => e.publication.data.i);
      assert.deepEqual(got, [1, 2, 3]);
      await engine.broker.unsubscribe(c);
    });

    test('history is bounded by size, read after a position, reverse, limit', async () => {
      const c = ch();
      for (let i = 1; i <= 8; i++) await engine.broker.publish(c, i, { history });
      const all = await engine.history.read(c, { limit: 100 });
      assert.deepEqual(all.publications.map((p) => p.offset), [4, 5, 6, 7, 8]);
      assert.equal(all.firstOffset, 4);
      assert.equal(all.position.offset, 8);
      const after6 = await engine.history.read(c, { since: { offset: 6, epoch: all.position.epoch }, limit: 100 });
      assert.deepEqual(after6.publications.map((p) => p.data), [7, 8]);
      const page = await engine.history.read(c, { since: { offset: 3, epoch: all.position.epoch }, limit: 2 });
      assert.deepEqual(page.publications.map((p) => p.offset), [4, 5]);
      const newest = await engine.history.read(c, { limit: 2, reverse: true });
      assert.deepEqual(newest.publications.map((p) => p.offset), [8, 7]);
      const none = await engine.history.read(c, { since: { offset: 8, epoch: all.position.epoch }, limit: 10 });
      assert.equal(none.publications.length, 0);
      await assert.rejects(
        engine.history.read(c, { since: { offset: 1, epoch: 'other' }, limit: 10 }),
        (err: unknown) => err instanceof ChorusError && err.code === 'UNRECOVERABLE_POSITION',
      );
    });

    test('history expires by its TTL while the position and epoch stay', async () => {
      const c = ch();
      const short = { size: 5, ttlMs: 40 };
      const first = await engine.broker.publish(c, 1, { history: short });
      await engine.broker.publish(c, 2, { history: short });
      await new Promise((r) => setTimeout(r, 80)); // let a real TTL pass (no event to wait on)
      const read = await engine.history.read(c, { limit: 10 });
      assert.equal(read.publications.length, 0, 'history expired');
      assert.deepEqual(read.position, { offset: 2, epoch: first.epoch }, 'position and epoch kept');
      assert.equal(read.firstOffset, 3);
      const next = await engine.broker.publish(c, 3, { history: short });
      assert.deepEqual([next.offset, next.epoch], [3, first.epoch]);
    });

    test('publications keep data, time and publisher', async () => {
      const c = ch();
      await engine.broker.publish(c, { deep: [1, { x: 'é' }] }, { history, publisher: { user: 'ada', client: 'c1', info: { name: 'Ada' } } });
      const [p] = (await engine.history.read(c, { limit: 1 })).publications;
      assert.deepEqual(p!.data, { deep: [1, { x: 'é' }] });
      assert.deepEqual(p!.publisher, { user: 'ada', client: 'c1', info: { name: 'Ada' } });
      assert.ok(Math.abs(p!.time - Date.now()) < 5000);
    });

    test('idempotency: the same key within the window returns the first result, once', async () => {
      const c = ch();
      const first = await engine.broker.publish(c, 'a', { history, idempotencyKey: 'k1', idempotencyWindowMs: 60000 });
      const again = await engine.broker.publish(c, 'a', { history, idempotencyKey: 'k1', idempotencyWindowMs: 60000 });
      assert.equal(again.duplicate, true);
      assert.equal(again.offset, first.offset);
      const other = await engine.broker.publish(c, 'b', { history, idempotencyKey: 'k2', idempotencyWindowMs: 60000 });
      assert.equal(other.offset, first.offset! + 1);
      assert.equal((await engine.history.read(c, { limit: 10 })).publications.length, 2);
    });

    test('ephemeral publications: no offset, not stored, delivered', async () => {
      const c = ch();
      await engine.broker.subscribe(c, { recoverable: true });
      const r = await engine.broker.publish(c, 'typing', { ephemeral: true, history });
      assert.deepEqual(r, {});
      await waitFor((e) => e.type === 'publication' && e.publication.channel === c && e.publication.ephemeral === true);
      assert.equal((await engine.history.read(c, { limit: 10 })).publications.length, 0);
      await engine.broker.unsubscribe(c);
    });

    test('exceptClient travels with the publication', async () => {
      const c = ch();
      await engine.broker.subscribe(c, { recoverable: true });
      await engine.broker.publish(c, 'x', { history, exceptClient: 'c_"me\\' });
      const e = await waitFor((e) => e.type === 'publication' && e.publication.channel === c);
      assert.equal((e as any).exceptClient, 'c_"me\\');
      await engine.broker.unsubscribe(c);
    });

    test('presence: one entry per user with connection counts; first/last per user; sweep of expired entries', async () => {
      const c = ch();
      assert.deepEqual(await engine.presence.add(c, 'a1', { user: 'ada', info: { name: 'Ada' } }, 60000), { firstForUser: true });
      assert.deepEqual(await engine.presence.add(c, 'a2', { user: 'ada', info: { name: 'Ada' } }, 60000), { firstForUser: false });
      assert.deepEqual(await engine.presence.add(c, 'a1', { user: 'ada', info: { name: 'Ada' } }, 60000), { firstForUser: false }, 'refresh');
      await engine.presence.add(c, 'b1', { user: 'bob' }, 60000);
      const members = (await engine.presence.list(c)).sort((x, y) => x.user.localeCompare(y.user));
      assert.deepEqual(members, [
        { user: 'ada', connections: 2, info: { name: 'Ada' } },
        { user: 'bob', connections: 1 },
      ]);
      assert.deepEqual(await engine.presence.stats(c), { users: 2, connections: 3 });
      assert.deepEqual(await engine.presence.remove(c, 'a1'), { lastForUser: false, user: 'ada' });
      assert.deepEqual(await engine.presence.remove(c, 'a2'), { lastForUser: true, user: 'ada' });
      assert.deepEqual(await engine.presence.remove(c, 'a2'), { lastForUser: false });
      await engine.presence.add(c, 'ghost', { user: 'ghost' }, 30);
      await new Promise((r) => setTimeout(r, 60)); // let a real TTL pass (no event to wait on)
      // Other operations in between neither list the expired entry nor swallow it: the sweep
      // still reports its user (the node that sweeps sends the one `leave`).
      assert.deepEqual((await engine.presence.list(c)).map((m) => m.user), ['bob']);
      assert.deepEqual(await engine.presence.add(c, 'b2', { user: 'bob' }, 60000), { firstForUser: false });
      assert.deepEqual((await engine.presence.list(c)).map((m) => m.user), ['bob']);
      const gone = await engine.presence.sweep(c);
      assert.deepEqual(gone.map((g) => g.user), ['ghost']);
      assert.deepEqual((await engine.presence.list(c)).map((m) => m.user), ['bob']);
      assert.deepEqual(await engine.presence.sweep(c), [], 'reported once');
    });

    test('connection registry: cap, release, expiry, refresh', async () => {
      const user = `u-${name}-${Date.now()}`;
      assert.equal(await engine.connections.reserve(user, 'c1', 2, 60000), true);
      assert.equal(await engine.connections.reserve(user, 'c2', 2, 60000), true);
      assert.equal(await engine.connections.reserve(user, 'c3', 2, 60000), false);
      await engine.connections.release(user, 'c1');
      assert.equal(await engine.connections.reserve(user, 'c3', 2, 60000), true);
      const other = `${user}-ttl`;
      assert.equal(await engine.connections.reserve(other, 'd1', 1, 40), true);
      await engine.connections.refresh([{ user: other, clientId: 'd1' }], 60000);
      await new Promise((r) => setTimeout(r, 60));
      assert.equal(await engine.connections.reserve(other, 'd2', 1, 40), false, 'refreshed entry still counts');
      const dead = `${user}-dead`;
      await engine.connections.reserve(dead, 'e1', 1, 30);
      await new Promise((r) => setTimeout(r, 60));
      assert.equal(await engine.connections.reserve(dead, 'e2', 1, 60000), true, 'an unrefreshed entry expires');
      const back = `${user}-back`;
      await engine.connections.reserve(back, 'f1', 1, 30);
      await new Promise((r) => setTimeout(r, 60));
      await engine.connections.refresh([{ user: back, clientId: 'f1' }], 60000);
      assert.equal(await engine.connections.reserve(back, 'f2', 1, 60000), false, 'a live connection whose entry expired is counted again after a refresh');
    });

    test('rate limiter: burst then refusal with retryAfterMs', async () => {
      const key = `rk-${name}-${Date.now()}`;
      for (let i = 0; i < 3; i++) assert.equal((await engine.rateLimiter.consume(key, 1, 3)).ok, true);
      const refused = await engine.rateLimiter.consume(key, 1, 3);
      assert.equal(refused.ok, false);
      assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 1000);
    });

    test('control commands reach the handler', async () => {
      await engine.broker.publishControl({ type: 'disconnect', user: 'zed', code: 4500, reason: 'x' });
      await waitFor((e) => e.type === 'control' && e.command.type === 'disconnect' && e.command.user === 'zed');
    });

    test('join/leave events reach subscribed nodes', async () => {
      const c = ch();
      await engine.broker.subscribe(c, { recoverable: false });
      await engine.broker.publishPresenceEvent({ type: 'join', channel: c, user: 'ada', info: { name: 'Ada' } });
      const e = await waitFor((e) => e.type === 'join' && e.channel === c);
      assert.deepEqual(e, { type: 'join', channel: c, user: 'ada', info: { name: 'Ada' } });
      await engine.broker.unsubscribe(c);
    });
  });
}
