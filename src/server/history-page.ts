import type { StreamPosition } from '../protocol/index.js';
import type { Publication } from '../engines/types.js';
import { messageData } from './hub.js';

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
