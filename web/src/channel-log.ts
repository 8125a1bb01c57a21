/**
 * The pattern every page uses to show a channel's past and then its live publications, with
 * no overlap and no gap and without de-duplicating anything itself:
 *
 *   1. read the newest retained publications with `history` (its ack also carries the stream's
 *      top position `{offset, epoch}`);
 *   2. subscribe with `since` = that top: the server first sends whatever was published in
 *      between, then live publications, each exactly once and in offset order. From then on
 *      the client library tracks the position: after a reconnect it resubscribes from the
 *      last delivered publication and fills any gap from history by itself.
 *
 * If the library reports `recovery-failed` (history was lost, e.g. a new epoch), the page's
 * copy is no longer exact: close the log and open it again.
 */
import type { ChorusClient, MessageData, StreamPosition, Subscription } from '../../src/client/index.js';

export interface ChannelLog<D> {
  /** The retained publications read in step 1, oldest first. */
  past: MessageData<D>[];
  /** The stream's position after `past`. */
  top: StreamPosition;
  /** Subscribed from `top`: its 'message' events continue `past`. */
  subscription: Subscription<D>;
}

/** Most publications one history request returns (the server's default maximum). */
export const HISTORY_PAGE = 100;

/**
 * Steps 1 and 2 above. `limit` publications at most are read (several history pages when it
 * is above `HISTORY_PAGE`). Listeners are added by `attach` before the subscribe is sent, so
 * no publication can be missed.
 */
export async function openChannelLog<D>(
  client: ChorusClient,
  channel: string,
  limit: number,
  attach: (subscription: Subscription<D>) => void,
): Promise<ChannelLog<D>> {
  // The top position first (limit 0), then forward pages from `top - limit`: offsets are
  // consecutive, so the pages neither overlap nor miss anything.
  const head = await client.history(channel, { limit: 0 });
  const top: StreamPosition = { offset: head.offset, epoch: head.epoch };
  const past: MessageData<D>[] = [];
  let since = Math.max(0, top.offset - limit);
  while (since < top.offset) {
    const page = await client.history(channel, {
      since: { offset: since, epoch: top.epoch },
      limit: Math.min(HISTORY_PAGE, top.offset - since),
    });
    const publications = page.publications.filter((p) => p.offset !== undefined && p.offset <= top.offset);
    if (publications.length === 0) break; // the rest expired meanwhile
    for (const p of publications) past.push(p as MessageData<D>);
    since = publications[publications.length - 1]?.offset ?? top.offset;
  }
  const subscription = client.subscribe<D>(channel, { since: top });
  attach(subscription);
  return { past, top, subscription };
}

/**
 * The `count` publications just before `before` (an offset the page already shows), oldest
 * first: for paging back on scroll-up. Empty when nothing older is retained.
 */
export async function readBefore<D>(
  client: ChorusClient,
  channel: string,
  before: StreamPosition,
  count: number,
): Promise<MessageData<D>[]> {
  const from = Math.max(0, before.offset - 1 - count);
  if (from >= before.offset - 1) return [];
  const page = await client.history(channel, {
    since: { offset: from, epoch: before.epoch },
    limit: Math.min(HISTORY_PAGE, before.offset - 1 - from),
  });
  return page.publications.filter((p) => p.offset !== undefined && p.offset < before.offset) as MessageData<D>[];
}
