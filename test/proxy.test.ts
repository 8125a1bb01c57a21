import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { parseAnswer } from '../src/proxy/caller.js';
import { parseCookies } from '../src/proxy/identity.js';
import { signToken, TestSocket, until, upgradeStatus, withTimeout } from './helpers.js';
import { Backend, startProxyServer, type ProxyTestServer } from './proxy-helpers.js';

const COOKIE = 'session=s3cr3t-session-value; theme=dark';

function connectWithCookie(url: string, cookie = COOKIE): Promise<TestSocket> {
  return TestSocket.connect(url, undefined, { headers: { cookie, 'x-forwarded-for': '10.1.2.3', 'x-other': 'no' } });
}

describe('proxy answers (unit)', () => {
  it('parseAnswer: result, error, and every malformed shape named', () => {
    assert.deepEqual(parseAnswer(200, '{"result":{"a":1}}'), { result: { a: 1 } });
    const denied = parseAnswer(200, '{"error":{"code":"BANNED","message":"go away"}}');
    assert.ok('error' in denied && denied.error.code === 'BANNED' && denied.error.message === 'go away');
    const cases: Array<[number, string, RegExp]> = [
      [500, '{"result":{}}', /HTTP status 500/],
      [200, 'nope', /not JSON/],
      [200, '[1]', /not a JSON object/],
      [200, '{}', /exactly one of "result" and "error"/],
      [200, '{"result":{},"error":{}}', /exactly one/],
      [200, '{"result":3}', /"result" is not an object/],
      [200, '{"error":"x"}', /"error" is not an object/],
      [200, '{"error":{"code":"lower"}}', /"error.code"/],
      [200, '{"error":{"code":"X","message":3}}', /"error.message"/],
    ];
    for (const [status, body, problem] of cases) {
      const answer = parseAnswer(status, body);
      assert.ok('malformed' in answer, body);
      assert.match(answer.malformed, problem);
    }
  });

  it('parseCookies', () => {
    assert.deepEqual(parseCookies('a=1; b="two"; a=3; bad; =x'), { a: '1', b: 'two' });
    assert.deepEqual(parseCookies(undefined), {});
  });
});

