import type { Logger } from 'pino';
import {
  ChorusError,
  CloseCode,
  ErrorCode,
  ServerEvent,
  type MessageData,
  type StreamPosition,
  type SubscribeResult,
} from '../protocol/index.js';
import type { BrokerEvent, Engine, Publication } from '../engines/types.js';
import { BatchCache, type Connection, type SubscriptionState } from './connection.js';
import type { ResolvedNamespace } from './options.js';
import type { Metrics } from './metrics.js';

export interface SubscribeRequestOptions {
  since?: StreamPosition;
  snapshot?: boolean;
}

/** Encode a publication as the `message` frame every subscriber receives. */
export function messageData(publication: Publication): MessageData {
  const data: MessageData = { channel: publication.channel, data: publication.data, time: publication.time };
  if (publication.offset !== undefined) {
    data.offset = publication.offset;
    data.epoch = publication.epoch!;
  }
  if (publication.publisher) data.publisher = publication.publisher;
  if (publication.ephemeral) data.ephemeral = true;
  return data;
}

export function encodeMessage(publication: Publication): Buffer {
  return Buffer.from(JSON.stringify({ event: ServerEvent.MESSAGE, data: messageData(publication) }));
}

/**
 * The hub of local channels: which connections on this node subscribe to what, fan-out of the
 * engine's publications (each encoded once, written to every subscriber's bounded queue),
 * subscription set-up with recovery, and presence with once-per-user join/leave.
 */
export class Hub {
  /** channel -> local subscribers */
  readonly channels = new Map<string, Set<Connection>>();
  /** user -> local connections */
  readonly users = new Map<string, Set<Connection>>();
  private readonly dirty = new Set<Connection>();
  private flushScheduled = false;

  constructor(
    private readonly engine: Engine,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** Presence entries live this long unless refreshed, in ms (refreshed at a third of it). */
    private readonly presenceTtlMs: number,
  ) {}

  addConnection(connection: Connection): void {
    let set = this.users.get(connection.user);
    if (!set) this.users.set(connection.user, (set = new Set()));
    set.add(connection);
  }

  /** Remove a closed connection: unsubscribe it everywhere (presence leave included). */
  async removeConnection(connection: Connection): Promise<void> {
    this.dirty.delete(connection);
    const set = this.users.get(connection.user);
    if (set) {
      set.delete(connection);
      if (set.size === 0) this.users.delete(connection.user);
    }
    const channels = [...connection.subscriptions.keys()];
    await Promise.all(channels.map((channel) => this.unsubscribe(connection, channel).catch((err) => this.logError(err, channel))));
  }

  private logError(err: unknown, channel: string): void {
    this.logger.warn({ err, channel }, 'unsubscribe cleanup failed');
  }

