import { ChorusError, ErrorCode, type StreamPosition } from '../../protocol/index.js';
import { newEpoch, STREAM_META_TTL_MS } from '../memory/streams.js';
import type { HistoryReadOptions, HistoryReadResult, HistoryStore, Publication } from '../types.js';
import { unavailable, type Client, type RedisKeys } from './clients.js';
import { toPublication, type Envelope } from './envelope.js';
import { TurnBatch } from './turn-batch.js';

/** Channel streams in Redis: a meta hash (epoch, top offset) and a bounded history list per channel. */
export class RedisHistoryStore implements HistoryStore {
  /**
   * Positions the broker read right after subscribing a channel, kept until the end of the
   * event-loop turn: the subscribing hub's own read, which follows in the same turn, takes it
   * instead of another round trip (a handshake's personal channel: one `chorusRead`, not two).
   * Read after the SUBSCRIBE, it is as recent as the hub needs: later publications arrive live.
   */
  private readonly subscribedPositions = new Map<string, StreamPosition>();
  private clearScheduled = false;
  /** The position reads of one event-loop turn as one `chorusPositions` call (when batching per turn). */
  private readonly positions: TurnBatch<string, StreamPosition> | undefined;

  /** @param batchPerTurn read the positions asked for in one turn with one `chorusPositions` */
  constructor(
    private readonly client: Client,
    private readonly keys: RedisKeys,
    batchPerTurn = false,
  ) {
    if (batchPerTurn) this.positions = new TurnBatch((channels) => this.readPositions(channels));
  }

  private async readPositions(channels: string[]): Promise<StreamPosition[]> {
    const args: Array<string | number> = [channels.length * 2];
    for (const channel of channels) args.push(this.keys.channel(channel, 'm'), this.keys.channel(channel, 'h'));
    args.push(STREAM_META_TTL_MS);
    for (let i = 0; i < channels.length; i++) args.push(newEpoch());
    const reply = await this.client.chorusPositions(...args);
    const out: StreamPosition[] = [];
    for (let i = 0; i + 2 < reply.length; i += 3) out.push({ epoch: String(reply[i]), offset: Number(reply[i + 1]) });
    return out;
  }

  /** A stream's position (created if it does not exist): READ with limit 0, or one item of a batch. */
  private async readPosition(channel: string): Promise<StreamPosition> {
    if (!this.positions) return (await this.read(channel, { limit: 0 })).position;
    try {
      return await this.positions.add(channel);
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** The position read for a channel the broker has just subscribed (see `subscribedPositions`). */
  async positionAfterSubscribe(channel: string): Promise<StreamPosition> {
    const position = await this.readPosition(channel);
    this.subscribedPositions.set(channel, position);
    if (!this.clearScheduled) {
      this.clearScheduled = true;
      setImmediate(() => {
        this.clearScheduled = false;
        this.subscribedPositions.clear();
      });
    }
    return position;
  }

  async read(channel: string, options: HistoryReadOptions): Promise<HistoryReadResult> {
    let reply: Array<string | number>;
    try {
      reply = await this.client.chorusRead(
        this.keys.channel(channel, 'm'),
        this.keys.channel(channel, 'h'),
        newEpoch(),
        STREAM_META_TTL_MS,
        options.since?.offset ?? 0,
        options.limit,
        options.reverse ? 1 : 0,
      );
    } catch (err) {
      throw unavailable(err);
    }
    const epoch = String(reply[0]);
    const top = Number(reply[1]);
    const firstOffset = Number(reply[2]);
    if (options.since && options.since.epoch !== epoch) {
      throw new ChorusError(ErrorCode.UNRECOVERABLE_POSITION, 'the position belongs to an earlier epoch of this channel; its history is gone');
    }
    const publications: Publication[] = [];
    for (let i = 3; i < reply.length; i++) {
      const stored = JSON.parse(String(reply[i])) as Envelope;
      publications.push(toPublication(stored));
    }
    if (options.reverse) publications.reverse();
    return { publications, position: { offset: top, epoch }, firstOffset };
  }

  async position(channel: string): Promise<StreamPosition> {
    const fresh = this.subscribedPositions.get(channel);
    if (fresh) {
      this.subscribedPositions.delete(channel);
      return fresh;
    }
    return this.readPosition(channel);
  }
}
