/**
 * The server side of bench/documents.ts, in its own process: a Chorus server with documents
 * (`chorus`) or a Hocuspocus 2.x server (`hocuspocus`) on 127.0.0.1, port 0, driven over IPC:
 * it answers `stats` with its CPU time and memory, and exits on `exit`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { Hocuspocus } from '@hocuspocus/server';
import { ChorusServer } from '../src/server/index.js';
import { ChorusDocuments } from '../src/documents/index.js';

const kind = process.argv[2];
const secret = process.env.BENCH_JWT_SECRET ?? '';
const server = http.createServer();

if (kind === 'chorus') {
  const chorus = new ChorusServer({
    auth: { secret },
    logger: { level: 'warn' },
    processMetrics: false,
    limits: { maxConnectionsPerUser: 1000 },
  });
  new ChorusDocuments(chorus);
  chorus.attach(server);
} else if (kind === 'hocuspocus') {
  const hocuspocus = new Hocuspocus({ quiet: true });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => hocuspocus.handleConnection(ws, req)));
} else {
  throw new Error(`unknown server kind ${kind}`);
}

server.listen(0, '127.0.0.1', () => {
  process.send!({ type: 'ready', port: (server.address() as AddressInfo).port });
});

process.on('message', (message: { type: string }) => {
  if (message.type === 'stats') {
    (globalThis as { gc?: () => void }).gc?.();
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    process.send!({ type: 'stats', cpuMicros: cpu.user + cpu.system, rss: memory.rss, heapUsed: memory.heapUsed, at: performance.now() });
  } else if (message.type === 'exit') {
    process.exit(0);
  }
});
