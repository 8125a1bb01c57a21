// @ts-check
/**
 * A collaborative editor: Chorus embedded in a plain node:http server. Chorus serves the
 * y-websocket endpoint `/yjs/<document>?token=<jwt>`; documents are the channels of a namespace
 * marked `document: true`, kept in memory here (see Chorus's README for SQLite and Redis).
 *
 *   PORT               port to listen on (default 3000; 0 picks a free one)
 *   CHORUS_JWT_SECRET  key for the tokens (default: a random one per start)
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChorusDocuments } from 'chorus/documents';
import { ChorusServer } from 'chorus/server';

const PORT = Number(process.env.PORT ?? 3000);
const SECRET = process.env.CHORUS_JWT_SECRET ?? randomBytes(32).toString('base64url');
const PUBLIC = fileURLToPath(new URL('./public/', import.meta.url));

const chorus = new ChorusServer({
  auth: { secret: SECRET },
  namespaces: [{ pattern: 'doc:*', document: true }],
});
// The y-websocket endpoint and the documents themselves (in memory: pass `store` to keep them).
new ChorusDocuments(chorus);

/** An HS256 JWT: `sub` is the user id, `info.name` what others see on the cursor. */
/** @param {string} user @param {string} name */
function signToken(user, name) {
  const part = (/** @type {object} */ value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: user, info: { name }, iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** @type {Record<string, string>} */
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.map': 'application/json' };
// CodeMirror injects its styles and y-codemirror.next colours cursors with style attributes:
// styles may be inline, scripts may not.
const CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

/** @param {http.ServerResponse} res @param {string} file */
async function sendFile(res, file) {
  const path = normalize(join(PUBLIC, file));
  if (!path.startsWith(PUBLIC)) return false;
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
  if (req.method === 'GET' && (await sendFile(res, pathname === '/' ? 'index.html' : pathname.slice(1)))) return;
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
});

chorus.attach(server); // /yjs/<document> (y-websocket), /ws, /healthz
server.listen(PORT, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : PORT;
  console.log(`editor listening on http://localhost:${port}`);
});

for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(signal, async () => {
    await chorus.close();
    server.close();
  });
}
