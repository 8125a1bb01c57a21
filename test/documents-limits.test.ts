import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as Y from 'yjs';
import { DocumentCloseCode } from '../src/documents/index.js';
import { encodeAwareness, encodeUpdate } from '../src/documents/messages.js';
import { API_KEY, until } from './helpers.js';
import { RawYjsClient, awarenessUpdate, destroyAll, provider, startDocServer, textUpdate, updateMessageOfSize } from './documents-helpers.js';

const serverText = async (url: string, name: string) =>
  (await fetch(`${url}/api/documents/${encodeURIComponent(name)}?format=json`, { headers: { authorization: `Bearer ${API_KEY}` } }).then((r) =>
    r.json(),
  )) as { content: { t?: string } };

describe('documents: permissions', () => {
  it('a read-only user (namespace publish: none) gets sync and awareness but cannot change the document', async () => {
    const s = await startDocServer({
      namespaces: [
        { pattern: 'doc:*', document: true },
        { pattern: 'ro:*', document: true, publish: 'none' },
      ],
    });
    try {
      const raw = await RawYjsClient.connect(s.yjsUrl, 'ro:notes', 'viewer');
      raw.send(encodeUpdate(textUpdate(5, 'v')));
      await until('permission denied', () => raw.messages.some((m) => m.type === 'auth'));
      const viewer = await provider(s.yjsUrl, 'ro:notes', 'viewer2');
      viewer.doc.getText('t').insert(0, 'nope');
      viewer.awareness.setLocalStateField('user', { name: 'V' });
      const other = await provider(s.yjsUrl, 'ro:notes', 'viewer3');
      await until('awareness of the read-only user reaches others', () => other.awareness.getStates().has(viewer.doc.clientID));
      assert.equal(other.doc.getText('t').toString(), '');
      assert.equal((await serverText(s.url, 'ro:notes')).content.t ?? '', '');
      assert.equal(raw.closeCode, undefined, 'read-only refusals do not close the socket');
      destroyAll(viewer, other);
      raw.ws.close();
    } finally {
      await s.close();
    }
  });

  it('the access hook decides per user: a writer edits, a reader receives the edits, its own are refused', async () => {
    const s = await startDocServer({}, { access: ({ user, access }) => (user === 'reader' ? 'read' : user === 'nobody' ? 'deny' : access) });
    try {
      const writer = await provider(s.yjsUrl, 'doc:shared', 'writer');
      const reader = await provider(s.yjsUrl, 'doc:shared', 'reader');
      writer.doc.getText('t').insert(0, 'hello');
      await until('reader receives', () => reader.doc.getText('t').toString() === 'hello');
      reader.doc.getText('t').insert(0, 'X');
      writer.doc.getText('t').insert(5, '!');
      await until('reader receives the next edit', () => reader.doc.getText('t').toString().includes('!'));
      assert.equal(writer.doc.getText('t').toString(), 'hello!');
      assert.equal((await serverText(s.url, 'doc:shared')).content.t, 'hello!');
      const denied = await new Promise<number>((resolve) => {
        void import('ws').then(async ({ default: WebSocket }) => {
          const { signToken } = await import('./helpers.js');
          const ws = new WebSocket(`${s.yjsUrl}/doc:shared?token=${await signToken('nobody')}`);
          ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.on('error', () => undefined);
        });
      });
      assert.equal(denied, 403);
      destroyAll(writer, reader);
    } finally {
      await s.close();
    }
  });
});

