import { ChorusError, ErrorCode, type StreamPosition } from '../protocol/index.js';
import type { HistoryStore, Publication } from '../engines/types.js';
import type { ChannelRules } from './channels.js';
import { messageData } from './hub.js';

export interface HistoryRequest {
  since?: StreamPosition;
  limit?: number;
  reverse?: boolean;
}

/**
 * A channel's history for the `history` request and `GET /api/history/`: the namespace must keep
 * history, the limit is clamped to `maxHistoryLimit`, one page is one frame within half the send queue.
 */
export async function readHistory(
  store: HistoryStore,
  rules: ChannelRules,
  limits: { readonly maxHistoryLimit: number; readonly maxQueuedBytes: number },
  channel: string,
  options: HistoryRequest,
) {
  const namespace = rules.resolve(channel);
  if (namespace.historySize === 0) throw new ChorusError(ErrorCode.NOT_AVAILABLE, `history is not enabled for "${channel}"`);
  const max = limits.maxHistoryLimit;
  const limit = Math.min(max, Math.max(0, options.limit ?? max));
  const read = await store.read(channel, {
    limit,
    ...(options.since ? { since: options.since } : {}),
    ...(options.reverse ? { reverse: true } : {}),
  });
  return historyPage(channel, read, limits.maxQueuedBytes / 2);
}

/**
 * One `history` reply: the publications read, cut so that the page (one frame) stays within
 * `maxBytes` (and well under the 1 MiB common WebSocket clients accept by default); at least one
 * publication is always included. The client pages on from the last offset.
 */
export function historyPage(channel: string, read: { publications: Publication[]; position: StreamPosition }, maxBytes: number) {
  const publications = [];
  let bytes = 0;
  for (const publication of read.publications) {
    const data = messageData(publication);
    bytes += Buffer.byteLength(JSON.stringify(data));
    if (publications.length > 0 && bytes > maxBytes) break;
    publications.push(data);
  }
  return { channel, publications, offset: read.position.offset, epoch: read.position.epoch };
}
