/**
 * The engine contract on the Redis topologies the issue promises beyond a plain standalone server:
 * TLS (`rediss://`), Sentinel (with a forced failover) and Cluster (classic and sharded pub/sub).
 * Every suite starts its own redis-server processes (Debian's package) on loopback ports with a
 * temp dir, and kills them afterwards, also when a step fails.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RedisEngine, type RedisEngineOptions } from '../src/engines/redis/index.js';
import type { BrokerEvent } from '../src/engines/types.js';
import { contract } from './engine-contract.js';
import { freePort } from './redis-helpers.js';

type Reply = string | number | null | Reply[] | Error;

/** Parse one RESP value from `buf` at `pos`; undefined while incomplete. */
function parseResp(buf: string, pos = 0): { value: Reply; end: number } | undefined {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return undefined;
  const type = buf[pos];
  const head = buf.slice(pos + 1, eol);
  if (type === '+') return { value: head, end: eol + 2 };
  if (type === '-') return { value: new Error(head), end: eol + 2 };
  if (type === ':') return { value: Number(head), end: eol + 2 };
  if (type === '$') {
    const len = Number(head);
    if (len < 0) return { value: null, end: eol + 2 };
    // Read as latin1, so characters = bytes.
    if (buf.length < eol + 2 + len + 2) return undefined;
    return { value: buf.slice(eol + 2, eol + 2 + len), end: eol + 2 + len + 2 };
  }
  if (type === '*') {
    const n = Number(head);
    if (n < 0) return { value: null, end: eol + 2 };
    const items: Reply[] = [];
    let at = eol + 2;
    for (let i = 0; i < n; i++) {
      const item = parseResp(buf, at);
      if (!item) return undefined;
      items.push(item.value);
      at = item.end;
    }
    return { value: items, end: at };
  }
  throw new Error(`unexpected RESP reply: ${buf.slice(pos, pos + 40)}`);
}

/** One command on a fresh plain-TCP connection to 127.0.0.1:port (admin only; bounded by 3 s). */
async function command(port: number, ...parts: string[]): Promise<Reply> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setTimeout(3000, () => socket.destroy(new Error(`redis ${parts[0]} on ${port}: timeout`)));
  try {
    let buf = '';
    const reply = new Promise<Reply>((resolve, reject) => {
      socket.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        const parsed = parseResp(buf);
        if (parsed) resolve(parsed.value);
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error(`redis ${parts[0]} on ${port}: connection closed`)));
    });
    socket.write(`*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`);
    return await reply;
  } finally {
    socket.destroy();
  }
}

async function tryCommand(port: number, ...parts: string[]): Promise<Reply> {
  try {
    return await command(port, ...parts);
  } catch (err) {
    return err as Error;
  }
}