describe('documents: limits', () => {
  it(`maxUpdateBytes: a message of exactly the limit is applied, one byte more closes with ${DocumentCloseCode.MESSAGE_TOO_BIG}`, async () => {
    const s = await startDocServer({}, { limits: { maxUpdateBytes: 1000 } });
    try {
      const ok = await RawYjsClient.connect(s.yjsUrl, 'doc:big', 'ada');
      ok.send(updateMessageOfSize(1000));
      await until('applied', async () => ((await serverText(s.url, 'doc:big')).content.t ?? '').length > 900);
      const big = await RawYjsClient.connect(s.yjsUrl, 'doc:big2', 'ada');
      big.send(updateMessageOfSize(1001));
      assert.equal((await big.closed).code, DocumentCloseCode.MESSAGE_TOO_BIG);
      assert.equal(ok.closeCode, undefined);
      ok.ws.close();
    } finally {
      await s.close();
    }
  });

  it(`maxDocumentBytes: an update that would grow the document past it closes with ${DocumentCloseCode.DOCUMENT_TOO_LARGE} and is not applied`, async () => {
    const s = await startDocServer({}, { limits: { maxDocumentBytes: 3000 } });
    try {
      const raw = await RawYjsClient.connect(s.yjsUrl, 'doc:full', 'ada');
      const first = new Y.Doc();
      first.getText('t').insert(0, 'a'.repeat(1400));
      raw.send(encodeUpdate(Y.encodeStateAsUpdate(first)));
      await until('first applied', async () => ((await serverText(s.url, 'doc:full')).content.t ?? '').length === 1400);
      const before = Y.encodeStateVector(first);
      first.getText('t').insert(1400, 'b'.repeat(1400));
      raw.send(encodeUpdate(Y.encodeStateAsUpdate(first, before)));
      await until('second applied', async () => ((await serverText(s.url, 'doc:full')).content.t ?? '').length === 2800);
      const again = Y.encodeStateVector(first);
      first.getText('t').insert(2800, 'c'.repeat(300));
      raw.send(encodeUpdate(Y.encodeStateAsUpdate(first, again)));
      const closed = await raw.closed;
      assert.equal(closed.code, DocumentCloseCode.DOCUMENT_TOO_LARGE);
      assert.equal(((await serverText(s.url, 'doc:full')).content.t ?? '').length, 2800);
    } finally {
      await s.close();
    }
  });

  it(`updatesBurst: a burst of exactly the limit passes, one more message closes with ${DocumentCloseCode.RATE_LIMITED}`, async () => {
    const s = await startDocServer({}, { limits: { updatesPerSecond: 1, updatesBurst: 10 } });
    try {
      const raw = await RawYjsClient.connect(s.yjsUrl, 'doc:flood', 'ada');
      const doc = new Y.Doc();
      let sv = Y.encodeStateVector(doc);
      const next = () => {
        doc.getText('t').insert(0, 'z');
        const update = Y.encodeStateAsUpdate(doc, sv);
        sv = Y.encodeStateVector(doc);
        return encodeUpdate(update);
      };
      for (let i = 0; i < 10; i++) raw.send(next());
      await until('ten applied', async () => ((await serverText(s.url, 'doc:flood')).content.t ?? '').length === 10);
      assert.equal(raw.closeCode, undefined);
      const flood = await RawYjsClient.connect(s.yjsUrl, 'doc:flood2', 'ada');
      for (let i = 0; i < 11; i++) flood.send(next());
      assert.equal((await flood.closed).code, DocumentCloseCode.RATE_LIMITED);
      raw.ws.close();
    } finally {
      await s.close();
    }
  });

  it(`a malformed message closes with ${DocumentCloseCode.BAD_MESSAGE}`, async () => {
    const s = await startDocServer();
    try {
      const raw = await RawYjsClient.connect(s.yjsUrl, 'doc:bad', 'ada');
      raw.send(new Uint8Array([7, 1, 2]));
      assert.equal((await raw.closed).code, DocumentCloseCode.BAD_MESSAGE);
    } finally {
      await s.close();
    }
  });

  it(`the official WebsocketProvider reconnects after ${DocumentCloseCode.RATE_LIMITED} (its edits arrive) and stops after ${DocumentCloseCode.DOCUMENT_TOO_LARGE}`, async () => {
    const s = await startDocServer({}, { limits: { updatesPerSecond: 1, updatesBurst: 5, maxDocumentBytes: 2000 } });
    const closes: number[] = [];
    try {
      const p = await provider(s.yjsUrl, 'doc:codes', 'ada');
      p.on('connection-close', (event: CloseEvent | null) => closes.push(event?.code ?? 0));
      const text = p.doc.getText('t');
      for (let i = 0; i < 12; i++) text.insert(0, 'r'); // 12 update messages: past the burst of 5
      await until('rate limited', () => closes.includes(DocumentCloseCode.RATE_LIMITED));
      await until('every edit arrived after the reconnect', async () => (await serverText(s.url, 'doc:codes')).content.t === 'r'.repeat(12), 15000);
      assert.equal(p.shouldConnect, true, 'a rate-limit close is transient for the provider');
      const closed = new Promise<{ code: number }>((resolve) => p.once('closed', resolve));
      text.insert(0, 'x'.repeat(3000));
      assert.equal((await closed).code, DocumentCloseCode.DOCUMENT_TOO_LARGE);
      assert.equal(p.shouldConnect, false, 'a document-too-large close is permanent for the provider');
      assert.equal((await serverText(s.url, 'doc:codes')).content.t, 'r'.repeat(12));
      destroyAll(p);
    } finally {
      await s.close();
    }
  });

  it('awareness entries expire after awarenessTimeoutMs (kept just before) and others are told', async () => {
    const s = await startDocServer({}, { awarenessTimeoutMs: 30000 });
    try {
      const a = await RawYjsClient.connect(s.yjsUrl, 'doc:expiry', 'ada');
      const b = await provider(s.yjsUrl, 'doc:expiry', 'bob');
      const sentAt = Date.now();
      a.send(encodeAwareness(awarenessUpdate(4242, 1, { user: { name: 'A' } })));
      await until('b sees 4242', () => b.awareness.getStates().has(4242));
      const live = s.documents.documents.get('doc:expiry')!;
      s.documents.tick(sentAt + 29000);
      assert.equal(live.awareness.size >= 1, true);
      assert.ok(b.awareness.getStates().has(4242));
      s.documents.tick(Date.now() + 30001);
      await until('b no longer sees 4242', () => !b.awareness.getStates().has(4242));
      destroyAll(b);
      a.ws.close();
    } finally {
      await s.close();
    }
  });
});
