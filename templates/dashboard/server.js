// @ts-check
/**
 * A live dashboard: an Express app that embeds Chorus and publishes its own figures every second
 * to `dash:app`, a broadcast-only channel (only the server publishes) that keeps the last 120
 * publications. A viewer reads them from history and subscribes from there: a full chart at
 * once, then one point per second; after a reconnect the client catches up on what it missed.
 *
 *   PORT               port to listen on (default 3000; 0 picks a free one)
 *   CHORUS_JWT_SECRET  key for the viewers' tokens (default: a random one per start)
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { dirname } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { ChorusServer } from 'chorus/server';

const PORT = Number(process.env.PORT ?? 3000);
const SECRET = process.env.CHORUS_JWT_SECRET ?? randomBytes(32).toString('base64url');
const CHANNEL = 'dash:app';
const resolveDir = (/** @type {string} */ spec, up = 0) => {
  let dir = dirname(fileURLToPath(import.meta.resolve(spec)));
  for (let i = 0; i < up; i++) dir = dirname(dir);
  return dir;
};

const chorus = new ChorusServer({
  auth: { secret: SECRET },
  // latest-per-key: a slow viewer skips to the newest figures instead of being disconnected.
  namespaces: [{ pattern: 'dash:*', publish: 'none', historySize: 120, historyTtlMs: 600_000, backpressure: 'latest-per-key' }],
});

/** An HS256 JWT for a viewer (`sub` is a random viewer id). Use your own login in a real app. */
function viewerToken() {
  const part = (/** @type {object} */ value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: `viewer-${randomUUID().slice(0, 8)}`, iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

const app = express();
let requests = 0;
app.use((_req, res, next) => {
  requests++;
  res.set('content-security-policy', "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'");
  next();
});
app.post('/token', (_req, res) => res.set('cache-control', 'no-store').json({ token: viewerToken() }));
app.use(express.static(fileURLToPath(new URL('./public/', import.meta.url))));
app.use('/chorus', express.static(resolveDir('chorus/client', 1))); // the browser client (chorus/dist)
app.use('/vendor/uplot', express.static(resolveDir('uplot'))); // uPlot.esm.js, uPlot.min.css

const server = http.createServer(app);
chorus.attach(server); // WebSocket on /ws, and /healthz

// The figures: HTTP requests per second, event-loop delay, memory.
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
let last = { at: Date.now(), requests: 0 };
const timer = setInterval(() => {
  const now = Date.now();
  const figures = {
    t: now,
    requestsPerSec: Math.round(((requests - last.requests) * 1000) / (now - last.at)),
    // The histogram's samples include its 10 ms sampling interval.
    loopLagMs: loop.count > 0 ? Number(Math.max(0, loop.mean / 1e6 - 10).toFixed(2)) : 0,
    heapMb: Number((process.memoryUsage().heapUsed / 1048576).toFixed(1)),
  };
  last = { at: now, requests };
  loop.reset();
  chorus.publish(CHANNEL, figures, { key: 'figures' }).catch((err) => console.error('publish failed', err));
}, 1000);
timer.unref();

server.listen(PORT, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : PORT;
  console.log(`dashboard listening on http://localhost:${port}`);
});

for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(signal, async () => {
    clearInterval(timer);
    await chorus.close();
    server.close();
  });
}
