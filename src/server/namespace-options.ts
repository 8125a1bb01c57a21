/**
 * Channel namespaces: what the channels whose names match a pattern allow (subscribe, publish,
 * personal, history, presence, ephemeral, backpressure, documents), their defaults, and the
 * check that turns a namespace's options into a resolved one (errors name the bad key).
 */
import { bool, fail, oneOf, positiveInt, positiveNumber } from './option-checks.js';

/** Who may subscribe to channels of a namespace. */
export type SubscribePolicy = 'any' | 'none';
/** Who may publish from a client: any user, only current subscribers, or nobody (server/API only). */
export type PublishPolicy = 'any' | 'subscribers' | 'none';
/**
 * What happens to a subscriber whose send queue is past `limits.maxQueuedBytes` when a
 * publication of the namespace arrives (docs/PROTOCOL.md, "Backpressure"):
 * - `'disconnect'`: it is disconnected as a slow consumer (4003);
 * - `'latest-per-key'`: its queued publications of the namespace are compacted to the newest per
 *   `key` (a publication without a key is never dropped) and it is told what it skipped;
 * - `'drop-oldest'`: its oldest queued publications of the namespace are dropped until the new
 *   one fits (or the new one itself, when none is queued) and it is told what it skipped.
 */
export type BackpressurePolicy = 'disconnect' | 'latest-per-key' | 'drop-oldest';

/** Per-namespace channel configuration. The first namespace whose pattern matches a channel name applies. */
export interface NamespaceOptions {
  /** Channel-name pattern; `*` matches any run of characters (e.g. `chat:*`, `dash:cpu`). Required. */
  pattern: string;
  /** Who may subscribe. Default `'any'` (every authenticated user). */
  subscribe?: SubscribePolicy;
  /** Who may publish from a client. Default `'any'`. The HTTP API and server code may always publish. */
  publish?: PublishPolicy;
  /**
   * Personal channels: only the user whose id equals the part of the name after the pattern's
   * fixed prefix (e.g. `ada` in `user:ada` for `user:*`) may subscribe. Default `false`.
   */
  personal?: boolean;
  /** Publications kept per channel for history and recovery; 0 disables history. Default 0. */
  historySize?: number;
  /** How long a channel's history is kept after its last publication, in ms. Default 300000 (5 min). */
  historyTtlMs?: number;
  /** Recovery fails (`recovered: false`) when more than this many publications were missed. Default 1000. */
  recoveryMaxMissed?: number;
  /** Track presence (who is subscribed). Default `false`. */
  presence?: boolean;
  /** Send `join`/`leave` events (needs `presence`). Default: same as `presence`. */
  joinLeave?: boolean;
  /**
   * Above this many members, `join`/`leave` events are not sent for the channel (they are
   * quadratic in channel size); presence lists and counts stay exact. Default 1000 members.
   */
  joinLeaveMaxMembers?: number;
  /** Allow ephemeral publications (typing, cursors). Default `true`. */
  ephemeral?: boolean;
  /** Ephemeral publications allowed per user per channel, per second (burst equal). Default 10. */
  ephemeralPerSecond?: number;
  /**
   * Shared Yjs documents (`/yjs/<name>`, `doc.*` frames; never `subscribe`/`publish`); `publish: 'none'` makes
   * them read-only. History then defaults to 1000 updates / 3600000 ms (nodes catch up from it). Default `false`.
   */
  document?: boolean;
  /** What a slow subscriber's queue does (see `BackpressurePolicy`). Default `'disconnect'`. */
  backpressure?: BackpressurePolicy;
}

export type ResolvedNamespace = Required<NamespaceOptions>;

/** Namespaces used when none are configured. */
export const DEFAULT_NAMESPACES: NamespaceOptions[] = [
  { pattern: 'user:*', personal: true, publish: 'none' },
  { pattern: 'chat:*', historySize: 100, historyTtlMs: 300000, presence: true, joinLeave: true },
  { pattern: 'doc:*', document: true },
];

