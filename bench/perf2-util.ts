/** Helpers of bench/perf2.ts and bench/storm.ts: a pinned redis-server, number formatting, tables. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { PIN, sleep } from './server-process.js';

export const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-';

/** A redis-server for the multi-node scenarios, pinned with the servers (core 0). */
export async function startRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
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
