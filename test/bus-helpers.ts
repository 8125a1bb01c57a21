/**
 * Two ChorusServers on port 0 sharing one in-process test bus (src/engines/bus), for cluster
 * tests that run in milliseconds. `busClusters(namespaces)` registers the teardown (servers,
 * bus, sockets) with `afterEach` of the calling test file.
 */
import { afterEach } from 'node:test';
import { TestBus, type BusNode, type BusNodeOptions } from '../src/engines/bus/index.js';
import type { ServerOptions } from '../src/server/index.js';
import { signToken, startServer, TestSocket, type TestServer } from './helpers.js';

export interface BusCluster {
  bus: TestBus;
  nodes: { a: BusNode; b: BusNode };
  a: TestServer;
  b: TestServer;
}

export function busClusters(namespaces: NonNullable<ServerOptions['namespaces']>) {
  let running: BusCluster | undefined;
  const sockets = new Set<TestSocket>();
  afterEach(async () => {
    for (const s of sockets) s.ws.terminate();
    sockets.clear();
    if (running) {
      await Promise.allSettled([running.a.close(), running.b.close()]);
      await running.bus.close();
      running = undefined;
    }
  });
  return {
    /** Start a bus with nodes `a` and `b` (with `node` options) and a server on each. */
    async cluster(options: { server?: ServerOptions; node?: BusNodeOptions } = {}): Promise<BusCluster> {
      const bus = new TestBus();
      await bus.start();
      const nodes = { a: bus.node('a', options.node ?? {}), b: bus.node('b', options.node ?? {}) };
      const common = { namespaces, ...options.server };
      const [a, b] = await Promise.all([startServer({ ...common, engine: nodes.a }), startServer({ ...common, engine: nodes.b })]);
      running = { bus, nodes, a, b };
      return running;
    },
    /** A raw protocol client of `user`, terminated after the test. */
    async connect(server: TestServer, user: string): Promise<TestSocket> {
      const socket = await TestSocket.connect(server.wsUrl, await signToken(user));
      sockets.add(socket);
      return socket;
    },
  };
}

/** The offsets a socket received on a channel, in order. */
export const offsets = (s: TestSocket, channel: string) => s.messages(channel).map((m) => m.offset as number);
/** 1..n */
export const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