describe('connect proxy', { timeout: 60_000 }, () => {
  let backend: Backend;
  let s: ProxyTestServer;
  before(async () => {
    backend = await Backend.start();
    s = await startProxyServer(
      {
        connect: { url: `${backend.url}/connect`, timeoutMs: 300, headers: ['X-Forwarded-For'] },
        refresh: { url: `${backend.url}/refresh`, timeoutMs: 300 },
      },
      { jwt: true },
    );
  });
  after(async () => {
    await s.close();
    await backend.close();
  });

  it('allow and change: user, info, expiry and channels from the backend; cookies and listed headers sent', async () => {
    const expiresAt = Date.now() + 3_600_000;
    backend.routes.set('/connect', () => ({ body: { result: { user: 'ada', info: { name: 'Ada' }, expiresAt, channels: ['chat:a', 'chat:b'] } } }));
    const socket = await connectWithCookie(s.wsUrl);
    const connected = (await socket.find((f) => f.event === 'connected')).data as any;
    assert.equal(connected.user, 'ada');
    assert.equal(connected.expiresAt, expiresAt);
    assert.deepEqual(
      connected.subscriptions.map((x: any) => x.channel),
      ['user:ada', 'chat:a', 'chat:b'],
    );
    const [call] = (await backend.waitForCalls('/connect')).slice(-1);
    assert.deepEqual(call!.body.cookies, { session: 's3cr3t-session-value', theme: 'dark' });
    assert.deepEqual(call!.body.headers, { 'x-forwarded-for': '10.1.2.3' });
    assert.equal(call!.body.transport, 'websocket');
    assert.equal(call!.body.token, undefined);
    // Presence shows the backend's info.
    const presence = await socket.ok('presence', { channel: 'chat:a' });
    assert.deepEqual(presence.members.map((m: any) => [m.user, m.info]), [['ada', { name: 'Ada' }]]);
    socket.close();
  });

  it('a request with a JWT is verified locally, without calling the backend', async () => {
    const before = backend.calls.length;
    const socket = await TestSocket.connect(s.wsUrl, await signToken('bob'));
    assert.equal(((await socket.find((f) => f.event === 'connected')).data as any).user, 'bob');
    assert.equal(backend.calls.length, before);
    socket.close();
  });

  it('deny: UNAUTHORIZED is HTTP 401, PERMISSION_DENIED 403, with the backend message', async () => {
    backend.routes.set('/connect', () => ({ body: { error: { code: 'UNAUTHORIZED', message: 'please log in' } } }));
    const a = await upgradeStatus(s.wsUrl, { cookie: COOKIE });
    assert.equal(a.status, 401);
    assert.deepEqual(JSON.parse(a.body).error, { code: 'UNAUTHORIZED', message: 'please log in' });
    backend.routes.set('/connect', () => ({ body: { error: { code: 'PERMISSION_DENIED', message: 'banned' } } }));
    const b = await upgradeStatus(s.wsUrl, { cookie: COOKIE });
    assert.equal(b.status, 403);
    assert.equal(JSON.parse(b.body).error.code, 'PERMISSION_DENIED');
  });

  it('timeout: HTTP 503 UNAVAILABLE after timeoutMs, never an allow', async () => {
    backend.routes.set('/connect', () => 'hang');
    const res = await withTimeout(upgradeStatus(s.wsUrl, { cookie: COOKIE }), 5000, 'the handshake answer');
    assert.equal(res.status, 503);
    assert.equal(JSON.parse(res.body).error.code, 'UNAVAILABLE');
    // The call's budget (300 ms) covers queueing too, so the post itself gets what is left of it.
    assert.ok(s.proxyLogs.some((l) => l.kind === 'connect' && /no answer within \d+ ms/.test(String(l.reason))));
  });

  it('malformed answer: HTTP 503, logged naming the problem, without the cookie', async () => {
    backend.routes.set('/connect', () => ({ body: { result: { user: 42 } } }));
    const res = await upgradeStatus(s.wsUrl, { cookie: COOKIE });
    assert.equal(res.status, 503);
    const line = s.proxyLogs.find((l) => l.kind === 'connect' && l.problem === '"result.user" must be a string of 1 to 255 characters');
    assert.ok(line, JSON.stringify(s.proxyLogs));
    backend.routes.set('/connect', () => ({ status: 500, body: { result: {} } }));
    assert.equal((await upgradeStatus(s.wsUrl, { cookie: COOKIE })).status, 503);
    assert.ok(s.proxyLogs.some((l) => l.kind === 'connect' && /HTTP status 500/.test(String(l.problem))));
    assert.ok(!s.proxyRawLogs.join('\n').includes('s3cr3t-session-value'), 'a cookie was logged');
  });

  it('refresh: extends the expiry before it passes; a denial disconnects with 4500', async () => {
    let refreshes = 0;
    backend.routes.set('/connect', () => ({ body: { result: { user: 'cy', expiresAt: Date.now() + 10_500 } } }));
    backend.routes.set('/refresh', (call) => {
      refreshes++;
      assert.equal(call.body.user, 'cy');
      assert.equal(typeof call.body.client, 'string');
      return refreshes === 1
        ? { body: { result: { expiresAt: Date.now() + 10_800, info: { name: 'Cy' } } } }
        : { body: { error: { code: 'SESSION_ENDED', message: 'logged out' } } };
    });
    const socket = await connectWithCookie(s.wsUrl);
    await backend.waitForCalls('/refresh', 1);
    await backend.waitForCalls('/refresh', 2);
    const { code, reason } = await withTimeout(socket.closed, 5000, 'close');
    assert.equal(code, 4500);
    assert.equal(reason, 'logged out');
  });

  it('backend down: HTTP 503', async () => {
    const down = await startProxyServer({ connect: { url: 'http://127.0.0.1:1/connect', timeoutMs: 500 } });
    try {
      const res = await upgradeStatus(down.wsUrl, { cookie: COOKIE });
      assert.equal(res.status, 503);
      assert.equal(JSON.parse(res.body).error.code, 'UNAVAILABLE');
      assert.ok(down.proxyLogs.some((l) => l.kind === 'connect' && /request failed \(ECONNREFUSED\)/.test(String(l.reason))));
    } finally {
      await down.close();
    }
  });
});

