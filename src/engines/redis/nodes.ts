import type { NodeDirectory, NodeReport } from '../types.js';
import { unavailable, type Client } from './clients.js';

/**
 * Node reports in Redis: one key per node holding its JSON report with a TTL (PX), plus a set
 * of node ids to find them; ids whose key expired are removed from the set when listed. All
 * keys share the `{nodes}` hash tag, so they live in one slot of a Redis Cluster.
 */
export class RedisNodeDirectory implements NodeDirectory {
  private readonly index: string;

  /** @param prefix Prefix of every key (the engine's `prefix`). */
  constructor(
    private readonly client: Client,
    private readonly prefix: string,
    private readonly now: () => number,
  ) {
    this.index = `${prefix}:{nodes}:all`;
  }

  private key(node: string): string {
    return `${this.prefix}:{nodes}:n:${node}`;
  }

  async report(node: string, data: unknown, ttlMs: number): Promise<void> {
    const report: NodeReport = { node, time: this.now(), data };
    try {
      await this.client.multi().set(this.key(node), JSON.stringify(report), 'PX', ttlMs).sadd(this.index, node).exec();
    } catch (err) {
      throw unavailable(err);
    }
  }

  async list(): Promise<NodeReport[]> {
    try {
      const nodes = (await this.client.smembers(this.index)).sort();
      if (nodes.length === 0) return [];
      const values = await this.client.mget(...nodes.map((n) => this.key(n)));
      const gone = nodes.filter((_, i) => values[i] === null);
      if (gone.length > 0) await this.client.srem(this.index, ...gone);
      return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as NodeReport);
    } catch (err) {
      throw unavailable(err);
    }
  }

  async remove(node: string): Promise<void> {
    try {
      await this.client.multi().del(this.key(node)).srem(this.index, node).exec();
    } catch (err) {
      throw unavailable(err);
    }
  }
}
