/**
 * Presence (docs/PROTOCOL.md 5.5, 6.2) and ephemeral publications (5.3) against a real server:
 * aggregation per user, join/leave once per user (also for connections that die without a
 * close), the joinLeaveMaxMembers threshold, correctness under churn, ephemeral throttling.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import type { Frame } from '../src/protocol/index.js';
import type { NamespaceOptions } from '../src/server/index.js';
import { api, signToken, TestSocket, withTimeout, withServer, until } from './helpers.js';

const USER_NS: NamespaceOptions = { pattern: 'user:*', personal: true, publish: 'none' };

const presenceEvents = (socket: TestSocket, channel: string) =>
  socket.frames
    .filter((f) => (f.event === 'join' || f.event === 'leave') && (f.data as any).channel === channel)
    .map((f) => `${f.event}:${(f.data as any).user}`);

const isEvent = (event: string, user: string, channel?: string) => (f: Frame) =>
  f.event === event && (f.data as any).user === user && (channel === undefined || (f.data as any).channel === channel);

/** Resolve once `count` frames matching have been received (looking at received frames first). */
async function seen(socket: TestSocket, match: (f: Frame) => boolean, count = 1, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (socket.frames.filter(match).length < count) {
    await socket.next(match, Math.max(1, deadline - Date.now()));
  }
}

function members(list: Array<{ user: string; connections: number; info?: unknown }>) {
  return [...list].sort((a, b) => a.user.localeCompare(b.user));
}

