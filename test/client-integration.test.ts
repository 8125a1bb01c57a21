import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient, type ConnectedData } from '../src/client/index.js';
import { SECRET, nextEvent, signToken, until, withServer } from './helpers.js';

describe('the real client against the real server', () => {
  test('getToken refreshes the token over the socket before it expires: no 4001, no reconnect', async () => {
    await withServer({ auth: { secret: SECRET, clockToleranceSec: 0 }, heartbeat: { intervalMs: 200, timeoutMs: 5000 } }, async (s) => {
      let calls = 0;
      const client = new ChorusClient({
        url: s.wsUrl,
        WebSocket: WebSocket as any,
        getToken: async () => {
          calls++;
          return signToken('ada', { expSeconds: 2 });
        },
      });
      const disconnects: number[] = [];
      client.on('disconnected', (d) => void disconnects.push(d.code));
      try {
        client.connect();
        const connected = await nextEvent<ConnectedData>(client, 'connected');
        const firstExpiry = connected.expiresAt!;
        assert.ok(firstExpiry > Date.now());
        // The client refreshes at 80% of the lifetime; once past the first token's expiry the
        // connection must still be the same one.
        await until('a refresh happened', () => calls >= 2, 5000);
        await until('past the first token expiry', () => Date.now() > firstExpiry + 300, 5000);
        const conn = [...s.chorus.connections].find((c) => c.user === 'ada')!;
        assert.ok(conn.expiresAt! > firstExpiry, 'the server holds the refreshed expiry');
        assert.deepEqual(disconnects, []);
        assert.equal(s.chorus.connections.size, 1);
        assert.equal(client.state, 'connected');
      } finally {
        client.close();
      }
    });
  });

  test('when the refresh fails the server closes with 4001; the client fetches a new token and comes back', async () => {
    await withServer({ auth: { secret: SECRET, clockToleranceSec: 0 }, heartbeat: { intervalMs: 50, timeoutMs: 5000 } }, async (s) => {
      let calls = 0;
      const client = new ChorusClient({
        url: s.wsUrl,
        WebSocket: WebSocket as any,
        minReconnectDelayMs: 10,
        maxReconnectDelayMs: 50,
        // 1: a token that expires in a second; 2: the refresh fails (auth service down); 3+: fine.
        getToken: async () => {
          calls++;
          if (calls === 1) return signToken('ada', { expSeconds: 1 });
          if (calls === 2) throw new Error('auth service down');
          return signToken('ada', { expSeconds: 3600 });
        },
      });
      client.on('error', () => {}); // the failed refresh is reported here
      try {
        client.connect();
        await nextEvent(client, 'connected');
        const closed = await nextEvent<{ code: number; reconnect: boolean }>(client, 'disconnected', 5000);
        assert.equal(closed.code, 4001);
        assert.equal(closed.reconnect, true);
        const again = await nextEvent<ConnectedData>(client, 'connected', 5000);
        assert.ok(again.expiresAt! > Date.now() + 3000_000, 'connected with the new token');
        assert.equal(calls, 3);
      } finally {
        client.close();
      }
    });
  });
});
