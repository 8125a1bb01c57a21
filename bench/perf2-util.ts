/** Helpers of bench/perf2.ts and bench/storm.ts: a pinned redis-server, number formatting, tables. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { PIN, sleep } from './server-process.js';

export const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-';

/**
 * Unpaced admission for the capacity measurements (the server's environment): they measure what
 * a node can do, not the pacing knob (the reconnect storm measures that).
 */
export const UNPACED_ENV = { BENCH_CHORUS_OPTIONS: JSON.stringify({ admission: { ratePerSecond: 0, maxPending: 0 } }) };

/** A redis-server for the multi-node scenarios, pinned with the servers (core 0). */
export interface BenchRedis {
  url: string;
  /** CPU time the redis-server process has used so far, ms (from /proc; 10 ms resolution). */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** CPU time (user + system) of a process so far, in ms, from /proc/<pid>/stat; 0 where unavailable. */
export function processCpuMs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in USER_HZ (100)
  } catch {
    return 0;
  }
}

export async function startRedis(): Promise<BenchRedis> {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning', '--maxclients', '200000'];
  const child: ChildProcess = PIN ? spawn('taskset', ['-c', '0', 'redis-server', ...args], { stdio: 'ignore' }) : spawn('redis-server', args, { stdio: 'ignore' });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) break;
    await sleep(25);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    cpuMs: () => processCpuMs(child.pid),
    stop: async () => {
      child.kill('SIGKILL');
      process.off('exit', killOnExit);
      await sleep(100);
    },
  };
}

export function printRows(title: string, headers: string[], rows: string[][]): void {
  console.log(`\n${title}\n`);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log([line(headers), `|${widths.map((w, i) => `${'-'.repeat(w + 1)}${i === 0 ? '-' : ':'}`).join('|')}|`, ...rows.map(line)].join('\n'));
}
