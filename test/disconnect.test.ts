/** Named disconnects and the one reconnect rule (docs/PROTOCOL.md section 4, "Named disconnects"). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Disconnect, disconnectByServer, disconnectData, shouldReconnect, withReason } from '../src/protocol/index.js';

test('shouldReconnect: no for 1000, 1008 and 4500-4999; yes for every other code', () => {
  const table: Array<[number, boolean]> = [
    [1000, false],
    [1001, true],
    [1006, true],
    [1007, true],
    [1008, false],
    [1009, true],
    [1011, true],
    [3000, true],
    [4000, true],
    [4499, true],
    [4500, false],
    [4999, false],
    [5000, true],
  ];
  for (const [code, expected] of table) assert.equal(shouldReconnect(code), expected, `code ${code}`);
});

test('every named disconnect has the documented code, and its frame flag follows from the code', () => {
  const expected: Record<keyof typeof Disconnect, [number, boolean]> = {
    shutdown: [1001, true],
    invalidPayload: [1007, true],
    abuse: [1008, false],
    messageTooBig: [1009, true],
    writeFailed: [1011, true],
    tokenExpired: [4001, true],
    heartbeatTimeout: [4002, true],
    slowConsumer: [4003, true],
    personalChannelUnavailable: [4004, true],
    reconnectByServer: [4004, true],
    insufficientState: [4005, true],
    disconnectedByServer: [4500, false],
  };
  for (const [name, [code, reconnect]] of Object.entries(expected)) {
    const disconnect = Disconnect[name as keyof typeof Disconnect];
    assert.equal(disconnect.code, code, name);
    assert.deepEqual(disconnectData(disconnect), { code, reason: disconnect.reason, reconnect }, name);
  }
  assert.deepEqual(disconnectData(Disconnect.shutdown, 250), { code: 1001, reason: 'server shutting down', reconnect: true, retryAfterMs: 250 });
});

test('admin disconnects: 4004 with reconnect, 4500 without; a custom reason keeps the code', () => {
  assert.deepEqual(disconnectByServer(true), Disconnect.reconnectByServer);
  assert.deepEqual(disconnectByServer(false, 'disconnected by the API'), { code: 4500, reason: 'disconnected by the API' });
  assert.deepEqual(withReason(Disconnect.disconnectedByServer, 'banned'), { code: 4500, reason: 'banned' });
});