  scheduleFlush(connection: Connection): void {
    this.dirty.add(connection);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushAll());
  }

  /** Write every connection's queued frames, one WebSocket message each. */
  flushAll(): void {
    this.flushScheduled = false;
    const dirty = [...this.dirty];
    this.dirty.clear();
    const batches = new BatchCache();
    for (const connection of dirty) {
      try {
        connection.flush(batches);
      } catch (err) {
        this.logger.warn({ err, client: connection.id }, 'write failed');
        connection.terminate(1011, 'write failed');
      }
    }
  }

  /**
   * Subscribe a connection. Live publications that arrive while recovery runs are held back,
   * then delivered after the recovered ones with duplicates removed. Returns the ack data and a
   * function that releases the held-back publications; call it right after sending the ack.
   */
  async subscribe(
    connection: Connection,
    channel: string,
    namespace: ResolvedNamespace,
    options: SubscribeRequestOptions,
    maxSubscriptions: number,
  ): Promise<{ result: SubscribeResult; goLive: () => void }> {
    if (connection.subscriptions.has(channel)) {
      throw new ChorusError(ErrorCode.ALREADY_SUBSCRIBED, `already subscribed to "${channel}"`);
    }
    if (connection.subscriptions.size >= maxSubscriptions) {
      this.metrics.limitHits.inc({ limit: 'subscriptions' });
      throw new ChorusError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${maxSubscriptions} subscriptions per connection`);
    }
    const state: SubscriptionState = { namespace, pending: [], presence: false };
    connection.subscriptions.set(channel, state);
    let subscribers = this.channels.get(channel);
    const first = !subscribers;
    if (!subscribers) this.channels.set(channel, (subscribers = new Set()));
    subscribers.add(connection);
    this.metrics.subscriptions.inc();
    try {
      if (first) await this.engine.broker.subscribe(channel, { recoverable: namespace.historySize > 0 });
      const { position, recovered, publications } = await this.catchUp(channel, namespace, options);
      if (connection.closing || connection.subscriptions.get(channel) !== state) {
        throw new ChorusError(ErrorCode.NOT_SUBSCRIBED, 'the subscription was cancelled');
      }
      for (const publication of publications) connection.sendEncoded(encodeMessage(publication));
      const result: SubscribeResult = {
        channel,
        offset: position.offset,
        epoch: position.epoch,
        history: namespace.historySize > 0,
        presence: namespace.presence,
      };
      if (recovered !== undefined) result.recovered = recovered;
      const goLive = () => {
        const held = state.pending ?? [];
        state.pending = undefined;
        for (const { publication, frame } of held) {
          const offset = publication?.offset;
          // Already covered by the recovered publications or the starting position.
          if (offset !== undefined && publication!.epoch === position.epoch && offset <= position.offset) continue;
          connection.sendEncoded(frame, publication?.ephemeral === true);
        }
      };
      if (namespace.presence) {
        state.presence = true;
        const entry = connection.info ? { user: connection.user, info: connection.info } : { user: connection.user };
        const { firstForUser } = await this.engine.presence.add(channel, connection.id, entry, this.presenceTtlMs);
        if (firstForUser && namespace.joinLeave) await this.presenceEvent('join', channel, namespace, connection);
      }
      return { result, goLive };
    } catch (err) {
      await this.unsubscribe(connection, channel).catch(() => {});
      throw err;
    }
  }

  /** Work out what a new subscription receives before going live: recovery or a snapshot. */
  private async catchUp(
    channel: string,
    namespace: ResolvedNamespace,
    options: SubscribeRequestOptions,
  ): Promise<{ position: StreamPosition; recovered: boolean | undefined; publications: Publication[] }> {
    const history = this.engine.history;
    let recovered: boolean | undefined;
    if (options.since) {
      const since = options.since;
      const top = await history.position(channel);
      const missed = top.offset - since.offset;
      if (since.epoch !== top.epoch || missed < 0 || missed > namespace.recoveryMaxMissed) {
        recovered = false;
      } else if (missed === 0) {
        return { position: top, recovered: true, publications: [] };
      } else {
        try {
          const read = await history.read(channel, { since, limit: namespace.recoveryMaxMissed + 1 });
          const pubs = read.publications;
          const contiguous =
            pubs.length > 0 &&
            pubs[0]!.offset === since.offset + 1 &&
            pubs[pubs.length - 1]!.offset === read.position.offset &&
            pubs.length === read.position.offset - since.offset;
          if (contiguous && pubs.length <= namespace.recoveryMaxMissed) {
            return { position: read.position, recovered: true, publications: pubs };
          }
          recovered = false;
        } catch (err) {
          if (!(err instanceof ChorusError) || err.code !== ErrorCode.UNRECOVERABLE_POSITION) throw err;
          recovered = false;
        }
      }
    }
    if (options.snapshot && namespace.historySize > 0) {
      const read = await history.read(channel, { limit: 1, reverse: true });
      return { position: read.position, recovered, publications: read.publications };
    }
    return { position: await history.position(channel), recovered, publications: [] };
  }

  /** Unsubscribe a connection from a channel (no-op if not subscribed). Sends `leave` if it was the user's last connection. */
  async unsubscribe(connection: Connection, channel: string): Promise<boolean> {
    const state = connection.subscriptions.get(channel);
    if (!state) return false;
    connection.subscriptions.delete(channel);
    this.metrics.subscriptions.dec();
    const subscribers = this.channels.get(channel);
    if (subscribers) {
      subscribers.delete(connection);
      if (subscribers.size === 0) {
        this.channels.delete(channel);
        await this.engine.broker.unsubscribe(channel);
      }
    }
    if (state.presence) {
      state.presence = false;
      const { lastForUser } = await this.engine.presence.remove(channel, connection.id);
      if (lastForUser && state.namespace.joinLeave) {
        await this.presenceEvent('leave', channel, state.namespace, connection);
      }
    }
    return true;
  }

  private async presenceEvent(
    type: 'join' | 'leave',
    channel: string,
    namespace: ResolvedNamespace,
    member: { user: string; info?: Record<string, unknown> | undefined },
  ) {
    const { users } = await this.engine.presence.stats(channel);
    // Above the threshold the events are quadratic in channel size; the member list stays exact.
    // Both events count the user themself (after a join, before a leave), so a user whose join
    // was suppressed gets no leave either.
    const members = type === 'leave' ? users + 1 : users;
    if (members > namespace.joinLeaveMaxMembers) return;
    const event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> } = {
      type,
      channel,
      user: member.user,
    };
    if (member.info) event.info = member.info;
    await this.engine.broker.publishPresenceEvent(event);
  }

  /**
   * Refresh the TTL of every local presence entry and sweep expired ones (a dead node's), sending
   * `leave` for users who are gone with them. Call periodically, at a third of the TTL.
   */
  async refreshPresence(): Promise<void> {
    for (const [channel, subscribers] of this.channels) {
      let namespace: ResolvedNamespace | undefined;
      for (const connection of subscribers) {
        const state = connection.subscriptions.get(channel);
        if (!state?.presence) continue;
        namespace = state.namespace;
        const entry = connection.info ? { user: connection.user, info: connection.info } : { user: connection.user };
        await this.engine.presence.add(channel, connection.id, entry, this.presenceTtlMs);
      }
      if (!namespace) continue;
      for (const gone of await this.engine.presence.sweep(channel)) {
        if (namespace.joinLeave) await this.presenceEvent('leave', channel, namespace, gone);
      }
    }
  }

  /** Local subscribers of a channel whose state the node lost: they reconnect and recover by position. */
  private resynchronise(channel: string): void {
    const subscribers = this.channels.get(channel);
    if (!subscribers) return;
    this.logger.warn({ channel, subscribers: subscribers.size }, 'publications lost on this node; subscribers must resynchronise');
    for (const connection of [...subscribers]) {
      connection.close(CloseCode.INSUFFICIENT_STATE, 'insufficient state', { reconnect: true });
    }
  }

  /** Deliver one broker event to local subscribers. */
  deliver(event: BrokerEvent): void {
    if (event.type === 'control') return;
    if (event.type === 'lost') return this.resynchronise(event.channel);
    if (event.type === 'publication') {
      const publication = event.publication;
      const subscribers = this.channels.get(publication.channel);
      if (!subscribers) return;
      const frame = encodeMessage(publication);
      const ephemeral = publication.ephemeral === true;
      for (const connection of subscribers) {
        if (connection.id === event.exceptClient) continue;
        const state = connection.subscriptions.get(publication.channel);
        if (!state) continue;
        if (state.pending) {
          state.pending.push({ publication, frame });
          continue;
        }
        connection.sendEncoded(frame, ephemeral);
      }
      return;
    }
    const subscribers = this.channels.get(event.channel);
    if (!subscribers) return;
    const data: Record<string, unknown> = { channel: event.channel, user: event.user };
    if (event.info) data.info = event.info;
    const frame = Buffer.from(JSON.stringify({ event: event.type, data }));
    for (const connection of subscribers) {
      const state = connection.subscriptions.get(event.channel);
      if (!state) continue;
      if (state.pending) state.pending.push({ frame });
      else connection.sendEncoded(frame);
    }
  }
}
