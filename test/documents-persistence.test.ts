import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqliteDocumentStore } from '../src/documents/index.js';
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