describe('presence aggregation and join/leave', () => {
  const namespaces: NamespaceOptions[] = [USER_NS, { pattern: 'chat:*', historySize: 10, presence: true, joinLeave: true }];

  test('one entry per user with connection counts across tabs, info from the token; request and HTTP API agree', async () => {
    await withServer({ namespaces }, async (s) => {
      const adaToken = await signToken('ada', { claims: { info: { name: 'Ada' } } });
      const tabs = await Promise.all([0, 1, 2].map(() => TestSocket.connect(s.wsUrl, adaToken)));
      const bob = await TestSocket.connect(s.wsUrl, await signToken('bob', { claims: { name: 'Bob' } }));
      const cy = await TestSocket.connect(s.wsUrl, await signToken('cy'));
      for (const t of [...tabs, bob]) await t.ok('subscribe', { channel: 'chat:room' });
      const expected = [
        { user: 'ada', connections: 3, info: { name: 'Ada' } },
        { user: 'bob', connections: 1, info: { name: 'Bob' } },
      ];
      // A non-subscriber may read presence (subscribe permission); cy is not counted.
      assert.deepEqual(members((await cy.ok('presence', { channel: 'chat:room' })).members), expected);
      const viaApi = await api(s.url, 'GET', '/api/presence/chat%3Aroom');
      assert.equal(viaApi.status, 200);
      assert.deepEqual(members(viaApi.body.members), expected);

      tabs[0]!.close();
      await tabs[1]!.ok('unsubscribe', { channel: 'chat:room' });
      await until('ada down to one connection', async () =>
        (await s.chorus.presence('chat:room')).members.find((m) => m.user === 'ada')?.connections === 1,
      );
      assert.deepEqual(members((await cy.ok('presence', { channel: 'chat:room' })).members), [
        { user: 'ada', connections: 1, info: { name: 'Ada' } },
        { user: 'bob', connections: 1, info: { name: 'Bob' } },
      ]);
      const noPresence = await cy.request('presence', { channel: 'user:cy' });
      assert.equal((noPresence.data as any).code, 'NOT_AVAILABLE');
      for (const x of [...tabs, bob, cy]) x.close();
    });
  });

  test('join on the first connection in, leave on the last one out, never on intermediate ones', async () => {
    await withServer({ namespaces }, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:j' });
      await watcher.find(isEvent('join', 'watcher'));
      const adaToken = await signToken('ada');
      const a1 = await TestSocket.connect(s.wsUrl, adaToken);
      const a2 = await TestSocket.connect(s.wsUrl, adaToken);
      const a3 = await TestSocket.connect(s.wsUrl, adaToken);
      const marker = await TestSocket.connect(s.wsUrl, await signToken('marker'));
      // Events are ordered, so a marker user's join/leave proves no ada event was sent before it.
      let marks = 0;
      const mark = async () => {
        marks++;
        await marker.ok('subscribe', { channel: 'chat:j' });
        await seen(watcher, isEvent('join', 'marker'), marks);
        await marker.ok('unsubscribe', { channel: 'chat:j' });
        await seen(watcher, isEvent('leave', 'marker'), marks);
      };

      await a1.ok('subscribe', { channel: 'chat:j' });
      await watcher.find(isEvent('join', 'ada'));
      const a1Join = a1.frames.find(isEvent('join', 'ada'));
      assert.ok(a1Join, 'the joining connection gets its own join too');
      await a2.ok('subscribe', { channel: 'chat:j' });
      await a3.ok('subscribe', { channel: 'chat:j' });
      await mark();
      await a2.ok('unsubscribe', { channel: 'chat:j' });
      a3.close();
      await a3.closed;
      await until('a3 gone', async () => (await s.chorus.presence('chat:j')).members.find((m) => m.user === 'ada')?.connections === 1);
      await mark();
      assert.deepEqual(presenceEvents(watcher, 'chat:j'), ['join:watcher', 'join:ada', 'join:marker', 'leave:marker', 'join:marker', 'leave:marker']);
      a1.close();
      await seen(watcher, isEvent('leave', 'ada'));
      assert.deepEqual(presenceEvents(watcher, 'chat:j').filter((e) => e.endsWith(':ada')), ['join:ada', 'leave:ada']);
      // Back in: a join again.
      await a2.ok('subscribe', { channel: 'chat:j' });
      await seen(watcher, isEvent('join', 'ada'), 2);
      for (const x of [watcher, a1, a2, a3, marker]) x.close();
    });
  });

  test('a connection that dies without a close (socket destroyed) leaves once', async () => {
    await withServer({ namespaces }, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:x' });
      const adaToken = await signToken('ada');
      const a1 = await TestSocket.connect(s.wsUrl, adaToken);
      const a2 = await TestSocket.connect(s.wsUrl, adaToken);
      await a1.ok('subscribe', { channel: 'chat:x' });
      await a2.ok('subscribe', { channel: 'chat:x' });
      await watcher.find(isEvent('join', 'ada'));

      (a1.ws as any)._socket.destroy(); // no close frame
      await until('the server saw the first socket die', async () =>
        (await s.chorus.presence('chat:x')).members.find((m) => m.user === 'ada')?.connections === 1,
      );
      (a2.ws as any)._socket.destroy();
      const leave = await watcher.find(isEvent('leave', 'ada'), 5000);
      assert.deepEqual(leave.data, { channel: 'chat:x', user: 'ada' });
      assert.deepEqual(presenceEvents(watcher, 'chat:x'), ['join:watcher', 'join:ada', 'leave:ada']);
      assert.deepEqual((await watcher.ok('presence', { channel: 'chat:x' })).members, [{ user: 'watcher', connections: 1 }]);
      const codes = s.logs.filter((l) => l.msg === 'disconnected' && l.user === 'ada').map((l) => l.code);
      assert.deepEqual(codes, [1006, 1006]);
      watcher.close();
    });
  });

  test('heartbeat timeout: a silent peer (no pong) is dropped and leaves once; its other live tab keeps it present', async () => {
    // The silent peer must connect and subscribe within timeoutMs: 150 ms was too tight on a loaded machine (full suite).
    await withServer({ namespaces, heartbeat: { intervalMs: 50, timeoutMs: 500 } }, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:hb' });
      const token = await signToken('ghost');
      const zombie = async () => {
        const socket = new TestSocket(new WebSocket(`${s.wsUrl}?token=${token}`, { autoPong: false }));
        await socket.next((f) => f.event === 'connected');
        await socket.ok('subscribe', { channel: 'chat:hb' });
        return socket;
      };
      const live = await TestSocket.connect(s.wsUrl, token); // answers WebSocket pings
      await live.ok('subscribe', { channel: 'chat:hb' });
      const zombie1 = await zombie();
      await watcher.find(isEvent('join', 'ghost'));
      const c1 = await withTimeout(zombie1.closed, 3000, 'heartbeat close');
      // The server sends a 4002 close frame (a peer that still reads sees it), then terminates.
      assert.equal(c1.code, 4002);
      await until('ghost down to its live tab', async () =>
        (await s.chorus.presence('chat:hb')).members.find((m) => m.user === 'ghost')?.connections === 1,
      );
      assert.deepEqual(presenceEvents(watcher, 'chat:hb').filter((e) => e.endsWith(':ghost')), ['join:ghost'], 'no leave while a tab lives');

      // Now the last connection goes silent too: one leave.
      live.close();
      await until('ghost gone', async () => !(await s.chorus.presence('chat:hb')).members.some((m) => m.user === 'ghost'));
      const zombie2 = await zombie();
      await seen(watcher, isEvent('leave', 'ghost'));
      await seen(watcher, isEvent('join', 'ghost'), 2);
      const c2 = await withTimeout(zombie2.closed, 3000, 'heartbeat close');
      assert.equal(c2.code, 4002);
      await seen(watcher, isEvent('leave', 'ghost'), 2, 3000);
      assert.deepEqual(presenceEvents(watcher, 'chat:hb').filter((e) => e.endsWith(':ghost')), [
        'join:ghost',
        'leave:ghost',
        'join:ghost',
        'leave:ghost',
      ]);
      const codes = s.logs.filter((l) => l.msg === 'disconnected' && l.user === 'ghost').map((l) => l.code);
      assert.deepEqual(codes, [4002, 1005, 4002]);
      assert.deepEqual((await watcher.ok('presence', { channel: 'chat:hb' })).members, [{ user: 'watcher', connections: 1 }]);
      watcher.close();
    });
  });

  test('joinLeaveMaxMembers: events stop above the threshold (join and leave alike), the list stays exact', async () => {
    const ns: NamespaceOptions[] = [USER_NS, { pattern: 'big:*', presence: true, joinLeaveMaxMembers: 3 }];
    await withServer({ namespaces: ns }, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('w'));
      await watcher.ok('subscribe', { channel: 'big:r' });
      const users = ['u1', 'u2', 'u3', 'u4'];
      const sockets = new Map<string, TestSocket>();
      for (const user of users) sockets.set(user, await TestSocket.connect(s.wsUrl, await signToken(user)));
      const sub = (u: string) => sockets.get(u)!.ok('subscribe', { channel: 'big:r' });
      const unsub = (u: string) => sockets.get(u)!.ok('unsubscribe', { channel: 'big:r' });
      const memberList = async () => (await watcher.ok('presence', { channel: 'big:r' })).members.map((m: any) => m.user).sort();

      await sub('u1'); // 2 members
      await sub('u2'); // 3 members: at the threshold, still sent
      await watcher.find(isEvent('join', 'u2'));
      await sub('u3'); // 4 members: above, no event
      await sub('u4'); // 5
      assert.deepEqual(await memberList(), ['u1', 'u2', 'u3', 'u4', 'w']);
      await unsub('u4'); // the channel had 5 members: above, no event
      await unsub('u3'); // had 4: above, no event (its join was not sent either)
      assert.deepEqual(await memberList(), ['u1', 'u2', 'w']);
      await unsub('u2'); // had 3: at the threshold, sent
      await watcher.find(isEvent('leave', 'u2'));
      assert.deepEqual(presenceEvents(watcher, 'big:r'), ['join:w', 'join:u1', 'join:u2', 'leave:u2']);
      const stats = await s.chorus.engine.presence.stats('big:r');
      assert.deepEqual(stats, { users: 2, connections: 2 });
      for (const x of [watcher, ...sockets.values()]) x.close();
    });
  });
});

