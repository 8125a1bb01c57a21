/**
 * Compare two V8 heap snapshots (e.g. before and after opening N idle connections, written by
 * the bench server with BENCH_HEAP_SNAPSHOT_DIR): the objects added, by constructor, per
 * connection. A tool for finding per-connection state, not a benchmark.
 *
 *   node --import tsx bench/heap-diff.ts before.heapsnapshot after.heapsnapshot 2000
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

function tally(path: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]!]!;
    const name = type === 'object' || type === 'closure' || type === 'native' ? snap.strings[snap.nodes[i + iName]!]! : `(${type})`;
    const key = `${type === 'closure' ? 'closure ' : ''}${name}`.slice(0, 80);
    const entry = out.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += snap.nodes[i + iSize]!;
    out.set(key, entry);
  }
  return out;
}

const [beforePath, afterPath, perArg] = process.argv.slice(2);
if (!beforePath || !afterPath) throw new Error('usage: heap-diff.ts before.heapsnapshot after.heapsnapshot [connections]');
const per = Number(perArg ?? 1);
const before = tally(beforePath);
const after = tally(afterPath);
const rows = [...after]
  .map(([key, a]) => {
    const b = before.get(key) ?? { count: 0, bytes: 0 };
    return { key, count: (a.count - b.count) / per, bytes: (a.bytes - b.bytes) / per };
  })
  .filter((r) => Math.abs(r.bytes) >= 4)
  .sort((x, y) => y.bytes - x.bytes);
let total = 0;
for (const r of rows) total += r.bytes;
console.log(`per connection: ${total.toFixed(0)} bytes`);
for (const r of rows.slice(0, 50)) console.log(`${r.bytes.toFixed(0).padStart(7)} B ${r.count.toFixed(2).padStart(7)}  ${r.key}`);
