import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import express from 'express';
import WebSocket, { WebSocketServer } from 'ws';
import { ChorusServer } from '../src/server/index.js';
import { API_KEY, SECRET, api, signToken, TestSocket, upgradeStatus } from './helpers.js';

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function shut(chorus: ChorusServer, server: http.Server) {
  await chorus.close();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

describe('embedding', () => {
  test('Express: the app keeps its routes, Chorus shares the port', async () => {
    const app = express();
    app.get('/', (_req, res) => void res.send('app home'));
    app.get('/api/mine', (_req, res) => void res.send('never reached: /api is Chorus'));
    const server = http.createServer(app);
    const chorus = new ChorusServer({ auth: { secret: SECRET }, apiKey: API_KEY, logger: { level: 'silent' } }).attach(server);
    const port = await listen(server);
    try {
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'app home');
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      const a = await TestSocket.connect(`ws://127.0.0.1:${port}/ws`, await signToken('ada'));
      await a.ok('subscribe', { channel: 'chat:x' });
      const r = await api(`http://127.0.0.1:${port}`, 'POST', '/api/publish', { channel: 'chat:x', data: 'from backend' });
      assert.equal(r.status, 200);
      await a.find((f) => f.event === 'message');
      a.close();
    } finally {
      await shut(chorus, server);
    }
  });

  test('plain http with handleRequest, and another WebSocket server on another path', async () => {
    const chorus = new ChorusServer({ auth: { secret: SECRET }, logger: { level: 'silent' }, path: '/realtime' });
    const other = new WebSocketServer({ noServer: true });
    other.on('connection', (ws) => ws.send('other'));
    const server = http.createServer((req, res) => {
      if (chorus.handleRequest(req, res)) return;
      res.end('plain');
    });
    server.on('upgrade', (req, socket, head) => {
      if (req.url?.startsWith('/realtime')) chorus.handleUpgrade(req, socket, head);
      else if (req.url === '/other') other.handleUpgrade(req, socket, head, (ws) => other.emit('connection', ws, req));
      else socket.destroy();
    });
    const port = await listen(server);
    try {
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/x`)).text(), 'plain');
      assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 200);
      const a = await TestSocket.connect(`ws://127.0.0.1:${port}/realtime`, await signToken('ada'));
      assert.equal(a.frames[0]!.event, 'connected');
      a.close();
      const ws = new WebSocket(`ws://127.0.0.1:${port}/other`);
      const [msg] = await once(ws, 'message');
      assert.equal(String(msg), 'other');
      ws.close();
      assert.equal((await upgradeStatus(`ws://127.0.0.1:${port}/realtime`)).status, 401);
    } finally {
      other.close();
      await shut(chorus, server);
    }
  });

  test('attach leaves other upgrade listeners alone', async () => {
    const server = http.createServer();
    const other = new WebSocketServer({ noServer: true });
    other.on('connection', (ws) => ws.send('legacy'));
    server.on('upgrade', (req, socket, head) => {
      if (req.url === '/legacy') other.handleUpgrade(req, socket, head, (ws) => other.emit('connection', ws, req));
    });
    const chorus = new ChorusServer({ auth: { secret: SECRET }, logger: { level: 'silent' } }).attach(server);
    const port = await listen(server);
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/legacy`);
      const [msg] = await once(ws, 'message');
      assert.equal(String(msg), 'legacy');
      ws.close();
      const a = await TestSocket.connect(`ws://127.0.0.1:${port}/ws`, await signToken('ada'));
      a.close();
    } finally {
      other.close();
      await shut(chorus, server);
    }
  });
});
