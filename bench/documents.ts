/**
 * Documents bench: N editors on ONE document, each making U updates per second (a Y.Map set
 * carrying its sequence number), plus one observer that applies every update it receives and
 * records the latency from the editor's send to its arrival. Runs the same workload against
 * Chorus (`/yjs/`, the y-websocket protocol) and Hocuspocus 2.x in the same run, each server in
 * its own process (pinned to core 0 when taskset is available; the load runs on core 1).
 *
 *   node --import tsx bench/documents.ts [--editors 50] [--rate 5] [--seconds 20]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { PIN, sleep } from './server-process.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const EDITORS = arg('editors', 50);
const RATE = arg('rate', 5);
const SECONDS = arg('seconds', 20);
const WARMUP_MS = 3000;
const SECRET = 'bench-secret-bench-secret-bench-secret!';
const DOC = 'doc:bench';
const here = fileURLToPath(new URL('.', import.meta.url));

type Kind = 'chorus' | 'hocuspocus';
interface Stats {
  cpuMicros: number;
  rss: number;
  heapUsed: number;
  at: number;
}

class ServerChild {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}
  static async start(kind: Kind): Promise<ServerChild> {
    const nodeArgs = ['--expose-gc', '--import', 'tsx', `${here}documents-server.ts`, kind];
    const [command, argv] = PIN ? ['taskset', ['-c', '0', process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
    const child = spawn(command as string, argv as string[], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, BENCH_JWT_SECRET: SECRET, NODE_ENV: 'production' },
    });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${kind} did not start`)), 20000);
      child.once('exit', (code) => reject(new Error(`${kind} exited with ${code}`)));
      child.on('message', (m: { type: string; port?: number }) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve(m.port!);
        }
      });
    });
    return new ServerChild(child, port);
  }
  stats(): Promise<Stats> {
    return new Promise((resolve) => {
      const listener = (m: Stats & { type: string }) => {
        if (m.type !== 'stats') return;
        this.child.off('message', listener);
        resolve(m);
      };
      this.child.on('message', listener);
      this.child.send({ type: 'stats' });
    });
  }
  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ type: 'exit' });
    await Promise.race([exited, sleep(3000)]);
    this.child.kill('SIGKILL');
  }
}

/** The two wire formats: y-websocket (Chorus) and Hocuspocus (every message prefixed with the document name, auth first). */
function frame(kind: Kind, write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder();
  if (kind === 'hocuspocus') encoding.writeVarString(encoder, DOC);
  write(encoder);
  return encoding.toUint8Array(encoder);
}
const syncMessage = (kind: Kind, sub: number, payload: Uint8Array) =>
  frame(kind, (e) => {
    encoding.writeVarUint(e, 0);
    encoding.writeVarUint(e, sub);
    encoding.writeVarUint8Array(e, payload);
  });

/** The Yjs update inside a received sync message (step 2 or update), or undefined. */
function receivedUpdate(kind: Kind, data: Uint8Array): Uint8Array | undefined {
  const decoder = decoding.createDecoder(data);
  if (kind === 'hocuspocus') decoding.readVarString(decoder);
  if (decoding.readVarUint(decoder) !== 0) return undefined;
  const sub = decoding.readVarUint(decoder);
  return sub === 1 || sub === 2 ? decoding.readVarUint8Array(decoder) : undefined;
}

class Editor {
  readonly doc = new Y.Doc();
  ws!: WebSocket;
  synced = false;
  constructor(
    readonly kind: Kind,
    readonly user: string,
    private readonly onUpdate?: (update: Uint8Array) => void,
  ) {}

