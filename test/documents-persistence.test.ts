import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { MemoryDocumentStore, SqliteDocumentStore, type DocumentStore } from '../src/documents/index.js';
import { MemoryEngine } from '../src/server/index.js';

/** The same store for several servers: closing one server must not close it. */
function wrapNoClose(store: DocumentStore): DocumentStore {
  return Object.assign(Object.create(store) as DocumentStore, { close: async () => undefined });
}
import { until } from './helpers.js';
import { destroyAll, provider, startDocServer } from './documents-helpers.js';

describe('documents: persistence (SQLite)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-docs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a document survives a server restart (stored on the last disconnect and on close)', async () => {
    const file = join(dir, 'documents.sqlite');
    const first = await startDocServer({}, { store: new SqliteDocumentStore(file) });
    const a = await provider(first.yjsUrl, 'doc:kept', 'ada');
    const b = await provider(first.yjsUrl, 'doc:kept', 'bob');
    a.doc.getText('t').insert(0, 'hello ');
    b.doc.getMap('m').set('k', 42);
    await until('b has both', () => b.doc.getText('t').toString() === 'hello ' && a.doc.getMap('m').get('k') === 42);
    destroyAll(b);
    a.doc.getText('t').insert(6, 'world');
    await until('server has the last edit', () => first.documents.documents.get('doc:kept')?.doc.getText('t').toString() === 'hello world');
    await first.close(); // closes a's socket: the document is stored although the debounce has not passed

    const second = await startDocServer({}, { store: new SqliteDocumentStore(file) });
    try {
      const c = await provider(second.yjsUrl, 'doc:kept', 'cyd');
      assert.equal(c.doc.getText('t').toString(), 'hello world');
      assert.equal(c.doc.getMap('m').get('k'), 42);
      destroyAll(a, c);
    } finally {
      await second.close();
    }
  });

  it('onLoad seeds a new document once; a stored one is not empty on its next load', async () => {
    const loads: Array<{ empty: boolean; holder: boolean }> = [];
    const s = await startDocServer(
      {},
      {
        store: new SqliteDocumentStore(join(dir, 'seed.sqlite')),
        onLoad: ({ doc, empty, holder }) => {
          loads.push({ empty, holder });
          if (empty && holder) doc.getText('t').insert(0, 'seeded');
        },
      },
    );
    try {
      const a = await provider(s.yjsUrl, 'doc:seed', 'ada');
      await until('seeded text', () => a.doc.getText('t').toString() === 'seeded');
      destroyAll(a);
      await until('unloaded', () => !s.documents.documents.has('doc:seed'));
      const b = await provider(s.yjsUrl, 'doc:seed', 'bob');
      assert.equal(b.doc.getText('t').toString(), 'seeded');
      assert.deepEqual(loads, [
        { empty: true, holder: true },
        { empty: false, holder: true },
      ]);
      destroyAll(b);
    } finally {
      await s.close();
    }
  });

  it('updates left only in the channel history are applied on the next load, even by a node restarted under the same id', async () => {
    const engine = new MemoryEngine();
    const store = new MemoryDocumentStore();
    const shared = { store, storeDebounceMs: 60000, storeMaxDelayMs: 60000 };
    // Another (dead) node holds the lease: the first server never stores the document.
    await store.acquireLease('doc:history', 'dead-node', 600000);
    const first = await startDocServer({ engine, nodeId: 'same-node' }, { ...shared, store: wrapNoClose(store) });
    const a = await provider(first.yjsUrl, 'doc:history', 'ada');
    a.doc.getText('t').insert(0, 'only in history');
    await until('published', async () => (await engine.history.read('doc:history', { limit: 10 })).publications.length > 0);
    destroyAll(a);
    await first.close();
    assert.equal(await store.load('doc:history'), undefined, 'never stored');
    await store.releaseLease('doc:history', 'dead-node');
    const second = await startDocServer({ engine, nodeId: 'same-node' }, { ...shared, store: wrapNoClose(store) });
    try {
      const b = await provider(second.yjsUrl, 'doc:history', 'bob');
      assert.equal(b.doc.getText('t').toString(), 'only in history');
      destroyAll(b);
    } finally {
      await second.close();
      await engine.close();
    }
  });

  it('stores after the debounce while the document stays open', async () => {
    const store = new SqliteDocumentStore(join(dir, 'debounce.sqlite'));
    const s = await startDocServer({}, { store, storeDebounceMs: 50, storeMaxDelayMs: 200 });
    try {
      const a = await provider(s.yjsUrl, 'doc:live', 'ada');
      a.doc.getText('t').insert(0, 'saved while open');
      await until('stored', async () => {
        const stored = await store.load('doc:live');
        if (!stored) return false;
        const { Doc, applyUpdate } = await import('yjs');
        const doc = new Doc();
        applyUpdate(doc, stored.update);
        return doc.getText('t').toString() === 'saved while open';
      });
      destroyAll(a);
    } finally {
      await s.close();
    }
  });
});
