import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { ChorusClient, ChorusClientError } from '../src/client/index.js';
import { ClientDocument } from '../src/client/document.js';
import { ChorusDocuments } from '../src/documents/index.js';
import { nextEvent, signToken, startServer, until } from './helpers.js';
import { destroyAll, provider, startDocServer, type DocServer } from './documents-helpers.js';

function client(s: DocServer, user: string): ChorusClient {
  const c = new ChorusClient({
    url: s.wsUrl,
    WebSocket: WebSocket as any,
    Document: ClientDocument,
    getToken: () => signToken(user),
    minReconnectDelayMs: 10,
    maxReconnectDelayMs: 100,
  });
  c.connect();
  return c;
}

const synced = (d: ClientDocument) => (d.synced ? Promise.resolve() : nextEvent(d, 'synced', 10000).then(() => undefined));

describe('documents over the Chorus protocol: client.document(name)', () => {
  it('two clients and a y-websocket provider edit one document and converge; awareness crosses both endpoints', async () => {
    const s = await startDocServer();
    const a = client(s, 'ada');
    const b = client(s, 'bob');
    try {
      const da = a.document('doc:mixed');
      const db = b.document('doc:mixed');
      await Promise.all([synced(da), synced(db)]);
      const p = await provider(s.yjsUrl, 'doc:mixed', 'cyd');
      for (let i = 0; i < 30; i++) {
        da.doc.getText('t').insert(0, 'a');
        db.doc.getText('t').insert(0, 'b');
        p.doc.getText('t').insert(0, 'c');
      }
      const all = () => [da, db].map((d) => d.doc.getText('t').toString()).concat(p.doc.getText('t').toString());
      await until('converged', () => {
        const texts = all();
        return texts[0]!.length === 90 && texts.every((t) => t === texts[0]);
      });
      da.awareness.setLocalStateField('user', { name: 'Ada' });
      await until('provider sees Ada', () => p.awareness.getStates().has(da.doc.clientID));
      await until('bob sees Ada', () => db.awareness.getStates().has(da.doc.clientID));
      p.awareness.setLocalStateField('user', { name: 'Cyd' });
      await until('ada sees Cyd', () => da.awareness.getStates().has(p.doc.clientID));
      da.destroy();
      await until('the provider no longer sees Ada', () => !p.awareness.getStates().has(da.doc.clientID));
      destroyAll(p);
    } finally {
      a.close();
      b.close();
      await s.close();
    }
  });

  it('edits made while disconnected merge after the reconnect', async () => {
    const s = await startDocServer();
    const a = client(s, 'ada');
    const b = client(s, 'bob');
    try {
      const da = a.document('doc:offline');
      const db = b.document('doc:offline');
      await Promise.all([synced(da), synced(db)]);
      da.doc.getText('t').insert(0, 'base ');
      await until('bob has base', () => db.doc.getText('t').toString() === 'base ');
      const disconnected = nextEvent(a, 'disconnected');
      for (const c of s.chorus.connections) if (c.user === 'ada') c.transport.terminate();
      await disconnected;
      da.doc.getText('t').insert(5, 'offline-ada ');
      db.doc.getText('t').insert(0, 'online-bob ');
      await nextEvent(da, 'synced', 10000);
      await until('merged', () => da.doc.getText('t').toString() === db.doc.getText('t').toString() && da.doc.getText('t').length === 28);
      assert.ok(db.doc.getText('t').toString().includes('offline-ada'));
    } finally {
      a.close();
      b.close();
      await s.close();
    }
  });

  it('a read-only user gets the document; its updates are refused with READ_ONLY', async () => {
    const s = await startDocServer({}, { access: ({ user, access }) => (user === 'reader' ? 'read' : access) });
    const w = client(s, 'writer');
    const r = client(s, 'reader');
    try {
      const dw = w.document('doc:ro');
      await synced(dw);
      dw.doc.getText('t').insert(0, 'from writer');
      const dr = r.document('doc:ro');
      await synced(dr);
      assert.equal(dr.access, 'read');
      await until('reader has it', () => dr.doc.getText('t').toString() === 'from writer');
      // Bypass the client's own guard to check the server refuses.
      const refused = await (r as any).emit('doc.update', { document: 'doc:ro', update: Buffer.from([1, 0]).toString('base64') }).catch((e: ChorusClientError) => e);
      assert.equal(refused.code, 'READ_ONLY');
      assert.equal(s.documents.documents.get('doc:ro')!.doc.getText('t').toString(), 'from writer');
    } finally {
      w.close();
      r.close();
      await s.close();
    }
  });

  it('doc.* frames are reserved: no application handler can take them, with or without documents', async () => {
    const plain = await startServer();
    const c = new ChorusClient({ url: plain.wsUrl, WebSocket: WebSocket as any, getToken: () => signToken('ada') });
    try {
      assert.throws(() => plain.chorus.on('doc.open', () => 'app'), /reserved protocol event/);
      c.connect();
      await nextEvent(c, 'connected');
      // A server without documents: the frame is unknown (it never reaches an application handler).
      const unknown = await (c as any).emit('doc.open', { document: 'doc:x' }).catch((e: ChorusClientError) => e);
      assert.equal(unknown.code, 'UNKNOWN_EVENT');
      const s = new ChorusDocuments(plain.chorus);
      assert.throws(() => plain.chorus.seams.addFrame('doc.open', () => 'again'), /served already/);
      assert.throws(() => plain.chorus.seams.addFrame('subscribe', () => 'mine'), /not a protocol frame/);
      assert.throws(() => plain.chorus.on('doc.update', () => 'app'), /reserved protocol event/);
      const ack = (await (c as any).emit('doc.open', { document: 'doc:x' })) as { access: string };
      assert.equal(ack.access, 'write');
      await s.close();
    } finally {
      c.close();
      await plain.close();
    }
  });

  it('without options.Document, document() throws a TypeError (the client does not bring Yjs)', () => {
    const c = new ChorusClient({ url: 'ws://127.0.0.1:9/ws', WebSocket: WebSocket as any, token: 'x' });
    assert.throws(() => c.document('doc:x'), TypeError);
  });

  it('maxDocumentsPerConnection: the limit is reached, one more is TOO_MANY_DOCUMENTS; unknown documents are NOT_OPEN', async () => {
    const s = await startDocServer({}, { limits: { maxDocumentsPerConnection: 2 } });
    const a = client(s, 'ada');
    try {
      await Promise.all([synced(a.document('doc:1')), synced(a.document('doc:2'))]);
      const third = a.document('doc:3');
      const error = await nextEvent<ChorusClientError>(third, 'error');
      assert.equal(error.code, 'TOO_MANY_DOCUMENTS');
      const notOpen = await (a as any).emit('doc.update', { document: 'doc:9', update: 'AAA=' }).catch((e: ChorusClientError) => e);
      assert.equal(notOpen.code, 'NOT_OPEN');
      const notDoc = await (a as any).emit('doc.open', { document: 'chat:x' }).catch((e: ChorusClientError) => e);
      assert.equal(notDoc.code, 'BAD_CHANNEL');
    } finally {
      a.close();
      await s.close();
    }
  });
});