describe('subscribe, publish and rpc proxies', { timeout: 60_000 }, () => {
  let backend: Backend;
  let s: ProxyTestServer;
  let socket: TestSocket;
  before(async () => {
    backend = await Backend.start();
    s = await startProxyServer({
      subscribe: { url: `${backend.url}/subscribe`, timeoutMs: 300 },
      publish: { url: `${backend.url}/publish`, timeoutMs: 300 },
      rpc: { url: `${backend.url}/rpc`, timeoutMs: 300 },
    });
    s.chorus.on('local.echo', (data) => ({ local: data }));
    socket = await TestSocket.connect(s.wsUrl, await signToken('dee', { claims: { info: { name: 'Dee' } } }));
  });
  after(async () => {
    socket.close();
    await s.close();
    await backend.close();
  });

  it('subscribe: allow, deny with the code, timeout and malformed as UNAVAILABLE; server-side subscriptions skip it', async () => {
    backend.routes.set('/subscribe', (call) =>
      call.body.channel === 'chat:ok'
        ? { body: { result: {} } }
        : call.body.channel === 'chat:no'
          ? { body: { error: { code: 'NOT_A_MEMBER', message: 'not in this room' } } }
          : call.body.channel === 'chat:slow'
            ? 'hang'
            : { raw: 'oops' },
    );
    await socket.ok('subscribe', { channel: 'chat:ok' });
    const [call] = (await backend.waitForCalls('/subscribe')).slice(-1);
    assert.deepEqual({ ...call!.body, client: typeof call!.body.client }, { client: 'string', user: 'dee', info: { name: 'Dee' }, channel: 'chat:ok' });
    const no = await socket.request('subscribe', { channel: 'chat:no' });
    assert.deepEqual([no.event, (no.data as any).code, (no.data as any).message], ['error', 'NOT_A_MEMBER', 'not in this room']);
    const slow = await socket.request('subscribe', { channel: 'chat:slow' });
    assert.equal((slow.data as any).code, 'UNAVAILABLE');
    const bad = await socket.request('subscribe', { channel: 'chat:bad' });
    assert.equal((bad.data as any).code, 'UNAVAILABLE');
    assert.ok(s.proxyLogs.some((l) => l.kind === 'subscribe' && l.problem === 'the body is not JSON'));
    // The personal channel (server-side) was never sent to the backend.
    assert.ok(backend.calls.every((c) => c.body?.channel !== 'user:dee'));
  });

  it('publish: allow, change the data, deny', async () => {
    backend.routes.set('/publish', (call) =>
      call.body.data?.text === 'bad word' ? { body: { error: { code: 'PERMISSION_DENIED', message: 'be nice' } } } : call.body.data?.text === 'shout' ? { body: { result: { data: { text: 'SHOUT' } } } } : { body: { result: {} } },
    );
    await socket.ok('publish', { channel: 'chat:ok', data: { text: 'hello' } });
    await socket.ok('publish', { channel: 'chat:ok', data: { text: 'shout' } });
    const denied = await socket.request('publish', { channel: 'chat:ok', data: { text: 'bad word' } });
    assert.equal((denied.data as any).code, 'PERMISSION_DENIED');
    await socket.find((f) => f.event === 'message' && (f.data as any).data.text === 'SHOUT');
    assert.deepEqual(socket.messages('chat:ok').map((m) => m.data.text), ['hello', 'SHOUT']);
    const call = (await backend.waitForCalls('/publish', 3))[0]!;
    assert.equal(call.body.channel, 'chat:ok');
    assert.equal(call.body.ephemeral, false);
    // API publications are not proxied.
    const before = backend.calls.length;
    await s.chorus.publish('chat:ok', { text: 'from the server' });
    assert.equal(backend.calls.length, before);
  });

  it('rpc: unhandled events go to the backend, the result is the ack; handlers still win', async () => {
    backend.routes.set('/rpc', (call) =>
      call.body.event === 'room.save' ? { body: { result: { saved: call.body.data } } } : { body: { error: { code: 'NO_SUCH_METHOD', message: 'unknown' } } },
    );
    assert.deepEqual(await socket.ok('room.save', { text: 'hi' }), { saved: { text: 'hi' } });
    const [call] = (await backend.waitForCalls('/rpc')).slice(-1);
    assert.equal(call!.body.event, 'room.save');
    assert.equal(call!.body.user, 'dee');
    const denied = await socket.request('room.other', {});
    assert.equal((denied.data as any).code, 'NO_SUCH_METHOD');
    const rpcCalls = backend.calls.filter((c) => c.path === '/rpc').length;
    assert.deepEqual(await socket.ok('local.echo', 1), { local: 1 });
    assert.equal(backend.calls.filter((c) => c.path === '/rpc').length, rpcCalls);
    backend.routes.set('/rpc', () => 'hang');
    assert.equal(((await socket.request('room.save', {})).data as any).code, 'UNAVAILABLE');
  });

  it('metrics: calls counted by kind and outcome', async () => {
    const text = await s.registry.metrics();
    assert.match(text, /chorus_proxy_call_duration_seconds_count\{kind="subscribe",outcome="allow"\} [1-9]/);
    assert.match(text, /chorus_proxy_call_duration_seconds_count\{kind="subscribe",outcome="deny"\} 1/);
    assert.match(text, /chorus_proxy_call_duration_seconds_count\{kind="subscribe",outcome="malformed"\} 1/);
    assert.match(text, /chorus_proxy_calls_in_flight/);
  });
});

