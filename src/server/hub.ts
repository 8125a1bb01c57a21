import type { Logger } from 'pino';
import {
  ChorusError,
  Disconnect,
  ErrorCode,
  JSON_CODEC,
  ServerEvent,
  type MessageData,
  type StreamPosition,
  type Codec,
  type SubscribeResult,
} from '../protocol/index.js';
import type { BrokerEvent, Engine, Publication } from '../engines/types.js';
import type { Connection, SubscriptionState } from './connection.js';
import type { LimitReporter } from './limit-reporter.js';
import type { ResolvedNamespace } from './options.js';
import type { Metrics } from './metrics.js';
import { OutgoingFrame } from './outgoing.js';
import { SmallSet } from './small-set.js';
import type { FramePosition } from './transport.js';

export interface SubscribeRequestOptions {
  since?: StreamPosition;
  snapshot?: boolean;
}

export interface HubSettings {
  /** Presence entries live this long unless refreshed, in ms. */
  presenceTtlMs: number;
  /**
   * Send-queue budget of one recovery, in bytes: a recovery may fill the connection's queue up to
   * this (what is already queued counts), leaving the rest for live traffic while the client
   * reads it; more missed than fits is `recovered: false`.
   */
  maxRecoveryBytes: number;
  /** Told when a limit is hit (subscriptions per connection, recovery bytes). */
  reporter: LimitReporter;
  /** Called when a channel gets its first local subscriber (`occupied: true`) or loses its last. */
  onLocalChannel?(channel: string, occupied: boolean): void;
  /** Called after a join/leave event was published (once in the cluster: by the node that made the change). */
  onPresenceEvent?(event: { type: 'join' | 'leave'; channel: string; user: string; info?: Record<string, unknown> }): void;
}

/**
 * Sends the subscribe result to the client (ack, `subscribed` event or `connected` frame). May return a promise: live publications stay held
 * until it settles (so several subscriptions can be announced in one frame before any goes live).
 */
export type Announce = (result: SubscribeResult) => void | Promise<void>;

/** Encode a publication as the `message` frame every subscriber receives. */
export function messageData(publication: Publication): MessageData {
  const data: MessageData = { channel: publication.channel, data: publication.data, time: publication.time };
  if (publication.offset !== undefined) {
    data.offset = publication.offset;
    data.epoch = publication.epoch!;
  }
  if (publication.publisher) data.publisher = publication.publisher;
  if (publication.ephemeral) data.ephemeral = true;
  if (publication.key !== undefined) data.key = publication.key;
  return data;
}

/** The `message` frame of a publication, to be encoded once per codec in use. */
export function messageFrame(publication: Publication): OutgoingFrame {
  return new OutgoingFrame({ event: ServerEvent.MESSAGE, data: messageData(publication) });
}

/** The `message` frame of a publication in JSON (tests and tools; the hub encodes per codec). */
export function encodeMessage(publication: Publication): Uint8Array {
  return messageFrame(publication).encode(JSON_CODEC);
}

/** Where a publication leaves its channel's stream (undefined for ephemeral publications). */
export function positionOf(publication: Publication): FramePosition | undefined {
  return publication.offset === undefined ? undefined : { channel: publication.channel, offset: publication.offset, epoch: publication.epoch! };
}

/** What a channel's `broker` holds once its broker subscription is made. */
const BROKER_SUBSCRIBED: Promise<void> = Promise.resolve();

/**
 * A channel's local subscribers, and the node's broker subscription for it that every
 * subscriber awaits (kept on the set: no second map entry per channel).
 */
export class ChannelSubscribers extends SmallSet<Connection> {
  /** Pending, then BROKER_SUBSCRIBED; undefined before the first attempt and after a failed one. */
  broker: Promise<void> | undefined;
}

/**
 * The hub of local channels: which connections on this node subscribe to what, fan-out of the
 * engine's publications (each encoded once per codec in use, written to every subscriber's bounded queue),
 * subscription set-up with recovery, and presence with once-per-user join/leave.
 */