describe('presence under churn', () => {
  test('1,000 connects/disconnects of 20 users: the member list equals the connected users, counts exact, join/leave consistent', async () => {
    const USERS = 20;
    const TOTAL = 1000;
    const CONCURRENCY = 16;
    await withServer(
      {
        namespaces: [USER_NS, { pattern: 'chat:*', presence: true }],
        limits: { maxConnectionsPerUser: 1000 },
      },
      async (s) => {
        const started = Date.now();
        const tokens = await Promise.all(Array.from({ length: USERS }, (_, i) => signToken(`u${i}`)));
        const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
        await watcher.ok('subscribe', { channel: 'chat:churn' });
        const alive = new Set<{ user: string; socket: TestSocket }>();
        let seed = 42;
        const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
        let next = 0;
        let closed = 0;

        const worker = async () => {
          while (next < TOTAL && Date.now() - started < 30000) {
            next++;
            const u = Math.floor(random() * USERS);
            const socket = await TestSocket.connect(s.wsUrl, tokens[u]!);
            const entry = { user: `u${u}`, socket };
            // Some never subscribe, some die right after sending subscribe (the server may or may not process it).
            const r = random();
            if (r < 0.1) {
              socket.send({ event: 'subscribe', data: { channel: 'chat:churn' } });
              (socket.ws as any)._socket.destroy();
            } else if (r >= 0.15) {
              await socket.ok('subscribe', { channel: 'chat:churn' });
            } // else: connected, never subscribed
            alive.add(entry);
            // Close some live connection (maybe this one): clean close, abrupt destroy or unsubscribe-then-close.
            if (alive.size > 30 || random() < 0.6) {
              const victims = [...alive];
              const victim = victims[Math.floor(random() * victims.length)]!;
              alive.delete(victim);
              const how = random();
              if (how < 0.4) victim.socket.close();
              else if (how < 0.8) (victim.socket.ws as any)._socket?.destroy();
              else {
                victim.socket.send({ event: 'unsubscribe', data: { channel: 'chat:churn' } });
                victim.socket.close();
              }
              closed++;
            }
          }
        };
        await Promise.all(Array.from({ length: CONCURRENCY }, worker));
        assert.equal(next >= TOTAL, true, 'all iterations ran within the time bound');

        // The truth: every socket still open and subscribed (a destroyed-after-subscribe one is not open).
        const expected = new Map<string, number>();
        for (const { user, socket } of alive) {
          if (socket.ws.readyState !== WebSocket.OPEN) continue;
          const acked = socket.frames.some((f) => f.event === 'ack' && (f.data as any)?.channel === 'chat:churn' && 'offset' in (f.data as any));
          if (acked) expected.set(user, (expected.get(user) ?? 0) + 1);
        }
        expected.set('watcher', 1);
        const expectedList = members([...expected].map(([user, connections]) => ({ user, connections })));
        let last: unknown;
        await until(
          'presence to settle',
          async () => {
            last = members((await s.chorus.presence('chat:churn')).members);
            return JSON.stringify(last) === JSON.stringify(expectedList);
          },
          10000,
        ).catch((err) => {
          assert.deepEqual(last, expectedList, (err as Error).message);
        });
        assert.equal(s.chorus.connections.size, [...alive].filter((a) => a.socket.ws.readyState === WebSocket.OPEN).length + 1);

        // Join/leave as seen by the watcher: once per user transition, never a double join or an orphan leave.
        const present = new Set<string>(['watcher']);
        for (const f of watcher.frames) {
          if (f.event !== 'join' && f.event !== 'leave') continue;
          const user = (f.data as any).user as string;
          if (user === 'watcher') continue;
          if (f.event === 'join') {
            assert.equal(present.has(user), false, `double join for ${user}`);
            present.add(user);
          } else {
            assert.equal(present.has(user), true, `leave without join for ${user}`);
            present.delete(user);
          }
        }
        // The last leave may still be in flight: wait until the event stream matches the truth too.
        await until('join/leave stream to settle', () => {
          const seen = new Set<string>(['watcher']);
          for (const f of watcher.frames) {
            if (f.event === 'join') seen.add((f.data as any).user);
            if (f.event === 'leave') seen.delete((f.data as any).user);
          }
          return JSON.stringify([...seen].sort()) === JSON.stringify([...expected.keys()].sort());
        });
        assert.ok(closed > 300, `churn closed ${closed} connections`);
        for (const { socket } of alive) socket.close();
        watcher.close();
      },
    );
  });
});

