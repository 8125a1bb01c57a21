/**
 * A fault-injecting TCP proxy for tests: listens on 127.0.0.1 (port 0) and forwards every
 * connection to a target port (a real redis-server), so a test can make one node's link to
 * Redis misbehave the way networks do, with the sockets kept open:
 * - `freeze()`: nothing moves in either direction (requests are not delivered, replies not
 *   returned) until `resume()`; new connections are accepted but frozen too;
 * - `freezeReplies()`: requests reach Redis (and run) but replies are held until `resume()`;
 * - `cut()`: destroy every open connection (what is still held is lost);
 * - `refuse(true)`: new connections are closed at once until `refuse(false)`.
 * Nothing is timed here: a test decides when each fault starts and ends.
 */
import { once } from 'node:events';
import net from 'node:net';

interface Link {
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes read from one side but not yet written to the other (held while frozen). */
  toUpstream: Buffer[];
  toClient: Buffer[];
}

export class FaultProxy {
  private readonly server: net.Server;
  private readonly links = new Set<Link>();
  private requestsFrozen = false;
  private repliesFrozen = false;
  private refusing = false;
  /** Substrings whose occurrences in requests (client to Redis) are being counted. */
  private readonly watches = new Map<string, number>();
  port = 0;
  /** Connections accepted so far (refused ones included). */
  accepted = 0;

  private constructor(private readonly targetPort: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(targetPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetPort);
    proxy.server.listen(0, '127.0.0.1');
    await once(proxy.server, 'listening');
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Open connections. */
  get connections(): number {
    return this.links.size;
  }

  /**
   * Count, from now on, the request chunks (client to Redis, as read by the proxy, held or not)
   * that contain `text` (e.g. a channel's key: one per command on it). Returns the counter.
   */
  watch(text: string): () => number {
    this.watches.set(text, 0);
    return () => this.watches.get(text) ?? 0;
  }

  /** Whether a request held by a freeze contains `text` (e.g. it was sent and is being held). */
  holds(text: string): boolean {
    for (const link of this.links) if (link.toUpstream.some((chunk) => chunk.includes(text))) return true;
    return false;
  }

  /** Hold everything in both directions (sockets stay open). */
  freeze(): void {
    this.requestsFrozen = true;
    this.repliesFrozen = true;
  }

  /** Hold replies only: requests still reach Redis and run. */
  freezeReplies(): void {
    this.repliesFrozen = true;
  }

  /** Let everything held flow, in order, and go on forwarding. */
  resume(): void {
    this.requestsFrozen = false;
    this.repliesFrozen = false;
    for (const link of this.links) this.flush(link);
  }

  /** Destroy every open connection; what was held is lost. */
  cut(): void {
    for (const link of this.links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    this.links.clear();
  }

  /** While true, new connections are closed as soon as they are accepted. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    client.on('error', () => {});
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    upstream.on('error', () => {});
    const link: Link = { client, upstream, toUpstream: [], toClient: [] };
    this.links.add(link);
    const drop = () => {
      if (!this.links.delete(link)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    client.on('data', (chunk: Buffer) => {
      for (const [text, n] of this.watches) if (chunk.includes(text)) this.watches.set(text, n + 1);
      link.toUpstream.push(chunk);
      this.flush(link);
    });
    upstream.on('data', (chunk: Buffer) => {
      link.toClient.push(chunk);
      this.flush(link);
    });
    upstream.on('connect', () => this.flush(link));
  }

  private flush(link: Link): void {
    if (!this.requestsFrozen && !link.upstream.connecting && !link.upstream.destroyed) {
      for (const chunk of link.toUpstream.splice(0)) link.upstream.write(chunk);
    }
    if (!this.repliesFrozen && !link.client.destroyed) {
      for (const chunk of link.toClient.splice(0)) link.client.write(chunk);
    }
  }
}