describe('no rpc proxy: unknown events stay UNKNOWN_EVENT', () => {
  it('UNKNOWN_EVENT', async () => {
    const s = await startProxyServer({ subscribe: { url: 'http://127.0.0.1:1/x' } });
    try {
      const socket = await TestSocket.connect(s.wsUrl, await signToken('eve'));
      assert.equal(((await socket.request('whatever', {})).data as any).code, 'UNKNOWN_EVENT');
      socket.close();
    } finally {
      await s.close();
    }
  });
});

describe('bounded concurrency (proxy.maxInFlight, proxy.maxQueued)', { timeout: 30_000 }, () => {
  it('one in flight and one queued: the third call fails at once with UNAVAILABLE; the queued one runs', async () => {
    const backend = await Backend.start();
    const s = await startProxyServer({ rpc: { url: `${backend.url}/rpc`, timeoutMs: 5000 }, maxInFlight: 1, maxQueued: 1 });
    try {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      backend.routes.set('/rpc', async (call) => {
        if (call.body.data === 1) await gate;
        return { body: { result: { n: call.body.data } } };
      });
      const socket = await TestSocket.connect(s.wsUrl, await signToken('fay'));
      const socket2 = await TestSocket.connect(s.wsUrl, await signToken('gus'));
      const socket3 = await TestSocket.connect(s.wsUrl, await signToken('hal'));
      const first = socket.request('calc', 1);
      await backend.waitForCalls('/rpc', 1);
      const second = socket2.request('calc', 2);
      // The second waits for the slot (the queue holds it); the third finds the queue full.
      await until('the second call queued', async () => (await s.registry.getSingleMetric('chorus_proxy_calls_queued')!.get()).values[0]?.value === 1);
      const third = await socket3.request('calc', 3);
      assert.equal((third.data as any).code, 'UNAVAILABLE');
      assert.equal(backend.calls.length, 1, 'only one call in flight');
      release();
      assert.deepEqual((await first).data, { n: 1 });
      assert.deepEqual((await second).data, { n: 2 });
      assert.ok(s.proxyLogs.some((l) => /1 calls already wait \(proxy.maxQueued\)/.test(String(l.reason))));
      for (const x of [socket, socket2, socket3]) x.close();
    } finally {
      await s.close();
      await backend.close();
    }
  });
});