  async connect(port: number): Promise<void> {
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(this.user).sign(new TextEncoder().encode(SECRET));
    const url = this.kind === 'chorus' ? `ws://127.0.0.1:${port}/yjs/${DOC}?token=${token}` : `ws://127.0.0.1:${port}/`;
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.ws.binaryType = 'nodebuffer';
    await new Promise<void>((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data: Buffer) => {
      const update = receivedUpdate(this.kind, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      if (!update) return;
      this.synced = true;
      this.onUpdate?.(update);
    });
    if (this.kind === 'hocuspocus') {
      this.ws.send(frame('hocuspocus', (e) => {
        encoding.writeVarUint(e, 2);
        encoding.writeVarUint(e, 0);
        encoding.writeVarString(e, token);
      }));
    }
    this.ws.send(syncMessage(this.kind, 0, Y.encodeStateVector(this.doc)));
  }

  /** One edit: set this editor's key to `seq`; returns the update message. */
  edit(seq: number): void {
    const before = Y.encodeStateVector(this.doc);
    this.doc.getMap('m').set(this.user, seq);
    this.ws.send(syncMessage(this.kind, 2, Y.encodeStateAsUpdate(this.doc, before)));
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function run(kind: Kind) {
  const server = await ServerChild.start(kind);
  const baseline = await server.stats();
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let measuring = false;
  const observerDoc = new Y.Doc();
  observerDoc.getMap('m').observe((event) => {
    const now = performance.now();
    for (const key of event.keysChanged) {
      const id = `${key}:${observerDoc.getMap('m').get(key)}`;
      const sent = sentAt.get(id);
      if (sent !== undefined && measuring) latencies.push(now - sent);
      sentAt.delete(id);
    }
  });
  const observer = new Editor(kind, 'observer', (update) => Y.applyUpdate(observerDoc, update));
  await observer.connect(server.port);
  const editors = Array.from({ length: EDITORS }, (_, i) => new Editor(kind, `e${i}`));
  for (const editor of editors) await editor.connect(server.port);
  const deadline = Date.now() + 10000;
  while (!editors.every((e) => e.synced) && Date.now() < deadline) await sleep(20);
  const loaded = await server.stats();
  const timers: NodeJS.Timeout[] = [];
  const seq = new Map<string, number>();
  for (const editor of editors) {
    const start = setTimeout(() => {
      timers.push(
        setInterval(() => {
          const n = (seq.get(editor.user) ?? 0) + 1;
          seq.set(editor.user, n);
          sentAt.set(`${editor.user}:${n}`, performance.now());
          editor.edit(n);
        }, 1000 / RATE),
      );
    }, Math.random() * (1000 / RATE));
    timers.push(start);
  }
  await sleep(WARMUP_MS);
  measuring = true;
  const before = await server.stats();
  await sleep(SECONDS * 1000);
  const after = await server.stats();
  measuring = false;
  for (const t of timers) clearInterval(t);
  for (const e of [observer, ...editors]) e.ws.terminate();
  await server.stop();
  latencies.sort((a, b) => a - b);
  const sent = [...seq.values()].reduce((a, b) => a + b, 0);
  return {
    kind,
    updatesPerSecond: Math.round(latencies.length / SECONDS),
    p50ms: +percentile(latencies, 50).toFixed(2),
    p99ms: +percentile(latencies, 99).toFixed(2),
    maxms: +(latencies[latencies.length - 1] ?? NaN).toFixed(2),
    unseen: sentAt.size,
    sent,
    serverCpuPercent: +(((after.cpuMicros - before.cpuMicros) / 1000 / (after.at - before.at)) * 100).toFixed(1),
    rssMB: +(after.rss / 1048576).toFixed(1),
    heapDeltaOneDocAnd51ConnectionsMB: +((loaded.heapUsed - baseline.heapUsed) / 1048576).toFixed(2),
    heapUsedMB: +(after.heapUsed / 1048576).toFixed(1),
  };
}

console.log(`documents bench: ${EDITORS} editors + 1 observer on one document, ${RATE} updates/s each, ${SECONDS} s (pinned: ${PIN})`);
const results = [];
for (const kind of ['chorus', 'hocuspocus'] as const) {
  const result = await run(kind);
  console.log(JSON.stringify(result));
  results.push(result);
}
console.table(results);