const NAMESPACE_DEFAULTS: Omit<ResolvedNamespace, 'pattern' | 'joinLeave'> = {
  subscribe: 'any',
  publish: 'any',
  personal: false,
  historySize: 0,
  historyTtlMs: 300000,
  recoveryMaxMissed: 1000,
  presence: false,
  joinLeaveMaxMembers: 1000,
  ephemeral: true,
  ephemeralPerSecond: 10,
  document: false,
  backpressure: 'disconnect',
};

const NAMESPACE_KEYS = new Set<string>([
  'pattern',
  'joinLeave',
  ...Object.keys(NAMESPACE_DEFAULTS),
]);

export function resolveNamespace(ns: NamespaceOptions, key: string): ResolvedNamespace {
  if (typeof ns !== 'object' || ns === null) fail(key, 'must be an object');
  for (const k of Object.keys(ns)) {
    if (!NAMESPACE_KEYS.has(k)) fail(`${key}.${k}`, 'unknown key');
  }
  if (typeof ns.pattern !== 'string' || ns.pattern.length === 0 || ns.pattern.length > 255) {
    fail(`${key}.pattern`, 'must be a non-empty string of at most 255 characters');
  }
  const presence = ns.presence === undefined ? NAMESPACE_DEFAULTS.presence : bool(`${key}.presence`, ns.presence);
  const joinLeave = ns.joinLeave === undefined ? presence : bool(`${key}.joinLeave`, ns.joinLeave);
  if (joinLeave && !presence) fail(`${key}.joinLeave`, 'needs presence: true');
  const document = ns.document === undefined ? NAMESPACE_DEFAULTS.document : bool(`${key}.document`, ns.document);
  const history = document ? { historySize: 1000, historyTtlMs: 3600000 } : NAMESPACE_DEFAULTS; // updates between snapshots
  const resolved: ResolvedNamespace = {
    pattern: ns.pattern,
    subscribe:
      ns.subscribe === undefined ? NAMESPACE_DEFAULTS.subscribe : oneOf(`${key}.subscribe`, ns.subscribe, ['any', 'none'] as const),
    publish:
      ns.publish === undefined
        ? NAMESPACE_DEFAULTS.publish
        : oneOf(`${key}.publish`, ns.publish, ['any', 'subscribers', 'none'] as const),
    personal: ns.personal === undefined ? NAMESPACE_DEFAULTS.personal : bool(`${key}.personal`, ns.personal),
    historySize:
      ns.historySize === undefined ? history.historySize : positiveInt(`${key}.historySize`, ns.historySize, true),
    historyTtlMs:
      ns.historyTtlMs === undefined ? history.historyTtlMs : positiveInt(`${key}.historyTtlMs`, ns.historyTtlMs),
    recoveryMaxMissed:
      ns.recoveryMaxMissed === undefined
        ? NAMESPACE_DEFAULTS.recoveryMaxMissed
        : positiveInt(`${key}.recoveryMaxMissed`, ns.recoveryMaxMissed, true),
    presence,
    joinLeave,
    joinLeaveMaxMembers:
      ns.joinLeaveMaxMembers === undefined
        ? NAMESPACE_DEFAULTS.joinLeaveMaxMembers
        : positiveInt(`${key}.joinLeaveMaxMembers`, ns.joinLeaveMaxMembers, true),
    ephemeral: ns.ephemeral === undefined ? NAMESPACE_DEFAULTS.ephemeral : bool(`${key}.ephemeral`, ns.ephemeral),
    ephemeralPerSecond:
      ns.ephemeralPerSecond === undefined
        ? NAMESPACE_DEFAULTS.ephemeralPerSecond
        : positiveNumber(`${key}.ephemeralPerSecond`, ns.ephemeralPerSecond),
    document,
    backpressure:
      ns.backpressure === undefined
        ? NAMESPACE_DEFAULTS.backpressure
        : oneOf(`${key}.backpressure`, ns.backpressure, ['disconnect', 'latest-per-key', 'drop-oldest'] as const),
  };
  if (resolved.personal && !resolved.pattern.endsWith('*')) {
    fail(`${key}.personal`, 'needs a pattern ending in * (e.g. "user:*")');
  }
  return resolved;
}
