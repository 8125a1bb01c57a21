import type { Logger } from 'pino';
import type { ControlCommand } from '../engines/types.js';
import type { Connection } from './connection.js';
import type { ReadonlyMembers } from './small-set.js';

/** What a control command acts through. */
export interface ControlTarget {
  /** Local connections by user. */
  readonly users: ReadonlyMap<string, ReadonlyMembers<Connection>>;
  readonly logger: Logger;
  subscribe(connection: Connection, channel: string): Promise<unknown>;
  unsubscribe(connection: Connection, channel: string, reason: string): Promise<unknown>;
}

/** Apply a user command (from any node, through the broker) to the user's connections on this node. */
export function applyControl(command: Exclude<ControlCommand, { type: 'reply' }>, target: ControlTarget): void {
  const connections = target.users.get(command.user);
  if (!connections) return;
  const failed = (what: string, connection: Connection, channel: string) => (err: unknown) =>
    target.logger.warn({ err: { message: (err as Error).message }, client: connection.id, channel }, what);
  for (const connection of [...connections]) {
    if (command.type === 'disconnect') {
      connection.close({ code: command.code, reason: command.reason });
    } else if (command.type === 'subscribe') {
      void target.subscribe(connection, command.channel).catch(failed('server-side subscribe failed', connection, command.channel));
    } else {
      void target.unsubscribe(connection, command.channel, 'unsubscribed by the server').catch(failed('server-side unsubscribe failed', connection, command.channel));
    }
  }
}
