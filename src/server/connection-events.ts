import type { Logger } from 'pino';
import { Disconnect } from '../protocol/index.js';
import type { Connection } from './connection.js';
import type { LimitReporter } from './limit-reporter.js';
import type { TransportFault, TransportListener } from './transport.js';

/** What a connection's transport events go to: one object per server, shared by every connection. */
export interface ConnectionEventsHost {
  message(connection: Connection, data: Buffer, binary: boolean): void;
  alive(connection: Connection): void;
  error(connection: Connection, error: Error, fault?: TransportFault): void;
  close(connection: Connection, code: number, reason: string): void;
}

/**
 * One connection's transport listener: a small object whose methods live on the prototype and
 * forward to the server's shared host, instead of four closures (and their context) per
 * connection, which an idle connection would carry for its whole life.
 */
export class ConnectionEvents implements TransportListener {
  constructor(
    private readonly host: ConnectionEventsHost,
    private readonly connection: Connection,
  ) {}

  message(data: Buffer, binary: boolean): void {
    this.host.message(this.connection, data, binary);
  }

  alive(): void {
    this.host.alive(this.connection);
  }

  error(error: Error, fault?: TransportFault): void {
    this.host.error(this.connection, error, fault);
  }

  close(code: number, reason: string): void {
    this.host.close(this.connection, code, reason);
  }
}

/** What the server's shared host needs. */
export interface ConnectionEventsParts {
  now(): number;
  readonly logger: Logger;
  readonly reporter: Pick<LimitReporter, 'limitHit'>;
  /** `limits.maxMessageBytes`, for the log of a message too big. */
  readonly maxMessageBytes: number;
  onMessage(connection: Connection, data: Buffer, binary: boolean): void;
  onClose(connection: Connection, code: number, reason: string): void;
}

/** The server's shared host: frames to the frame handler, pongs as signs of life, faults recorded for the close. */
export function serverConnectionEvents(parts: ConnectionEventsParts): ConnectionEventsHost {
  return {
    message: parts.onMessage,
    alive: (connection) => {
      connection.lastSeen = parts.now();
    },
    error: (connection, err, fault) => {
      if (fault === 'message_too_big') {
        parts.reporter.limitHit('message_size', connection, { maxMessageBytes: parts.maxMessageBytes });
        connection.recordClose(Disconnect.messageTooBig);
      } else if (fault === 'invalid_payload') {
        connection.recordClose(Disconnect.invalidPayload);
      }
      parts.logger.debug({ client: connection.id, err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error');
    },
    close: parts.onClose,
  };
}
