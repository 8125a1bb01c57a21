import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import * as Y from 'yjs';
import { until } from './helpers.js';
import { ChorusNode, cleanupAll, startNodes } from './cluster-helpers.js';
import { destroyAll, provider } from './documents-helpers.js';
import { RedisProcess } from './redis-helpers.js';

const yjs = (node: ChorusNode) => `ws://127.0.0.1:${node.port}/yjs`;

describe('documents on two nodes sharing a real redis-server', () => {
  let redis: RedisProcess | undefined;
  after(async () => {
    await cleanupAll();
    await redis?.stop();
  });

  it('editors on different nodes converge; SIGKILL of the storing node loses no acknowledged edit', async () => {
    redis = await RedisProcess.start();
    const [a, b] = await startNodes(['node-a', 'node-b'] as const, { redisUrl: redis.url, config: {} });
    const name = 'doc:cluster';
    const pa = await provider(yjs(a), name, 'ada');
    const pb = await provider(yjs(b), name, 'bob');
    const ta = pa.doc.getText('t');
    const tb = pb.doc.getText('t');
    for (let i = 0; i < 40; i++) {
      ta.insert(Math.floor(Math.random() * (ta.length + 1)), 'a');
      tb.insert(Math.floor(Math.random() * (tb.length + 1)), 'b');
    }
    await until('converged across nodes', () => ta.length === 80 && ta.toString() === tb.toString(), 20000);

    const client = new Redis(redis.url);
    const leaseKey = `chorus:doc:{${name}}:lease`;
    await until('one node holds the lease', async () => (await client.get(leaseKey)) !== null);
    const holder = await client.get(leaseKey);
    const [storing, survivor, onStoring, onSurvivor] = holder!.startsWith('node-a/') ? [a, b, pa, pb] : [b, a, pb, pa];
    // An edit on the storing node, acknowledged: it went through Redis and reached the other node.
    onStoring.doc.getText('t').insert(0, 'LAST-EDIT ');
    await until('the other node has the last edit', () => onSurvivor.doc.getText('t').toString().startsWith('LAST-EDIT '), 20000);
    const expected = onSurvivor.doc.getText('t').toString();
    onStoring.shouldConnect = false;
    await storing.kill('SIGKILL');

    // The survivor takes the lease over once it expires, then stores the whole document.
    try {
      await until('the survivor holds the lease', async () => (await client.get(leaseKey))?.startsWith(`${survivor.name}/`) === true, 30000);
      await until(
        'the survivor stored the document',
        async () => {
          const stored = await client.hgetBuffer(`chorus:doc:{${name}}:state`, 'u');
          if (!stored) return false;
          const doc = new Y.Doc();
          Y.applyUpdate(doc, stored);
          return doc.getText('t').toString() === expected;
        },
        30000,
      );
    } finally {
      client.disconnect();
    }

    // A node that opens the document later starts from the latest state.
    const c = await ChorusNode.start('node-c', { redisUrl: redis.url, config: {} });
    const pc = await provider(yjs(c), name, 'cyd');
    await until('a late node has every edit', () => pc.doc.getText('t').toString() === expected, 20000);
    pc.doc.getText('t').insert(0, 'C ');
    await until('the survivor sees the late node', () => onSurvivor.doc.getText('t').toString().startsWith('C '), 20000);
    assert.equal(onSurvivor.doc.getText('t').toString(), pc.doc.getText('t').toString());
    destroyAll(pa, pb, pc);
  });
});
