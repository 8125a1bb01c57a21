// @ts-check
/**
 * A chat server: Chorus embedded in a plain node:http server that also serves the page.
 *
 *   PORT               port to listen on (default 3000; 0 picks a free one)
 *   CHORUS_JWT_SECRET  key for the tokens (default: a random one per start)
 *
 * POST /token signs a token for any name: that is this sample's sign-in. In your app, sign the
 * token where you already know who the user is (your session, your login), with the same secret.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChorusServer } from 'chorus/server';

const PORT = Number(process.env.PORT ?? 3000);
const SECRET = process.env.CHORUS_JWT_SECRET ?? randomBytes(32).toString('base64url');
const PUBLIC = fileURLToPath(new URL('./public/', import.meta.url));
// The browser client: chorus/dist/client and chorus/dist/protocol, served as ES modules.
const CHORUS_DIST = dirname(dirname(fileURLToPath(import.meta.resolve('chorus/client'))));

const chorus = new ChorusServer({
  auth: { secret: SECRET },
  namespaces: [
    // Rooms: the last 200 messages for 10 minutes, who is here, join/leave events.
    { pattern: 'chat:*', historySize: 200, historyTtlMs: 600_000, presence: true },
  ],
});

/** An HS256 JWT: `sub` is the user id, `info` travels with the user's messages and presence. */
/** @param {string} user @param {string} name */
function signToken(user, name) {
  const part = (/** @type {object} */ value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: user, info: { name }, iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** @type {Record<string, string>} */
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
const CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

/**
 * Serves `file` if it is inside `root`.
 * @param {http.ServerResponse} res @param {string} root @param {string} file
 */
async function sendFile(res, root, file) {
  const path = normalize(join(root, file));
  if (!path.startsWith(root)) return false;
  try {
    const body = await readFile(path);
    res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'content-security-policy': CSP });
    res.end(body);
    return true;
  } catch {
    return false;
  }
}

/** @param {http.IncomingMessage} req @returns {Promise<any>} */
async function readJson(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 1024) throw new Error('too large');
  }
  return JSON.parse(text);
}

const server = http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'POST' && pathname === '/token') {
    const body = await readJson(req).catch(() => ({}));
    const name = typeof body.name === 'string' ? body.name.trim().slice(0, 40) : '';
    if (!name) {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"name is required"}');
      return;
    }
    const user = `${name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${randomUUID().slice(0, 6)}`;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ token: signToken(user, name), user }));
    return;
  }
  if (req.method === 'GET') {
    if (pathname === '/' && (await sendFile(res, PUBLIC, 'index.html'))) return;
    if (pathname.startsWith('/chorus/') && pathname.endsWith('.js') && (await sendFile(res, CHORUS_DIST, pathname.slice(8)))) return;
    if (await sendFile(res, PUBLIC, pathname.slice(1))) return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
});

chorus.attach(server); // WebSocket on /ws, and /healthz
server.listen(PORT, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : PORT;
  console.log(`chat listening on http://localhost:${port}`);
});

for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(signal, async () => {
    await chorus.close();
    server.close();
  });
}
