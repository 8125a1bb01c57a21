import { ChorusError, ErrorCode } from '../protocol/index.js';
import type { ChannelRules } from './channels.js';
import type { Connection } from './connection.js';
import { toChorusError } from './errors.js';
import type { ResolvedNamespace, ServerOptions } from './options.js';

/** Channel actions a client asks for. */
export type ChannelAction = 'subscribe' | 'publish' | 'history' | 'presence';

/** Who may do what on a channel: the namespace rules, then the `authorize` option. */
export class Permissions {
  constructor(
    readonly rules: ChannelRules,
    private readonly authorizeOption: ServerOptions['authorize'],
  ) {}

  /** Run `options.authorize`; a false or a throw denies with PERMISSION_DENIED (a ChorusError keeps its code). */
  async authorize(connection: Connection, action: ChannelAction, channel: string): Promise<void> {
    const authorize = this.authorizeOption;
    if (!authorize) return;
    let allowed: boolean;
    try {
      allowed = await authorize({ action, channel, user: connection.user, info: connection.info, client: connection.id });
    } catch (err) {
      throw toChorusError(err) ?? new ChorusError(ErrorCode.PERMISSION_DENIED, `${action} on "${channel}" is not allowed`);
    }
    if (!allowed) throw new ChorusError(ErrorCode.PERMISSION_DENIED, `${action} on "${channel}" is not allowed`);
  }

  /** Subscribe permission, used by subscribe, history and presence (a subscriber may always read). */
  async checkRead(connection: Connection, channel: string, namespace: ResolvedNamespace, action: 'subscribe' | 'history' | 'presence'): Promise<void> {
    if (action !== 'subscribe' && connection.subscriptions.has(channel)) return;
    this.rules.checkSubscribe(channel, namespace, connection.user);
    await this.authorize(connection, action, channel);
  }

  /** Publish permission of a client. */
  async checkPublish(connection: Connection, channel: string, namespace: ResolvedNamespace): Promise<void> {
    this.rules.checkPublish(channel, namespace, connection.user, connection.subscriptions.has(channel));
    await this.authorize(connection, 'publish', channel);
  }
}
