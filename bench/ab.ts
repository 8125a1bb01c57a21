/**
 * Paired A/B measurement of server CPU per handshake: two Chorus builds run side by side on the
 * same core and the load generator alternates connections between them, so both see the same
 * machine (a shared machine's noise swings separate runs by 20% or more; within a pair it
 * cancels out). A development tool for "did this change make a handshake cheaper", not a table
 * for RESULTS.md.
 *
 *   npm run build && node --import tsx bench/ab.ts dist-base dist [rounds] [connections per server] [--redis]
 *
 * With `--redis` both run the Redis engine on one redis-server (pinned with them), each on its
 * own key prefix; redis-server's CPU is not counted.
 *
 * Each directory is a compiled Chorus inside the repository (e.g. `npx tsc -p
 * tsconfig.build.json --outDir dist-base` on another commit). Prints each round's CPU per
 * handshake of both and their ratio, then the median ratio (B / A: below 1 means B is cheaper).
 */
import { SignJWT } from 'jose';
import { pathFor } from './fanout.js';
import { startRedis } from './perf2-util.js';
import { JWT_SECRET, ServerProcess } from './server-process.js';
import { Counters, WireClient, openMany } from './wire.js';

const withRedis = process.argv.includes('--redis');
const [distA = 'dist-base', distB = 'dist', roundsArg = '7', countArg = '3000'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const rounds = Number(roundsArg);
const count = Number(countArg);
const UNPACED = JSON.stringify({ admission: { ratePerSecond: 0, maxPending: 0 } });

const key = new TextEncoder().encode(JWT_SECRET);
const tokens = await Promise.all(
  Array.from({ length: count * 2 }, (_, i) => new SignJWT({ name: `bench ${i}` }).setProtectedHeader({ alg: 'HS256' }).setSubject(`u${i}`).setExpirationTime('2h').sign(key)),
);
const redis = withRedis ? await startRedis() : undefined;
const engineEnv = (prefix: string): Record<string, string> => (redis ? { BENCH_REDIS_URL: redis.url, BENCH_REDIS_PREFIX: prefix } : {});
const servers = [
  await ServerProcess.start('chorus', { BENCH_CHORUS_DIST: distA, BENCH_CHORUS_OPTIONS: UNPACED, BENCH_QUIET: '1', ...engineEnv('a') }),
  await ServerProcess.start('chorus', { BENCH_CHORUS_DIST: distB, BENCH_CHORUS_OPTIONS: UNPACED, BENCH_QUIET: '1', ...engineEnv('b') }),
];

/** Open `count` connections on each server, alternating, 200 in flight; CPU per handshake of each. */
async function round(measure: boolean): Promise<[number, number]> {
  if (measure) for (const s of servers) await s.request({ type: 'cpu-start' }, 'ok');
  const counters = new Counters();
  const opened = await openMany(
    count * 2,
    200,
    (i) => new WireClient({ port: servers[i % 2]!.port, path: pathFor('chorus', tokens[i]!), counters, timeoutMs: 30_000, localAddress: `127.0.0.${1 + (i % 8)}` }),
    120_000,
  );
  const cpu: number[] = [];
  if (measure) for (const s of servers) cpu.push((await s.request({ type: 'cpu-read' }, 'cpu')).cpuMs / count);
  if (opened.failed > 0) throw new Error(`${opened.failed} connections failed: ${opened.firstError}`);
  for (const c of opened.clients) c.destroy();
  for (const s of servers) await s.waitFor('connections', (n) => n === 0, 15000);
  return cpu as [number, number];
}

try {
  await round(false); // warm both
  const ratios: number[] = [];
  for (let r = 1; r <= rounds; r++) {
    const [a, b] = await round(true);
    ratios.push(b / a);
    console.log(`round ${r}: ${distA} ${a.toFixed(3)} ms, ${distB} ${b.toFixed(3)} ms per handshake, ratio ${(b / a).toFixed(3)}`);
  }
  ratios.sort((x, y) => x - y);
  console.log(`median ratio ${distB} / ${distA}: ${ratios[Math.floor(ratios.length / 2)]!.toFixed(3)} (range ${ratios[0]!.toFixed(3)}–${ratios[ratios.length - 1]!.toFixed(3)})`);
} finally {
  for (const s of servers) await s.stop();
  await redis?.stop();
}
