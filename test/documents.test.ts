import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { API_KEY, signToken, until } from './helpers.js';
import { destroyAll, provider, startDocServer } from './documents-helpers.js';

describe('documents: the official y-websocket WebsocketProvider', () => {
  it('two providers edit concurrently; a third joining later gets the full state', async () => {
    const s = await startDocServer();
    try {
      const a = await provider(s.yjsUrl, 'doc:one', 'ada');
      const b = await provider(s.yjsUrl, 'doc:one', 'bob');
      const ta = a.doc.getText('t');
      const tb = b.doc.getText('t');
      for (let i = 0; i < 50; i++) {
        ta.insert(Math.floor(Math.random() * (ta.length + 1)), 'a');
        tb.insert(Math.floor(Math.random() * (tb.length + 1)), 'b');
      }
      await until('converged', () => ta.length === 100 && ta.toString() === tb.toString());
      const c = await provider(s.yjsUrl, 'doc:one', 'cyd');
      await until('late joiner has everything', () => c.doc.getText('t').toString() === ta.toString());
      assert.equal([...c.doc.getText('t').toString()].filter((ch) => ch === 'a').length, 50);
      destroyAll(a, b, c);
    } finally {
      await s.close();
    }
  });

  it('awareness appears on other providers and disappears when its provider disconnects', async () => {
    const s = await startDocServer();
    try {
      const a = await provider(s.yjsUrl, 'doc:aw', 'ada');
      const b = await provider(s.yjsUrl, 'doc:aw', 'bob');
      a.awareness.setLocalStateField('user', { name: 'Ada', color: '#f00' });
      await until('b sees a', () => (b.awareness.getStates().get(a.doc.clientID) as { user?: { name: string } } | undefined)?.user?.name === 'Ada');
      const c = await provider(s.yjsUrl, 'doc:aw', 'cyd');
      await until('late joiner sees a', () => c.awareness.getStates().has(a.doc.clientID));
      a.ws?.close(); // the socket only: the server removes a's entries itself
      a.shouldConnect = false;
      await until('b no longer sees a', () => !b.awareness.getStates().has(a.doc.clientID));
      await until('c no longer sees a', () => !c.awareness.getStates().has(a.doc.clientID));
      destroyAll(a, b, c);
    } finally {
      await s.close();
    }
  });

  it('refuses the upgrade for a name outside document namespaces (404) and without a token (401)', async () => {
    const s = await startDocServer();
    try {
      const status = (path: string) =>
        new Promise<number>((resolve) => {
          const ws = new WebSocket(`ws://127.0.0.1:${s.port}${path}`);
          ws.on('unexpected-response', (_req: unknown, res: { statusCode: number }) => resolve(res.statusCode));
          ws.on('error', () => undefined);
        });
      assert.equal(await status('/yjs/chat:room'), 404);
      assert.equal(await status('/yjs/doc:x'), 401);
    } finally {
      await s.close();
    }
  });

  it('shares the /ws admission: Origin policy, and the per-user cap counts /ws and /yjs/ connections together', async () => {
    const s = await startDocServer({ limits: { maxConnectionsPerUser: 2 } });
    const status = (url: string, headers: Record<string, string> = {}) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.on('open', () => resolve(101));
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', () => undefined);
      });
    try {
      const token = await signToken('ada');
      assert.equal(await status(`${s.yjsUrl}/doc:x?token=${token}`, { origin: 'http://evil.example' }), 403);
      assert.equal(await status(`${s.wsUrl}?token=${token}`), 101);
      assert.equal(await status(`${s.yjsUrl}/doc:x?token=${token}`), 101);
      assert.equal(await status(`${s.yjsUrl}/doc:y?token=${token}`), 429);
    } finally {
      await s.close();
    }
  });

  it('the versions API lists, reads (update, json, text) and restores versions', async () => {
    const s = await startDocServer({}, { versionIntervalMs: 1, storeDebounceMs: 20, storeMaxDelayMs: 50 });
    const api = (path: string, method = 'GET') =>
      fetch(`${s.url}/api/documents/${encodeURIComponent('doc:v')}${path}`, { method, headers: { authorization: `Bearer ${API_KEY}` } });
    try {
      const a = await provider(s.yjsUrl, 'doc:v', 'ada');
      const text = a.doc.getText('t');
      text.insert(0, 'first');
      await until('a version', async () => ((await (await api('/versions')).json()) as { versions: unknown[] }).versions.length >= 1);
      const taken = (await (await api('/versions', 'POST')).json()) as { version: { id: string } };
      text.delete(0, text.length);
      text.insert(0, 'second');
      await until('current text', async () => (await (await api('?format=text')).text()) === 'second');
      const listed = (await (await api('/versions')).json()) as { versions: Array<{ id: string; time: number; bytes: number }> };
      assert.ok(listed.versions.length >= 2);
      assert.equal(listed.versions[0]!.id, taken.version.id);
      assert.equal(await (await api(`/versions/${taken.version.id}?format=text`)).text(), 'first');
      const json = (await (await api(`/versions/${taken.version.id}?format=json`)).json()) as { content: Record<string, unknown> };
      assert.deepEqual(json.content, { t: 'first' });
      const binary = new Uint8Array(await (await api(`/versions/${taken.version.id}`)).arrayBuffer());
      const check = new Y.Doc();
      Y.applyUpdate(check, binary);
      assert.equal(check.getText('t').toString(), 'first');
      const restored = await api(`/versions/${taken.version.id}/restore`, 'POST');
      assert.equal(restored.status, 200);
      await until('the provider sees the restored text', () => text.toString() === 'first');
      assert.equal((await api('/versions/999999')).status, 404);
      assert.equal((await fetch(`${s.url}/api/documents/doc:v/versions`)).status, 401);
      destroyAll(a);
    } finally {
      await s.close();
    }
  });
});
