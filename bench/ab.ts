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
import { median, pairedRounds, type PairedSide } from './paired.js';
import { UNPACED_ENV, startRedis } from './perf2-util.js';
import { JWT_SECRET, ServerProcess } from './server-process.js';

const withRedis = process.argv.includes('--redis');
const [distA = 'dist-base', distB = 'dist', roundsArg = '7', countArg = '3000'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const rounds = Number(roundsArg);
const count = Number(countArg);

const key = new TextEncoder().encode(JWT_SECRET);
const tokens = await Promise.all(
  Array.from({ length: count * 2 }, (_, i) => new SignJWT({ name: `bench ${i}` }).setProtectedHeader({ alg: 'HS256' }).setSubject(`u${i}`).setExpirationTime('2h').sign(key)),
);
const redis = withRedis ? await startRedis() : undefined;
const engineEnv = (prefix: string): Record<string, string> => (redis ? { BENCH_REDIS_URL: redis.url, BENCH_REDIS_PREFIX: prefix } : {});
const sides: [PairedSide, PairedSide] = [
  { label: distA, nodes: [await ServerProcess.start('chorus', { BENCH_CHORUS_DIST: distA, ...UNPACED_ENV, BENCH_QUIET: '1', ...engineEnv('a') })] },
  { label: distB, nodes: [await ServerProcess.start('chorus', { BENCH_CHORUS_DIST: distB, ...UNPACED_ENV, BENCH_QUIET: '1', ...engineEnv('b') })] },
];

try {
  const out = await pairedRounds(sides, tokens, rounds, { count, localAddress: (i) => `127.0.0.${1 + (i % 8)}` }, (r, { nodesMs: [a, b] }) =>
    console.log(`round ${r}: ${distA} ${a.toFixed(3)} ms, ${distB} ${b.toFixed(3)} ms per handshake, ratio ${(b / a).toFixed(3)}`),
  );
  const ratios = out.map(({ nodesMs: [a, b] }) => b / a);
  console.log(`median ratio ${distB} / ${distA}: ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`);
} finally {
  for (const side of sides) for (const s of side.nodes) await s.stop();
  await redis?.stop();
}