describe('every kind fails closed: timeout, down, malformed are UNAVAILABLE', { timeout: 60_000 }, () => {
  const kinds = ['subscribe', 'publish', 'rpc'] as const;
  const frame = {
    subscribe: ['subscribe', { channel: 'chat:x' }],
    publish: ['publish', { channel: 'chat:x', data: { text: 'hi' } }],
    rpc: ['some.method', { a: 1 }],
  } as const;

  for (const failure of ['timeout', 'down', 'malformed'] as const) {
    it(failure, async () => {
      const backend = await Backend.start();
      const base = failure === 'down' ? 'http://127.0.0.1:1' : backend.url;
      const s = await startProxyServer(Object.fromEntries(kinds.map((k) => [k, { url: `${base}/${k}`, timeoutMs: 200 }])));
      try {
        for (const k of kinds) backend.routes.set(`/${k}`, () => (failure === 'timeout' ? 'hang' : { body: { result: [] } }));
        const socket = await TestSocket.connect(s.wsUrl, await signToken('ivy'));
        // Subscribed server-side (not proxied), so a publication that slipped through would show.
        await s.chorus.subscribeConnection([...s.chorus.connections][0]!, 'chat:x');
        for (const k of kinds) {
          const [event, data] = frame[k];
          const reply = await socket.request(event, k === 'subscribe' ? { channel: 'chat:y' } : data);
          assert.deepEqual([k, reply.event, (reply.data as any).code], [k, 'error', 'UNAVAILABLE']);
        }
        const expected = failure === 'timeout' ? /no answer within 200 ms/ : failure === 'down' ? /ECONNREFUSED/ : /"result" is not an object/;
        for (const k of kinds) assert.ok(s.proxyLogs.some((l) => l.kind === k && expected.test(String(l.reason ?? l.problem))), `${k}: ${JSON.stringify(s.proxyLogs)}`);
        assert.equal(socket.messages('chat:x').length, 0, 'nothing was published');
        socket.close();
      } finally {
        await s.close();
        await backend.close();
      }
    });
  }

  it('refresh: a malformed or failed answer is retried; the connection lives on once the backend answers', async () => {
    const backend = await Backend.start();
    const s = await startProxyServer({ connect: { url: `${backend.url}/connect` }, refresh: { url: `${backend.url}/refresh`, timeoutMs: 200 } });
    try {
      let n = 0;
      backend.routes.set('/connect', () => ({ body: { result: { user: 'jo', expiresAt: Date.now() + 9_000 } } }));
      backend.routes.set('/refresh', () => {
        n++;
        return n === 1 ? { body: { result: { info: {} } } } : n === 2 ? 'hang' : { body: { result: { expiresAt: Date.now() + 60_000 } } };
      });
      const socket = await connectWithCookie(s.wsUrl);
      await backend.waitForCalls('/refresh', 3, 15_000);
      await until('the new expiry', () => ([...s.chorus.connections][0]?.expiresAt ?? 0) > Date.now() + 30_000);
      assert.ok(s.proxyLogs.some((l) => l.kind === 'refresh' && l.problem === '"result.expiresAt" is required'));
      assert.equal(socket.closeCode, undefined, 'still connected');
      socket.close();
    } finally {
      await s.close();
      await backend.close();
    }
  });
});