/** Poll `check` until it returns a truthy value; fail with `what` after `ms`. */
async function until<T>(what: string, ms: number, check: () => Promise<T> | T, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      if ((err as { fatal?: boolean }).fatal) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const everyChild = new Set<ChildProcess>();
// Last resort: a crashed test run must not leave redis-server processes behind.
process.on('exit', () => {
  for (const child of everyChild) if (child.exitCode === null) child.kill('SIGKILL');
});

/** The processes and temp dir of one suite; `stop()` kills them all (SIGKILL) and removes the dir. */
class Processes {
  readonly dir = mkdtempSync(join(tmpdir(), 'chorus-topology-'));
  private readonly children: ChildProcess[] = [];

  /** Start `redis-server args...`; resolves when `pingPort` answers PING (plain TCP). */
  async redis(args: string[], pingPort: number | undefined): Promise<ChildProcess> {
    const child = spawn('redis-server', [...args, '--daemonize', 'no', '--loglevel', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] });
    everyChild.add(child);
    this.children.push(child);
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    if (pingPort !== undefined) {
      await until(`redis-server on ${pingPort}`, 5000, async () => {
        if (child.exitCode !== null) throw Object.assign(new Error(`redis-server exited (${child.exitCode}): ${output.trim()}`), { fatal: true });
        return (await tryCommand(pingPort, 'PING')) === 'PONG';
      });
    }
    return child;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = once(child, 'exit');
          child.kill('SIGKILL');
          await exited;
        }
        everyChild.delete(child);
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Start processes with `setup`; on any failure kill what was started. */
async function withProcesses<T>(setup: (p: Processes) => Promise<T>): Promise<{ value: T; processes: Processes }> {
  const processes = new Processes();
  try {
    return { value: await setup(processes), processes };
  } catch (err) {
    await processes.stop();
    throw err;
  }
}

const commonServer = (dir: string) => ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/** A throwaway CA and a server certificate for 127.0.0.1 (CN and IP SAN), made with openssl. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const run = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 10000 });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=chorus-test-ca');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext');
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
}

/**
 * Is TLS compiled into this redis-server (Debian's is: it links libssl)? A build without it
 * rejects `tls-port` as a "Bad directive"; a build with it gets past the directive and fails on
 * the missing certificate files. Both exit at once.
 */
function tlsSupport(): string | undefined {
  const r = spawnSync(
    'redis-server',
    ['--port', '0', '--tls-port', '1', '--tls-cert-file', '/nonexistent/c', '--tls-key-file', '/nonexistent/k', '--tls-ca-cert-file', '/nonexistent/ca', '--save', ''],
    { encoding: 'utf8', timeout: 5000 },
  );
  const out = `${r.stdout}${r.stderr}`;
  if (/Bad directive/i.test(out)) return out.trim().split('\n').slice(-3).join(' | ');
  return undefined;
}

const tlsUnsupported = tlsSupport();

describe('redis over TLS', { skip: tlsUnsupported ? `redis-server has no TLS support: ${tlsUnsupported}` : false }, () => {
  contract('redis over TLS (rediss://)', async () => {
    const { value: engine, processes } = await withProcesses(async (p) => {
      const certs = makeCertificates(p.dir);
      const tlsPort = await freePort();
      // prettier-ignore
      await p.redis([
        ...commonServer(p.dir),
        '--port', '0',
        '--tls-port', String(tlsPort),
        '--tls-cert-file', certs.cert,
        '--tls-key-file', certs.key,
        '--tls-ca-cert-file', certs.ca,
        '--tls-auth-clients', 'no',
      ], undefined);
      // No plain port to PING: connecting over TLS is the test; wait for `ready` of both connections.
      const engine = new RedisEngine({ url: `rediss://127.0.0.1:${tlsPort}`, redis: { tls: { ca: readFileSync(certs.ca) } } });
      try {
        await until('a TLS connection', 5000, () => engine.client.status === 'ready' && engine.subscriber.status === 'ready');
        // A CA the server's certificate does not chain to is refused: the `ca` is really checked.
        const other = makeCertificates(mkdtempSync(join(p.dir, 'other-')));
        const stranger = new RedisEngine({ url: `rediss://127.0.0.1:${tlsPort}`, redis: { tls: { ca: readFileSync(other.ca) }, retryStrategy: () => null } });
        try {
          await assert.rejects(stranger.read('x', { limit: 0 }), /unavailable/);
          assert.notEqual(stranger.client.status, 'ready');
          // Let both handshakes fail before closing: a TLS alert arriving after close() found a
          // socket without an error listener (an uncaught exception after the hook ended).
          await until('the refused handshakes to end', 5000, () => stranger.client.status === 'end' && stranger.subscriber.status === 'end');
        } finally {
          await stranger.close();
        }
      } catch (err) {
        await engine.close();
        throw err;
      }
      return engine;
    });
    return {
      engine,
      cleanup: async () => {
        await engine.close();
        await processes.stop();
      },
    };
  });
});

// ---------------------------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------------------------

interface SentinelSetup {
  master: number;
  replica?: number;
  sentinel: number;
}

async function startSentinel(p: Processes, withReplica: boolean): Promise<SentinelSetup> {
  const master = await freePort();
  await p.redis([...commonServer(p.dir), '--port', String(master), '--dbfilename', `m-${master}.rdb`], master);
  let replica: number | undefined;
  if (withReplica) {
    const port = await freePort();
    replica = port;
    await p.redis([...commonServer(p.dir), '--port', String(port), '--dbfilename', `r-${port}.rdb`, '--replicaof', '127.0.0.1', String(master)], port);
    await until('the replica in sync', 15000, async () => String(await command(port, 'INFO', 'replication')).includes('master_link_status:up'));
  }
  const sentinel = await freePort();
  const conf = join(p.dir, `sentinel-${sentinel}.conf`); // Sentinel rewrites its config file: it must be writable.
  writeFileSync(
    conf,
    [
      `port ${sentinel}`,
      'bind 127.0.0.1',
      `dir ${p.dir}`,
      `sentinel monitor mymaster 127.0.0.1 ${master} 1`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 5000',
      '',
    ].join('\n'),
  );
  await p.redis([conf, '--sentinel'], sentinel);
  await until('sentinel to know the master', 5000, async () => {
    const reply = await command(sentinel, 'SENTINEL', 'get-master-addr-by-name', 'mymaster');
    return Array.isArray(reply) && reply[1] === String(master);
  });
  return replica === undefined ? { master, sentinel } : { master, replica, sentinel };
}

const viaSentinel = (s: SentinelSetup): RedisEngineOptions => ({
  redis: { sentinels: [{ host: '127.0.0.1', port: s.sentinel }], name: 'mymaster' },
});

contract('redis via Sentinel', async () => {
  const { value: engine, processes } = await withProcesses(async (p) => new RedisEngine(viaSentinel(await startSentinel(p, false))));
  return {
    engine,
    cleanup: async () => {
      await engine.close();
      await processes.stop();
    },
  };
});

describe('redis via Sentinel: failover', () => {
  let processes: Processes | undefined;
  let setup: SentinelSetup;
  let engine: RedisEngine | undefined;
  const events: BrokerEvent[] = [];

  before(async () => {
    ({ value: setup, processes } = await withProcesses((p) => startSentinel(p, true)));
    engine = new RedisEngine(viaSentinel(setup));
    engine.setHandler((e) => events.push(e));
    await engine.start();
  });
  after(async () => {
    await engine?.close();
    await processes?.stop();
  });

  test('after SENTINEL FAILOVER the engine follows the new master: publish and delivery work again, offsets continue', async () => {
    const history = { size: 10, ttlMs: 60000 };
    const c = 'failover:room';
    const received = () => events.filter((e) => e.type === 'publication' && e.publication.channel === c).map((e: any) => e.publication.offset as number);
    await engine!.subscribe(c, { recoverable: true });
    const first = await engine!.publish(c, 'before', { history });
    assert.equal(first.offset, 1);
    await until('the publication before the failover', 3000, () => received().includes(1));
    // Replicated before the switch (replication is asynchronous; losing it is not what is tested here).
    assert.equal(await command(setup.master, 'WAIT', '1', '2000'), 1);

    const started = Date.now();
    await until('sentinel to start the failover', 8000, async () => (await command(setup.sentinel, 'SENTINEL', 'FAILOVER', 'mymaster')) === 'OK', 100);
    // Switched: the replica is the master and no failover is in progress any more (Sentinel
    // answers get-master-addr-by-name with the promoted replica earlier, before +switch-master).
    await until('sentinel to switch to the replica', 10000, async () => {
      const reply = (await command(setup.sentinel, 'SENTINEL', 'MASTER', 'mymaster')) as string[];
      const field = (name: string) => reply[reply.indexOf(name) + 1];
      return field('port') === String(setup.replica) && field('flags') === 'master';
    });
    // Publishing works again, on the new master (a write accepted by the old one would be lost).
    let second: Awaited<ReturnType<RedisEngine['publish']>> | undefined;
    await until(
      'a publish to succeed after the failover',
      10000,
      async () => {
        second = await engine!.publish(c, 'after', { history });
        return true;
      },
      50,
    );
    const failoverMs = Date.now() - started;
    assert.equal(await command(setup.replica!, 'HGET', `chorus:{${c}}:m`, 'o'), '2', 'written to the new master');
    assert.equal(second!.offset, 2, 'offsets continue on the promoted replica');
    assert.equal(second!.epoch, first.epoch);
    await until('the publication after the failover', 5000, () => received().includes(2));
    assert.deepEqual(received(), [1, 2]);
    const read = await engine!.read(c, { limit: 10 });
    assert.deepEqual(read.publications.map((p) => p.data), ['before', 'after']);
    console.log(`# sentinel failover to a working publish: ${failoverMs} ms`);
  });
});

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

/** Three masters, no replicas, made with `redis-cli --cluster create`; resolves when every node says cluster_state:ok. */
async function startCluster(p: Processes): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    // The bus port is given explicitly: port + 10000 may be taken, or above 65535.
    const bus = await freePort();
    // prettier-ignore
    await p.redis([
      ...commonServer(p.dir),
      '--port', String(port),
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(p.dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '2000',
      '--cluster-port', String(bus),
      '--dbfilename', `dump-${port}.rdb`,
    ], port);
    ports.push(port);
  }
  const r = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    encoding: 'utf8',
    timeout: 15000,
  });
  if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${r.stdout}${r.stderr}`);
  await until('cluster_state:ok on every node', 10000, async () => {
    for (const port of ports) if (!String(await command(port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false;
    return true;
  });
  return ports;
}

for (const sharded of [false, true]) {
  contract(sharded ? 'redis cluster (sharded pub/sub)' : 'redis cluster (PUBLISH)', async () => {
    const { value: ports, processes } = await withProcesses(startCluster);
    const engine = new RedisEngine({ cluster: [{ host: '127.0.0.1', port: ports[0]! }], shardedPubSub: sharded });
    return {
      engine,
      cleanup: async () => {
        await engine.close();
        await processes.stop();
      },
    };
  });
}

describe('redis cluster: two Chorus nodes, channels on every shard', () => {
  let processes: Processes | undefined;
  let ports: number[] = [];
  const engines: RedisEngine[] = [];

  before(async () => {
    ({ value: ports, processes } = await withProcesses(startCluster));
  });
  after(async () => {
    await Promise.allSettled(engines.map((e) => e.close()));
    await processes?.stop();
  });

  for (const sharded of [false, true]) {
    test(`${sharded ? 'SPUBLISH' : 'PUBLISH'}: publications on node A reach node B on 24 channels spread over the 3 masters`, async () => {
      const prefix = sharded ? 'sharded' : 'classic';
      const history = { size: 10, ttlMs: 60000 };
      // Different start-up nodes for the two Chorus nodes.
      const a = new RedisEngine({ cluster: [{ host: '127.0.0.1', port: ports[0]! }], shardedPubSub: sharded, prefix, name: 'a' });
      const b = new RedisEngine({ cluster: [{ host: '127.0.0.1', port: ports[2]! }], shardedPubSub: sharded, prefix, name: 'b' });
      engines.push(a, b);
      const got: BrokerEvent[] = [];
      a.setHandler(() => {});
      b.setHandler((e) => got.push(e));
      await Promise.all([a.start(), b.start()]);
      const channels = Array.from({ length: 24 }, (_, i) => `room:${i}`);
      for (const c of channels) await b.subscribe(c, { recoverable: true });
      const offsets = (c: string) => got.filter((e) => e.type === 'publication' && e.publication.channel === c).map((e: any) => e.publication.offset as number);

      // Where do the channels live? Every master owns some of them.
      const owners = new Map<number, number>();
      const slots = (await command(ports[0]!, 'CLUSTER', 'SLOTS')) as Reply[][];
      for (const c of channels) {
        const slot = Number(await command(ports[0]!, 'CLUSTER', 'KEYSLOT', `${prefix}:{${c}}:p`));
        const range = slots.find((r) => slot >= Number(r[0]) && slot <= Number(r[1]))!;
        const owner = Number((range[2] as Reply[])[1]);
        owners.set(owner, (owners.get(owner) ?? 0) + 1);
        if (sharded) {
          // The sharded subscription is held by the shard that owns the channel.
          const numsub = (await command(owner, 'PUBSUB', 'SHARDNUMSUB', `${prefix}:{${c}}:p`)) as Reply[];
          assert.equal(numsub[1], 1, `${c} is ssubscribed on its shard ${owner}`);
        }
      }
      assert.equal(owners.size, 3, `channels spread over every master: ${JSON.stringify([...owners])}`);

      for (let round = 1; round <= 3; round++) {
        for (const c of channels) assert.equal((await a.publish(c, { round }, { history })).offset, round);
      }
      await until('every publication on node B', 5000, () => channels.every((c) => offsets(c).length === 3));
      for (const c of channels) assert.deepEqual(offsets(c), [1, 2, 3], c);
      // Ephemeral publications and presence events travel the same way; control messages too.
      await a.publish('room:5', 'typing', { ephemeral: true });
      await a.publishPresenceEvent({ type: 'join', channel: 'room:17', user: 'ada' });
      await a.publishControl({ type: 'disconnect', user: `zed-${prefix}`, code: 4500, reason: 'x' });
      await until('ephemeral, join and control on node B', 3000, () =>
        got.some((e) => e.type === 'publication' && e.publication.ephemeral === true) &&
        got.some((e) => e.type === 'join' && e.channel === 'room:17') &&
        got.some((e) => e.type === 'control' && e.command.type === 'disconnect' && e.command.user === `zed-${prefix}`),
      );

      // Unsubscribing removes the subscriptions.
      for (const c of channels) await b.unsubscribe(c);
      if (sharded) {
        await until('no sharded subscription left', 3000, async () => {
          for (const port of ports) {
            const numsub = (await command(port, 'PUBSUB', 'SHARDNUMSUB', ...channels.map((c) => `${prefix}:{${c}}:p`))) as Reply[];
            for (let i = 1; i < numsub.length; i += 2) if (numsub[i] !== 0) return false;
          }
          return true;
        });
      }
    });
  }
});
