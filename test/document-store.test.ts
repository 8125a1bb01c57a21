import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryDocumentStore, type DocumentStore } from '../src/documents/store.js';
import { SqliteDocumentStore } from '../src/documents/sqlite-store.js';
import { RedisDocumentStore } from '../src/documents/redis-store.js';
import { RedisProcess } from './redis-helpers.js';

/** One contract, run against every DocumentStore. `multiNode`: the lease is exclusive. */
function contract(name: string, make: () => Promise<DocumentStore>, multiNode: boolean): void {
  describe(`DocumentStore contract: ${name}`, () => {
    let store: DocumentStore;
    let n = 0;
    const doc = () => `doc:contract-${name}-${++n}`;
    before(async () => {
      store = await make();
    });
    after(async () => {
      await store.close();
    });

    it('loads undefined for a document never stored, then what was stored, with its position', async () => {
      const d = doc();
      assert.equal(await store.load(d), undefined);
      assert.equal(await store.store(d, new Uint8Array([1, 2, 3]), { position: { offset: 7, epoch: 'e1' } }), true);
      const loaded = await store.load(d);
      assert.deepEqual([...loaded!.update], [1, 2, 3]);
      assert.deepEqual(loaded!.position, { offset: 7, epoch: 'e1' });
      await store.store(d, new Uint8Array([4]));
      const replaced = await store.load(d);
      assert.deepEqual([...replaced!.update], [4]);
      assert.equal(replaced!.position, undefined);
    });

    it('keeps binary bytes intact (every byte value)', async () => {
      const d = doc();
      const bytes = new Uint8Array(256).map((_, i) => i);
      await store.store(d, bytes);
      assert.deepEqual([...(await store.load(d))!.update], [...bytes]);
    });

    it('lists versions newest first, reads each, keeps only the newest `keep`', async () => {
      const d = doc();
      assert.deepEqual(await store.versions(d), []);
      const v1 = await store.addVersion(d, new Uint8Array([1]), 1000, 2);
      const v2 = await store.addVersion(d, new Uint8Array([2, 2]), 2000, 2);
      assert.deepEqual(await store.versions(d), [
        { id: v2.id, time: 2000, bytes: 2 },
        { id: v1.id, time: 1000, bytes: 1 },
      ]);
      assert.deepEqual([...(await store.version(d, v1.id))!], [1]);
      const v3 = await store.addVersion(d, new Uint8Array([3]), 3000, 2);
      assert.deepEqual((await store.versions(d)).map((v) => v.id), [v3.id, v2.id]);
      assert.equal(await store.version(d, v1.id), undefined);
      assert.equal(await store.version(d, 'nope'), undefined);
      assert.ok(Number(v3.id) > Number(v2.id));
    });

    it('grants the lease to its holder; stores with an owner only while it holds the lease', async () => {
      const d = doc();
      assert.equal(await store.acquireLease(d, 'node-a', 60000), true);
      assert.equal(await store.acquireLease(d, 'node-a', 60000), true, 'renewal');
      assert.equal(await store.store(d, new Uint8Array([1]), { owner: 'node-a' }), true);
      if (multiNode) {
        assert.equal(await store.acquireLease(d, 'node-b', 60000), false);
        assert.equal(await store.store(d, new Uint8Array([2]), { owner: 'node-b' }), false);
        assert.deepEqual([...(await store.load(d))!.update], [1]);
        await store.releaseLease(d, 'node-b'); // not the holder: no effect
        assert.equal(await store.acquireLease(d, 'node-b', 60000), false);
        await store.releaseLease(d, 'node-a');
        assert.equal(await store.acquireLease(d, 'node-b', 60000), true);
      }
    });

    if (multiNode) {
      it('a lease expires after its TTL unless renewed', async () => {
        const d = doc();
        assert.equal(await store.acquireLease(d, 'node-a', 50), true);
        const deadline = Date.now() + 5000;
        while (!(await store.acquireLease(d, 'node-b', 50))) {
          assert.ok(Date.now() < deadline, 'lease never expired');
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      });
    }
  });
}

const dir = mkdtempSync(join(tmpdir(), 'chorus-docstore-'));
let redis: RedisProcess | undefined;
after(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

contract('memory', async () => new MemoryDocumentStore(), true);
contract('sqlite', async () => new SqliteDocumentStore(join(dir, 'sub', 'documents.sqlite')), false);
contract(
  'redis',
  async () => {
    redis = await RedisProcess.start();
    return new RedisDocumentStore({ redis: redis.url });
  },
  true,
);

describe('SqliteDocumentStore', () => {
  it('keeps documents and versions across a reopen (WAL)', async () => {
    const file = join(dir, 'reopen.sqlite');
    const first = new SqliteDocumentStore(file);
    await first.store('doc:a', new Uint8Array([9, 9]), { position: { offset: 3, epoch: 'x' } });
    await first.addVersion('doc:a', new Uint8Array([8]), 5, 10);
    await first.close();
    const second = new SqliteDocumentStore(file);
    assert.deepEqual(await second.load('doc:a'), { update: new Uint8Array([9, 9]), position: { offset: 3, epoch: 'x' } });
    assert.equal((await second.versions('doc:a')).length, 1);
    await second.close();
  });
});
