/**
 * The standalone server's namespaces when the config file sets none: the library's defaults
 * (`user:*` personal, `chat:*` rooms with history and presence, `doc:*` documents for the
 * editor page) plus what its other pages need.
 */
import { DEFAULT_NAMESPACES, type NamespaceOptions } from '../server/index.js';

/** History kept for the room list and read receipts, in ms (24 h). */
const DAY_MS = 86_400_000;

export const STANDALONE_NAMESPACES: NamespaceOptions[] = [
  ...DEFAULT_NAMESPACES,
  // The chat page's room list: one publication per room (web/src/chat/chorus.ts).
  { pattern: 'rooms:*', historySize: 200, historyTtlMs: DAY_MS },
  // Read receipts per room: a member's newest publication is their last-read position.
  { pattern: 'receipts:*', historySize: 100, historyTtlMs: DAY_MS },
  // The live dashboard: the server's own figures, one publication per node per second
  // (src/cli/dashboard-feed.ts); 600 kept = 2 minutes of 5 nodes, replayed to new viewers.
  // Each publication is keyed by its node: a slow viewer is not cut off, it skips to each
  // node's newest figures (and is told which offsets it skipped).
  { pattern: 'dash:*', publish: 'none', historySize: 600, historyTtlMs: 600_000, backpressure: 'latest-per-key' },
];
