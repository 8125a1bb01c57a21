/** Chromium (Debian's, via playwright-core) and a test server that also serves small pages from the test (SSE and fallback tests). */
import { once } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { ChorusServer, type ServerOptions } from '../src/server/index.js';
import { API_KEY, SECRET } from './helpers.js';

export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = 'test-artifacts';

export const chromiumMissing = existsSync(CHROMIUM) ? false : `${CHROMIUM} not found`;

export function launchChromium(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export interface PageServer {
  chorus: ChorusServer;
  url: string;
  close(): Promise<void>;
}

/** A Chorus server on 127.0.0.1:0 whose HTTP server also answers `pages` (path -> HTML or JS). */
export async function startPageServer(pages: Record<string, { type: string; body: string | (() => string) }>, options: ServerOptions = {}): Promise<PageServer> {
  const chorus = new ChorusServer({ auth: { secret: SECRET }, apiKey: API_KEY, logger: { level: 'silent' }, ...options });
  const server = http.createServer((req, res) => {
    const page = pages[(req.url ?? '/').split('?')[0]!];
    if (!page) {
      res.writeHead(404).end();
      return;
    }
    const body = typeof page.body === 'function' ? page.body() : page.body;
    res.writeHead(200, { 'content-type': page.type, 'cache-control': 'no-store' }).end(body);
  });
  chorus.attach(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    chorus,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await chorus.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