describe('ephemeral publications', () => {
  const namespaces: NamespaceOptions[] = [
    USER_NS,
    { pattern: 'chat:*', historySize: 10, presence: true, ephemeralPerSecond: 5 },
    { pattern: 'quiet:*', historySize: 10, ephemeral: false },
  ];

  test('no offset, not in history, no offset consumed; throttled per user with RATE_LIMITED; off per namespace', async () => {
    await withServer({ namespaces }, async (s) => {
      const watcher = await TestSocket.connect(s.wsUrl, await signToken('watcher'));
      await watcher.ok('subscribe', { channel: 'chat:t' });
      const adaToken = await signToken('ada');
      const ada = await TestSocket.connect(s.wsUrl, adaToken);
      const adaTab = await TestSocket.connect(s.wsUrl, adaToken);
      const bob = await TestSocket.connect(s.wsUrl, await signToken('bob'));

      const first = await ada.ok('publish', { channel: 'chat:t', data: { typing: true }, ephemeral: true });
      assert.deepEqual(first, {});
      const typing = await watcher.find((f) => f.event === 'message' && (f.data as any).ephemeral === true);
      const data = typing.data as any;
      assert.equal(data.offset, undefined);
      assert.equal(data.epoch, undefined);
      assert.deepEqual(data.data, { typing: true });
      assert.equal(data.publisher.user, 'ada');

      const stored = await ada.ok('publish', { channel: 'chat:t', data: { text: 'hi' } });
      assert.equal(stored.offset, 1, 'the ephemeral publication took no offset');
      const history = await watcher.ok('history', { channel: 'chat:t' });
      assert.deepEqual(history.publications.map((m: any) => m.data), [{ text: 'hi' }]);

      // Burst of 5 per user and channel: 4 more pass, then RATE_LIMITED — on any of the user's connections.
      for (let i = 0; i < 4; i++) await ada.ok('publish', { channel: 'chat:t', data: { i }, ephemeral: true });
      const limited = await adaTab.request('publish', { channel: 'chat:t', data: { i: 5 }, ephemeral: true });
      assert.equal(limited.event, 'error');
      assert.equal((limited.data as any).code, 'RATE_LIMITED');
      assert.ok((limited.data as any).retryAfterMs > 0 && (limited.data as any).retryAfterMs <= 200);
      // Another user has their own budget; another channel too; normal publishes are not throttled.
      assert.deepEqual(await bob.ok('publish', { channel: 'chat:t', data: { bob: true }, ephemeral: true }), {});
      assert.deepEqual(await ada.ok('publish', { channel: 'chat:other', data: {}, ephemeral: true }), {});
      assert.equal((await ada.ok('publish', { channel: 'chat:t', data: { text: 'still fine' } })).offset, 2);

      const off = await ada.request('publish', { channel: 'quiet:x', data: {}, ephemeral: true });
      assert.equal((off.data as any).code, 'NOT_AVAILABLE');

      // The watcher saw 1 + 4 of ada's and bob's ephemeral ones, none of the refused one.
      await watcher.find((f) => f.event === 'message' && (f.data as any).offset === 2);
      const ephemerals = watcher.messages('chat:t').filter((m) => m.ephemeral);
      assert.deepEqual(ephemerals.map((m) => m.publisher.user), ['ada', 'ada', 'ada', 'ada', 'ada', 'bob']);
      assert.equal(ephemerals.some((m) => m.data?.i === 5), false);
      // Ephemeral publications do not touch history, and recovery never replays them.
      const rec = await TestSocket.connect(s.wsUrl, await signToken('rec'));
      await rec.ok('subscribe', { channel: 'chat:t', since: { offset: 0, epoch: history.epoch } });
      assert.deepEqual(rec.messages('chat:t').map((m) => m.offset), [1, 2]);
      for (const x of [watcher, ada, adaTab, bob, rec]) x.close();
    });
  });
});
