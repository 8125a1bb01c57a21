import type { PresenceMember } from '../../protocol/index.js';
import { systemClock, type Clock } from '../clock.js';
import type { PresenceEntry, PresenceStore } from '../types.js';

interface ChannelPresence {
  /** clientId -> entry and its expiry. */
  clients: Map<string, { entry: PresenceEntry; expiresAt: number }>;
  /** user -> number of connections. */
  users: Map<string, number>;
}

/**
 * Presence in one process: per-connection entries aggregated to one member per user. Entries
 * expire by TTL like the Redis store's, although locally the server removes them on disconnect.
 */
export class MemoryPresenceStore implements PresenceStore {
  private readonly channels = new Map<string, ChannelPresence>();
  private readonly now: Clock;

  constructor(now: Clock = systemClock) {
    this.now = now;
  }

  async add(channel: string, clientId: string, entry: PresenceEntry, ttlMs: number): Promise<{ firstForUser: boolean }> {
    let presence = this.channels.get(channel);
    if (!presence) {
      presence = { clients: new Map(), users: new Map() };
      this.channels.set(channel, presence);
    }
    const existing = presence.clients.get(clientId);
    presence.clients.set(clientId, { entry, expiresAt: this.now() + ttlMs });
    if (existing) return { firstForUser: false };
    const count = presence.users.get(entry.user) ?? 0;
    presence.users.set(entry.user, count + 1);
    return { firstForUser: count === 0 };
  }

  async remove(channel: string, clientId: string): Promise<{ lastForUser: boolean; user?: string }> {
    const presence = this.channels.get(channel);
    const existing = presence?.clients.get(clientId);
    if (!presence || !existing) return { lastForUser: false };
    return this.drop(channel, presence, clientId, existing.entry.user);
  }

  private drop(channel: string, presence: ChannelPresence, clientId: string, user: string) {
    presence.clients.delete(clientId);
    const count = (presence.users.get(user) ?? 1) - 1;
    if (count <= 0) presence.users.delete(user);
    else presence.users.set(user, count);
    if (presence.clients.size === 0) this.channels.delete(channel);
    return { lastForUser: count <= 0, user };
  }

  async list(channel: string): Promise<PresenceMember[]> {
    const presence = this.channels.get(channel);
    if (!presence) return [];
    // Expired entries are dropped (and reported) only by `sweep`, which sends their `leave`.
    const now = this.now();
    const members = new Map<string, PresenceMember>();
    for (const { entry, expiresAt } of presence.clients.values()) {
      if (expiresAt <= now) continue;
      const member = members.get(entry.user);
      if (member) member.connections++;
      else members.set(entry.user, entry.info ? { user: entry.user, connections: 1, info: entry.info } : { user: entry.user, connections: 1 });
    }
    return [...members.values()];
  }

  async stats(channel: string): Promise<{ users: number; connections: number }> {
    const presence = this.channels.get(channel);
    if (!presence) return { users: 0, connections: 0 };
    return { users: presence.users.size, connections: presence.clients.size };
  }

  async sweep(channel: string): Promise<PresenceEntry[]> {
    const presence = this.channels.get(channel);
    return presence ? this.expire(channel, presence) : [];
  }

  /** Drop expired entries; returns the users whose last entry that was. */
  private expire(channel: string, presence: ChannelPresence): PresenceEntry[] {
    const now = this.now();
    const gone: PresenceEntry[] = [];
    for (const [clientId, { entry, expiresAt }] of presence.clients) {
      if (expiresAt <= now && this.drop(channel, presence, clientId, entry.user).lastForUser) gone.push(entry);
    }
    return gone;
  }
}
