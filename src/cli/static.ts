/**
 * Static files for the standalone server: the pages (`/` chat, `/dashboard`, `/editor`, `/admin`) from
 * web/, their bundles from dist/web/ (built by scripts/build-web.ts) under `/assets/`, and the
 * compiled browser client from dist/ (unbundled ES modules under `/lib/`). Only GET and HEAD;
 * paths are confined to their root (no traversal).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: this file is `src/cli/static.ts` under tsx or `dist/cli/static.js` when built. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const WEB_ROOT = resolve(PACKAGE_ROOT, 'web');
export const DIST_ROOT = resolve(PACKAGE_ROOT, 'dist');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** Page path -> HTML file under web/. */
export const PAGES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/dashboard': 'dashboard.html',
  '/editor': 'editor.html',
  '/admin': 'admin.html',
};

/** URL prefix -> directory on disk. */
const MOUNTS: ReadonlyArray<readonly [prefix: string, root: string]> = [
  ['/web/', WEB_ROOT],
  ['/assets/', resolve(DIST_ROOT, 'web')],
  ['/lib/client/', resolve(DIST_ROOT, 'client')],
  ['/lib/protocol/', resolve(DIST_ROOT, 'protocol')],
];

/**
 * Content-Security-Policy of the HTML pages: same-origin scripts, styles and sockets only (no
 * inline script or style element; the pages' bundles carry their CSS as files).
 */
const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

/**
 * Maps a URL path to a file under one of the mounts, or `undefined` when it is not one of
 * ours or tries to leave its root. Exported for tests.
 */
export function staticPath(pathname: string): string | undefined {
  const page = Object.hasOwn(PAGES, pathname) ? PAGES[pathname] : undefined;
  if (page !== undefined) return resolve(WEB_ROOT, page);
  for (const [prefix, root] of MOUNTS) {
    if (!pathname.startsWith(prefix)) continue;
    let rel: string;
    try {
      rel = decodeURIComponent(pathname.slice(prefix.length));
    } catch {
      return undefined;
    }
    if (rel === '' || rel.includes('\0') || rel.includes('\\')) return undefined;
    if (rel.split('/').some((seg) => seg === '..' || seg === '.' || seg.startsWith('.'))) return undefined;
    const file = resolve(root, rel);
    if (!file.startsWith(root + sep)) return undefined;
    return file;
  }
  return undefined;
}

/**
 * Serves the request if it names a static file. Returns false when the path is not under a
 * static mount (the caller answers it); answers 404/405 itself for mounted paths.
 */
export async function serveStatic(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
  const file = staticPath(pathname);
  if (file === undefined) {
    if (MOUNTS.some(([prefix]) => pathname.startsWith(prefix))) {
      sendError(res, 404, 'NOT_FOUND', 'not found');
      return true;
    }
    return false;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    sendError(res, 405, 'METHOD_NOT_ALLOWED', 'method not allowed');
    return true;
  }
  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    sendError(res, 404, 'NOT_FOUND', 'not found');
    return true;
  }
  const type = CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream';
  const headers: Record<string, string | number> = {
    'content-type': type,
    'content-length': size,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
  if (type.startsWith('text/html')) {
    headers['content-security-policy'] = PAGE_CSP;
    headers['x-frame-options'] = 'DENY';
  }
  res.writeHead(200, headers);
  if (req.method === 'HEAD') {
    res.end();
    return true;
  }
  const stream = createReadStream(file);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
  return true;
}
