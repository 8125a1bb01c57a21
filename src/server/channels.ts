import { ChorusError, ErrorCode, isValidChannelName } from '../protocol/index.js';
import type { ResolvedNamespace } from './options.js';

interface CompiledNamespace {
  namespace: ResolvedNamespace;
  /** Whether a channel name is in the namespace. */
  matches: (channel: string) => boolean;
  /** The fixed part before the first `*` (for personal channels). */
  prefix: string;
  /** Whether `matches` tests a regular expression (a pattern other than `literal` or `literal*`). */
  complex: boolean;
}

function compile(namespace: ResolvedNamespace): CompiledNamespace {
  const pattern = namespace.pattern;
  const star = pattern.indexOf('*');
  const prefix = star === -1 ? pattern : pattern.slice(0, star);
  // The common patterns (`chat:*`, `user:*`, an exact name) need no regular expression.
  if (star === -1) return { namespace, prefix, complex: false, matches: (channel) => channel === pattern };
  if (star === pattern.length - 1) return { namespace, prefix, complex: false, matches: (channel) => channel.startsWith(prefix) };
  const escaped = pattern.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
  const regex = new RegExp(`^${escaped.join('.*')}$`);
  return { namespace, prefix, complex: true, matches: (channel) => regex.test(channel) };
}

/**
 * Channel names whose namespace is remembered when some pattern needs a regular expression
 * (then the memory starts over). Small: every personal channel (one per connected user) would
 * otherwise keep an entry.
 */
const MAX_CACHED_CHANNELS = 1000;

/** Maps channel names to their namespace configuration (first matching pattern wins). */
export class ChannelRules {
  private readonly compiled: CompiledNamespace[];
  /** Only with a complex pattern: the simple ones are cheaper to test than to look up. */
  private readonly cache: Map<string, CompiledNamespace | null> | undefined;

  constructor(namespaces: ResolvedNamespace[]) {
    this.compiled = namespaces.map(compile);
    this.cache = this.compiled.some((c) => c.complex) ? new Map() : undefined;
  }

  private find(channel: string): CompiledNamespace | undefined {
    const cache = this.cache;
    if (!cache) return this.match(channel);
    const cached = cache.get(channel);
    if (cached !== undefined) return cached ?? undefined;
    const found = this.match(channel);
    if (cache.size >= MAX_CACHED_CHANNELS) cache.clear();
    cache.set(channel, found ?? null);
    return found;
  }

  private match(channel: string): CompiledNamespace | undefined {
    for (const c of this.compiled) if (c.matches(channel)) return c;
    return undefined;
  }

  /** The namespace of a channel; throws BAD_CHANNEL for an invalid name or no match. */
  resolve(channel: unknown): ResolvedNamespace {
    if (!isValidChannelName(channel)) {
      throw new ChorusError(ErrorCode.BAD_CHANNEL, 'channel must be 1-255 characters of A-Z a-z 0-9 _-:.@=/#!~+');
    }
    const found = this.find(channel);
    if (!found) throw new ChorusError(ErrorCode.BAD_CHANNEL, `no namespace is configured for channel "${channel}"`);
    return found.namespace;
  }

  /** For a personal namespace, the user a channel belongs to. */
  ownerOf(channel: string): string | undefined {
    const found = this.find(channel);
    if (!found || !found.namespace.personal) return undefined;
    return channel.slice(found.prefix.length);
  }

  /** Throws PERMISSION_DENIED unless `user` may subscribe to `channel` under its namespace rules. */
  checkSubscribe(channel: string, namespace: ResolvedNamespace, user: string): void {
    notDocument(channel, namespace);
    if (namespace.subscribe === 'none') {
      throw new ChorusError(ErrorCode.PERMISSION_DENIED, `subscribing to "${channel}" is not allowed`);
    }
    if (namespace.personal && this.ownerOf(channel) !== user) {
      throw new ChorusError(ErrorCode.PERMISSION_DENIED, `"${channel}" is another user's personal channel`);
    }
  }

  /** Throws PERMISSION_DENIED unless a client of `user` may publish to `channel`. */
  checkPublish(channel: string, namespace: ResolvedNamespace, user: string, subscribed: boolean): void {
    notDocument(channel, namespace);
    if (namespace.publish === 'none') {
      throw new ChorusError(ErrorCode.PERMISSION_DENIED, `clients may not publish to "${channel}"`);
    }
    if (namespace.publish === 'subscribers' && !subscribed) {
      throw new ChorusError(ErrorCode.PERMISSION_DENIED, `only subscribers may publish to "${channel}"`);
    }
    if (namespace.personal && this.ownerOf(channel) !== user) {
      throw new ChorusError(ErrorCode.PERMISSION_DENIED, `"${channel}" is another user's personal channel`);
    }
  }
}

/** Document channels carry Yjs updates: they are opened as documents, never subscribed or published to directly. */
export function notDocument(channel: string, namespace: ResolvedNamespace): void {
  if (namespace.document) {
    throw new ChorusError(ErrorCode.NOT_AVAILABLE, `"${channel}" is a document: open it at /yjs/ or with a document frame`);
  }
}