export class Hub {
  /** channel -> local subscribers */
  readonly channels = new Map<string, ChannelSubscribers>();
  /** user -> local connections */
  readonly users = new Map<string, SmallSet<Connection>>();
  /** Presence entries live this long unless refreshed, in ms (refreshed at a third of it). */
  private readonly presenceTtlMs: number;
  private refreshing = false;

  constructor(
    private readonly engine: Engine,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly settings: HubSettings,
  ) {
    this.presenceTtlMs = settings.presenceTtlMs;
  }

  addConnection(connection: Connection): void {
    let set = this.users.get(connection.user);
    if (!set) this.users.set(connection.user, (set = new SmallSet()));
    set.add(connection);
  }

  /** Remove a closed connection: unsubscribe it everywhere (presence leave included). */
  async removeConnection(connection: Connection): Promise<void> {
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

  /** The broker subscription for a channel, made once however many local subscribers await it. */
  private brokerSubscription(channel: string, namespace: ResolvedNamespace, subscribers: ChannelSubscribers): Promise<void> {
    let ready = subscribers.broker;
    if (!ready) {
      const made = this.engine.broker.subscribe(channel, { recoverable: namespace.historySize > 0 });
      subscribers.broker = ready = made;
      made.then(
        // Done: keep a shared settled promise, not this one, for as long as the channel lives.
        () => void (subscribers.broker === made && (subscribers.broker = BROKER_SUBSCRIBED)),
        // Failed: forget it so the next subscriber tries again.
        () => void (subscribers.broker === made && (subscribers.broker = undefined)),
      );
    }
    return ready;
  }

  /**
   * Subscribe a connection. Live publications that arrive while recovery runs are held back;
   * once set up, `announce` sends the result to the client and, right after it, the held-back
   * publications follow (duplicates of the recovered ones removed) and the subscription is live.
   * Nothing is announced if it fails.
   */
  async subscribe(
    connection: Connection,
    channel: string,
    namespace: ResolvedNamespace,
    options: SubscribeRequestOptions,
    maxSubscriptions: number,
    announce: Announce,
  ): Promise<SubscribeResult> {
    if (connection.subscriptions.has(channel)) {
      throw new ChorusError(ErrorCode.ALREADY_SUBSCRIBED, `already subscribed to "${channel}"`);
    }
    if (connection.subscriptions.size >= maxSubscriptions) {
      this.settings.reporter.limitHit('subscriptions', connection, { maxSubscriptions });
      throw new ChorusError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${maxSubscriptions} subscriptions per connection`);
    }
    const state: SubscriptionState = { namespace, pending: [], presence: false, ackedEpoch: undefined, ackedOffset: 0 };
    connection.subscriptions.set(channel, state);
    let subscribers = this.channels.get(channel);
    if (!subscribers) {
      this.channels.set(channel, (subscribers = new ChannelSubscribers()));
      this.settings.onLocalChannel?.(channel, true);
    }
    subscribers.add(connection);
    this.metrics.subscriptions.inc();
    const cancelled = () => connection.closing || connection.subscriptions.get(channel) !== state;
    try {
      // Every subscriber waits for the node's broker subscription, so positions read below are
      // never older than what the node receives live (an in-process broker has none to wait for).
      if (!this.engine.broker.inProcess) await this.brokerSubscription(channel, namespace, subscribers);
      const { position, recovered, frames } = this.positionNow(channel, namespace, options) ?? (await this.catchUp(channel, namespace, options, connection));
      if (cancelled()) throw new ChorusError(ErrorCode.NOT_SUBSCRIBED, 'the subscription was cancelled');
      for (const { frame, publication } of frames) connection.sendEncoded(frame, 'reply', positionOf(publication));
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
        // From now on every live copy at or below the acked position is dropped in `deliver`,
        // the held-back ones here and those a lagging node receives later alike.
        state.ackedEpoch = position.epoch;
        state.ackedOffset = position.offset;
        for (const { publication, frame } of held) {
          if (publication) {
            const at = positionOf(publication);
            if (alreadySent(state, at)) continue;
            connection.sendPublication(frame.encode(connection.codec), publication, namespace.backpressure, at);
          } else connection.sendShared(frame, 'live');
        }
      };
      if (namespace.presence) {
        state.presence = true;
        const entry = connection.info ? { user: connection.user, info: connection.info } : { user: connection.user };
        const { firstForUser } = await this.engine.presence.add(channel, connection.id, entry, this.presenceTtlMs);
        if (firstForUser && namespace.joinLeave) await this.presenceEvent('join', channel, namespace, connection);
        if (cancelled()) throw new ChorusError(ErrorCode.NOT_SUBSCRIBED, 'the subscription was cancelled');
      }
      const announced = announce(result);
      if (announced) await announced;
      goLive();
      return result;
    } catch (err) {
      // Undo only this attempt: a newer subscription to the same channel may exist by now. The
      // local undo is synchronous; its engine calls (presence removal) run in the background, so
      // the error answers within the subscribe's own wait, not one more engine timeout later.
      if (connection.subscriptions.get(channel) === state) void this.unsubscribe(connection, channel).catch(() => {});
      throw err;
    }
  }

  /**
   * `catchUp` answered at once for a plain subscription (no recovery, no snapshot) on a store
   * that holds its streams in this process; undefined otherwise.
   */
  private positionNow(channel: string, namespace: ResolvedNamespace, options: SubscribeRequestOptions): { position: StreamPosition; recovered: undefined; frames: EncodedPublication[] } | undefined {
    if (options.since || (options.snapshot && namespace.historySize > 0)) return undefined;
    const position = this.engine.history.positionNow?.(channel);
    return position ? { position, recovered: undefined, frames: [] } : undefined;
  }

  /** Work out what a new subscription receives before going live: recovery or a snapshot. */
  private async catchUp(
    channel: string,
    namespace: ResolvedNamespace,
    options: SubscribeRequestOptions,
    connection: Connection,
  ): Promise<{ position: StreamPosition; recovered: boolean | undefined; frames: EncodedPublication[] }> {
    const history = this.engine.history;
    let recovered: boolean | undefined;
    if (options.since) {
      const since = options.since;
      const top = await history.position(channel);
      const missed = top.offset - since.offset;
      if (since.epoch !== top.epoch || missed < 0 || missed > namespace.recoveryMaxMissed) {
        recovered = false;
      } else if (missed === 0) {
        return { position: top, recovered: true, frames: [] };
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
            // Bounded by bytes too: the whole recovery is queued at once.
            const frames = encodeWithin(pubs, this.settings.maxRecoveryBytes - connection.pendingBytes, connection.codec);
            if (frames) return { position: read.position, recovered: true, frames };
            this.settings.reporter.limitHit('recovery_bytes', connection, { channel });
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
      const frames = read.publications.map((publication) => ({ publication, frame: messageFrame(publication).encode(connection.codec) }));
      return { position: read.position, recovered, frames };
    }
    return { position: await history.position(channel), recovered, frames: [] };
  }

  /**
   * Unsubscribe a connection from a channel (false if it was not subscribed). Sends `leave` if it
   * was the user's last connection. Never fails once local state has changed: engine failures
   * are logged (a presence entry left behind expires by TTL and its `leave` comes from the sweep).
   */
  async unsubscribe(connection: Connection, channel: string): Promise<boolean> {
    const state = connection.subscriptions.get(channel);
    if (!state) return false;
    connection.subscriptions.delete(channel);
    this.metrics.subscriptions.dec();
    const subscribers = this.channels.get(channel);
    let last = false;
    if (subscribers) {
      subscribers.delete(connection);
      if (subscribers.size === 0) {
        this.channels.delete(channel);
        last = true;
        this.settings.onLocalChannel?.(channel, false);
      }
    }
    if (state.presence) {
      state.presence = false;
      try {
        const { lastForUser } = await this.engine.presence.remove(channel, connection.id);
        if (lastForUser && state.namespace.joinLeave) await this.presenceEvent('leave', channel, state.namespace, connection);
      } catch (err) {
        this.logger.warn({ err: { message: (err as Error).message }, channel, client: connection.id }, 'presence removal failed; the entry expires by TTL');
      }
    }
    // Only if nobody subscribed again meanwhile.
    if (last && !this.channels.has(channel)) {
      try {
        await this.engine.broker.unsubscribe(channel);
      } catch (err) {
        this.logger.warn({ err: { message: (err as Error).message }, channel }, 'broker unsubscribe failed');
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
    this.settings.onPresenceEvent?.(event);
  }

  /**
   * Refresh the TTL of every local presence entry and sweep expired ones (a dead node's), sending
   * `leave` for users who are gone with them. Call periodically, at a third of the TTL.
   */
  async refreshPresence(): Promise<void> {
    if (this.refreshing) return; // the previous round is still running (slow engine)
    this.refreshing = true;
    try {
      for (const [channel, subscribers] of [...this.channels]) {
        let namespace: ResolvedNamespace | undefined;
        for (const connection of [...subscribers]) {
          const state = connection.subscriptions.get(channel);
          if (!state?.presence) continue;
          namespace = state.namespace;
          const entry = connection.info ? { user: connection.user, info: connection.info } : { user: connection.user };
          const { firstForUser } = await this.engine.presence.add(channel, connection.id, entry, this.presenceTtlMs);
          // The entry was gone (expired during an engine outage, swept by another node, or Redis
          // lost it): the user was reported as left, so they join again.
          if (firstForUser && namespace.joinLeave) await this.presenceEvent('join', channel, namespace, connection);
        }
        if (!namespace) continue;
        for (const gone of await this.engine.presence.sweep(channel)) {
          if (namespace.joinLeave) await this.presenceEvent('leave', channel, namespace, gone);
        }
      }
    } finally {
      this.refreshing = false;
    }
  }

  /** Local subscribers of a channel whose state the node lost: they reconnect and recover by position. */
  private resynchronise(channel: string): void {
    const subscribers = this.channels.get(channel);
    if (!subscribers) return;
    this.logger.warn({ channel, subscribers: subscribers.size }, 'publications lost on this node; subscribers must resynchronise');
    this.metrics.resyncs.inc();
    for (const connection of [...subscribers]) {
      connection.close(Disconnect.insufficientState);
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
      const frame = messageFrame(publication);
      const position = positionOf(publication);
      for (const connection of subscribers) {
        if (connection.id === event.exceptClient) continue;
        const state = connection.subscriptions.get(publication.channel);
        if (!state) continue;
        if (state.pending) {
          state.pending.push({ publication, frame });
          continue;
        }
        if (alreadySent(state, position)) continue;
        connection.sendPublication(frame.encode(connection.codec), publication, state.namespace.backpressure, position);
      }
      return;
    }
    const subscribers = this.channels.get(event.channel);
    if (!subscribers) return;
    const data: Record<string, unknown> = { channel: event.channel, user: event.user };
    if (event.info) data.info = event.info;
    const frame = new OutgoingFrame({ event: event.type, data });
    for (const connection of subscribers) {
      const state = connection.subscriptions.get(event.channel);
      if (!state) continue;
      if (state.pending) state.pending.push({ frame });
      else connection.sendShared(frame, 'live');
    }
  }
}

/** Whether a live publication at `at` is covered by the position the subscription was acked at. */
function alreadySent(state: SubscriptionState, at: FramePosition | undefined): boolean {
  return at !== undefined && at.epoch === state.ackedEpoch && at.offset <= state.ackedOffset;
}

interface EncodedPublication {
  publication: Publication;
  frame: Uint8Array;
}

/** Encode publications as message frames in `codec`, or undefined if they exceed `maxBytes` together. */
function encodeWithin(publications: Publication[], maxBytes: number, codec: Codec): EncodedPublication[] | undefined {
  const frames: EncodedPublication[] = [];
  let total = 0;
  for (const publication of publications) {
    const frame = messageFrame(publication).encode(codec);
    total += frame.length;
    if (total > maxBytes) return undefined;
    frames.push({ publication, frame });
  }
  return frames;
}
