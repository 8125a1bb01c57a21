import type { PresenceMember } from '../../protocol/index.js';
import type { PresenceEntry, PresenceStore } from '../types.js';
import { RedisKeys, unavailable, type Client } from './clients.js';

/** Presence in Redis: per-connection entries with TTL, aggregated per user; a dead node's entries expire. */
export class RedisPresenceStore implements PresenceStore {
  private readonly keys: RedisKeys;

  /** @param prefix Prefix of every key (the engine's `prefix`). */
  constructor(
    private readonly client: Client,
    prefix: string,
  ) {
    this.keys = new RedisKeys(prefix);
  }

  async add(channel: string, clientId: string, entry: PresenceEntry, ttlMs: number): Promise<{ firstForUser: boolean }> {
    try {
      const first = await this.client.chorusPresenceAdd(...this.keys.presence(channel), clientId, JSON.stringify(entry), entry.user, ttlMs);
      return { firstForUser: first === 1 };
    } catch (err) {
      throw unavailable(err);
    }
  }

  async remove(channel: string, clientId: string): Promise<{ lastForUser: boolean; user?: string }> {
    try {
      const [last, user] = await this.client.chorusPresenceRemove(...this.keys.presence(channel), clientId);
      return user ? { lastForUser: last === 1, user } : { lastForUser: false };
    } catch (err) {
      throw unavailable(err);
    }
  }

  private async listRaw(channel: string, sweep: boolean): Promise<{ gone: PresenceEntry[]; live: PresenceEntry[] }> {
    let reply: string[];
    try {
      reply = await this.client.chorusPresenceList(...this.keys.presence(channel), sweep ? 1 : 0);
    } catch (err) {
      throw unavailable(err);
    }
    const split = reply.indexOf('--');
    const parse = (items: string[]) => items.map((s) => JSON.parse(s) as PresenceEntry);
    return { gone: parse(reply.slice(0, split)), live: parse(reply.slice(split + 1)) };
  }

  async list(channel: string): Promise<PresenceMember[]> {
    const { live } = await this.listRaw(channel, false);
    const members = new Map<string, PresenceMember>();
    for (const entry of live) {
      const member = members.get(entry.user);
      if (member) member.connections++;
      else members.set(entry.user, entry.info ? { user: entry.user, connections: 1, info: entry.info } : { user: entry.user, connections: 1 });
    }
    return [...members.values()];
  }

  async stats(channel: string): Promise<{ users: number; connections: number }> {
    const [clients, , users] = this.keys.presence(channel);
    try {
      const [connections, userCount] = await Promise.all([this.client.hlen(clients), this.client.hlen(users)]);
      return { users: userCount, connections };
    } catch (err) {
      throw unavailable(err);
    }
  }

  async sweep(channel: string): Promise<PresenceEntry[]> {
    return (await this.listRaw(channel, true)).gone;
  }
}
