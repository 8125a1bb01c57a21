import { ChorusError, ErrorCode, type StreamPosition } from '../../protocol/index.js';
import { newEpoch, STREAM_META_TTL_MS } from '../memory/streams.js';
import type { HistoryReadOptions, HistoryReadResult, HistoryStore, Publication } from '../types.js';
import { unavailable, type Client, type RedisKeys } from './clients.js';
import { toPublication, type Envelope } from './envelope.js';

/** Channel streams in Redis: a meta hash (epoch, top offset) and a bounded history list per channel. */
export class RedisHistoryStore implements HistoryStore {
  constructor(
    private readonly client: Client,
    private readonly keys: RedisKeys,
  ) {}

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
    const read = await this.read(channel, { limit: 0 });
    return read.position;
  }
}
