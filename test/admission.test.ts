import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient, type ConnectingData } from '../src/client/index.js';
import { AdmissionPacer, DEFAULT_ADMISSION } from '../src/server/admission.js';
import { resolveOptions } from '../src/server/index.js';
import { SECRET, nextEvent, signToken, startServer, until, withTimeout } from './helpers.js';
import { sseUrl } from './sse-helpers.js';

/** One upgrade request; resolves with the status, the Retry-After header and the body. */
function upgrade(url: string, token: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}?token=${token}`, {
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, retryAfter: undefined, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
    });
    req.on('error', reject);
  });
}

describe('server-paced admission', () => {
  test('the pacer: a burst passes, then 503s whose Retry-After spreads the refused over the rate', () => {
    let now = 1_000_000;
    const pacer = new AdmissionPacer({ ratePerSecond: 2, burst: 3, maxPending: 0, maxRetryAfterSec: 3 }, () => now);
    for (let i = 0; i < 3; i++) {
      assert.equal(pacer.enter(), undefined);
      pacer.leave();
    }
    // Refused clients are spread at 2/s: 1 s, 1 s, 2 s, 2 s, then capped at maxRetryAfterSec.
    const refusals = Array.from({ length: 7 }, () => pacer.enter());
    assert.deepEqual(
      refusals.map((r) => r?.retryAfterSec),
      [1, 1, 2, 2, 3, 3, 3],
    );
    assert.ok(refusals.every((r) => r?.reason === 'admission_rate'));
    now += 500; // one token back at 2/s
    assert.equal(pacer.enter(), undefined);
    assert.equal(pacer.enter()?.reason, 'admission_rate');
  });

  test('the pacer: at maxPending handshakes in admission the next is refused until one leaves', () => {
    const pacer = new AdmissionPacer({ ratePerSecond: 0, burst: 1, maxPending: 2, maxRetryAfterSec: 30 }, () => 0);
    assert.equal(pacer.enter(), undefined);
    assert.equal(pacer.enter(), undefined);
    assert.deepEqual(pacer.enter(), { reason: 'admission_pending', retryAfterSec: 1 });
    pacer.leave();
    assert.equal(pacer.enter(), undefined);
    assert.equal(pacer.inAdmission, 2);
  });

  test('options: defaults, zero turns the rate off, bad values are a TypeError', () => {
    assert.deepEqual(resolveOptions({ auth: { secret: SECRET } }).admission, DEFAULT_ADMISSION);
    assert.equal(resolveOptions({ auth: { secret: SECRET }, admission: { ratePerSecond: 0 } }).admission.ratePerSecond, 0);
    assert.throws(() => resolveOptions({ auth: { secret: SECRET }, admission: { burst: 0 } }), /admission\.burst/);
    assert.throws(() => resolveOptions({ auth: { secret: SECRET }, admission: { rate: 5 } as never }), /admission\.rate: unknown key/);
  });

  test('a server over its admission rate answers 503 OVER_CAPACITY with Retry-After (clock frozen)', async () => {
    const now = 1_800_000_000_000;
    const s = await startServer({ clock: () => now, admission: { ratePerSecond: 1, burst: 2 } });
    try {
      const token = await signToken('ada', { expSeconds: null });
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await upgrade(`${s.url}/ws`, token));
      assert.deepEqual(
        results.map((r) => r.status),
        [101, 101, 503, 503, 503],
      );
      assert.deepEqual(
        results.slice(2).map((r) => r.retryAfter),
        ['1', '2', '3'],
      );
      assert.equal(JSON.parse(results[2]!.body).error.code, 'OVER_CAPACITY');
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /chorus_limit_hits_total\{limit="admission_rate"\} 3/);
    } finally {
      await s.close();
    }
  });

  test('a server with maxPending handshakes in admission refuses the next with 503 until one finishes', async () => {
    const gates: Array<() => void> = [];
    const s = await startServer({
      admission: { maxPending: 2 },
      authenticate: (token) => new Promise((resolve) => gates.push(() => resolve({ user: token ?? 'x' }))),
    });
    try {
      const first = upgrade(`${s.url}/ws`, 'a');
      const second = upgrade(`${s.url}/ws`, 'b');
      await withTimeout(
        (async () => {
          while (gates.length < 2) await new Promise((r) => setImmediate(r));
        })(),
        5000,
        'two handshakes in admission',
      );
      const third = await upgrade(`${s.url}/ws`, 'c');
      assert.equal(third.status, 503);
      assert.equal(third.retryAfter, '1');
      for (const open of gates.splice(0)) open();
      assert.equal((await first).status, 101);
      assert.equal((await second).status, 101);
      const fourth = upgrade(`${s.url}/ws`, 'd');
      await withTimeout(
        (async () => {
          while (gates.length < 1) await new Promise((r) => setImmediate(r));
        })(),
        5000,
        'the next handshake in admission',
      );
      gates.splice(0)[0]!();
      assert.equal((await fourth).status, 101);
    } finally {
      for (const open of gates.splice(0)) open();
      await s.close();
    }
  });

  // The WebSocket (Node's ws shows the client the response) and the HTTP-streaming fallback
  // (it reads the refused stream's response itself) alike.
  for (const transport of ['websocket', 'http-stream'] as const) {
    test(`the client waits Retry-After plus its jitter after a 503 (not its backoff) and then connects: ${transport}`, async () => {
      let now = 1_800_000_000_000;
      const s = await startServer({ clock: () => now, admission: { ratePerSecond: 1, burst: 1 } });
      const client = new ChorusClient({
        url: s.wsUrl,
        ...(transport === 'websocket' ? { WebSocket: WebSocket as any } : { transports: ['http-stream'], fetch: globalThis.fetch as any }),
        token: await signToken('ada', { expSeconds: null }),
        random: () => 0.25,
        minReconnectDelayMs: 60_000,
        maxReconnectDelayMs: 120_000,
      });
      try {
        assert.equal((await upgrade(`${s.url}/ws`, await signToken('bob', { expSeconds: null }))).status, 101); // takes the one token
        const errors: Error[] = [];
        const connecting: ConnectingData[] = [];
        client.on('error', (e) => void errors.push(e));
        client.on('connecting', (d) => void connecting.push(d));
        const connected = nextEvent(client, 'connected');
        client.connect();
        await until('the paced retry is scheduled', () => connecting.length >= 2, 5000);
        // Retry-After: 1 -> 1000 ms + 0.25 * 1000 ms of jitter; the backoff (60 s minimum) was not used.
        assert.equal(connecting[1]!.delayMs, 1250);
        // Over HTTP streaming the client read the refusal's body too.
        assert.match(errors[0]?.message ?? '', transport === 'websocket' ? /Unexpected server response: 503/ : /Unexpected server response: 503 .*OVER_CAPACITY/);
        now += 1000; // a token is back by the time the client returns
        await withTimeout(connected, 5000, 'connected after Retry-After');
        assert.equal(client.transport, transport);
      } finally {
        client.close();
        await s.close();
      }
    });
  }

  test('a paced WebSocket client stays on the WebSocket: two 503s in a row are no reason to fall back', async () => {
    let now = 1_800_000_000_000;
    const s = await startServer({ clock: () => now, admission: { ratePerSecond: 1, burst: 1 } });
    const client = new ChorusClient({
      url: s.wsUrl,
      WebSocket: WebSocket as any,
      fetch: globalThis.fetch as any,
      token: await signToken('ada', { expSeconds: null }),
      random: () => 0,
      minReconnectDelayMs: 60_000,
      maxReconnectDelayMs: 120_000,
    });
    try {
      assert.equal((await upgrade(`${s.url}/ws`, await signToken('bob', { expSeconds: null }))).status, 101); // takes the one token
      const attempts: Array<{ transport: string; delayMs?: number }> = [];
      client.on('disconnected', () => void attempts.push({ transport: client.transport }));
      client.on('connecting', (d) => void (attempts.length > 0 && (attempts[attempts.length - 1]!.delayMs = d.delayMs)));
      const connected = nextEvent(client, 'connected');
      client.connect();
      // The clock stands still: the retry after Retry-After (whole seconds, no jitter here) is paced again.
      await until('two paced attempts', () => attempts.length >= 2 && attempts[1]!.delayMs !== undefined, 10_000);
      now += 1000;
      await withTimeout(connected, 10_000, 'connected after two paced attempts');
      assert.deepEqual(
        attempts.slice(0, 2).map((a) => a.transport),
        ['websocket', 'websocket'],
      );
      for (const { delayMs } of attempts.slice(0, 2)) assert.ok(delayMs !== undefined && delayMs >= 1000 && delayMs % 1000 === 0 && delayMs < 60_000, `paced by Retry-After, not the backoff: ${delayMs}`);
      assert.equal(client.transport, 'websocket', 'still the WebSocket (two plain failures would have meant the fallback)');
    } finally {
      client.close();
      await s.close();
    }
  });

  test('refusals of /stream and /sse are readable cross-origin: the Origin echoed and Retry-After exposed', async () => {
    const now = 1_800_000_000_000;
    const s = await startServer({ clock: () => now, admission: { ratePerSecond: 1, burst: 1 } });
    try {
      const token = await signToken('ada', { expSeconds: null });
      assert.equal((await upgrade(`${s.url}/ws`, token)).status, 101); // takes the one token
      for (const path of [`/stream?token=${token}`, `/sse?channel=chat:a&token=${token}`]) {
        const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
          http.get(`${s.url}${path}`, { headers: { origin: 'https://app.example' } }, resolve).on('error', reject);
        });
        res.resume();
        assert.equal(res.statusCode, 503, path);
        assert.match(String(res.headers['retry-after']), /^[1-9][0-9]*$/, path);
        assert.equal(res.headers['access-control-allow-origin'], 'https://app.example', path);
        assert.match(String(res.headers['access-control-expose-headers']), /Retry-After/i, path);
        assert.equal(res.headers.vary, 'Origin', path);
      }
    } finally {
      await s.close();
    }
  });

  test('SSE is paced the same way: 503 OVER_CAPACITY with Retry-After', async () => {
    const now = 1_800_000_000_000;
    const s = await startServer({ clock: () => now, admission: { ratePerSecond: 1, burst: 1 } });
    const token = await signToken('ada', { expSeconds: null });
    const first = new AbortController();
    try {
      const url = sseUrl(s.url, ['chat:a'], { token });
      const opened = await fetch(url, { signal: first.signal });
      assert.equal(opened.status, 200);
      const paced = await fetch(url);
      assert.equal(paced.status, 503);
      assert.equal(paced.headers.get('retry-after'), '1');
      assert.equal(((await paced.json()) as { error: { code: string } }).error.code, 'OVER_CAPACITY');
    } finally {
      first.abort();
      await s.close();
    }
  });
});
