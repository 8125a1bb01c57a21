/**
 * The SSE event id: the stream's position on every channel it carries, so that the
 * `Last-Event-ID` a reconnecting EventSource sends is enough to resume all of them.
 *
 *   v1;<list>;<index>:<offset>:<epoch>;<index>:<offset>:<epoch>...
 *
 * `<list>` is a hash (FNV-1a 32-bit, base 36) of the stream's channel list in request order,
 * joined with newlines: an id from a stream with other channels is not applied. `<index>` is the
 * channel's position in that list (base 10), `<offset>` is base 36, `<epoch>` is
 * percent-encoded (encodeURIComponent). Channels without a known position are left out.
 */
import type { StreamPosition } from '../../protocol/index.js';

/** Longest Last-Event-ID read, in characters; a longer one is ignored (every channel then starts fresh with `recovered: false`). */
export const MAX_EVENT_ID_LENGTH = 8192;

/** FNV-1a 32-bit hash of the channel list, base 36. */
export function channelListHash(channels: readonly string[]): string {
  let hash = 0x811c9dc5;
  const text = channels.join('\n');
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(36);
}

/** Encode the positions of a stream's channels as an event id. */
export function encodeEventId(listHash: string, channels: readonly string[], positions: ReadonlyMap<string, StreamPosition>): string {
  let id = `v1;${listHash}`;
  for (let i = 0; i < channels.length; i++) {
    const position = positions.get(channels[i]!);
    if (position) id += `;${i}:${position.offset.toString(36)}:${encodeURIComponent(position.epoch)}`;
  }
  return id;
}

/**
 * Decode an event id for a stream over `channels`: the positions it holds, or undefined when it
 * is not one of ours (malformed, too long, or from a stream with another channel list).
 */
export function decodeEventId(id: string, channels: readonly string[]): Map<string, StreamPosition> | undefined {
  if (id.length > MAX_EVENT_ID_LENGTH) return undefined;
  const parts = id.split(';');
  if (parts[0] !== 'v1' || parts[1] !== channelListHash(channels)) return undefined;
  const positions = new Map<string, StreamPosition>();
  for (const part of parts.slice(2)) {
    const match = /^(\d{1,4}):([0-9a-z]{1,11}):([^;:]{1,512})$/.exec(part);
    if (!match) return undefined;
    const channel = channels[Number(match[1])];
    const offset = parseInt(match[2]!, 36);
    let epoch: string;
    try {
      epoch = decodeURIComponent(match[3]!);
    } catch {
      return undefined;
    }
    if (channel === undefined || !Number.isSafeInteger(offset)) return undefined;
    positions.set(channel, { offset, epoch });
  }
  return positions;
}
