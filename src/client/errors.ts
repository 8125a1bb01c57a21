import { ChorusError, ErrorCode } from '../protocol/index.js';

/**
 * The error every client promise rejects with. `code` is the server's error code (see
 * docs/PROTOCOL.md section 9) or one produced locally: `TIMEOUT` (no reply within
 * `timeoutMs`), `DISCONNECTED` (the connection closed, or the client is closed) and
 * `QUEUE_FULL` (the offline queue is full, or a queued publish waited too long). It is a
 * `ChorusError` (the protocol's one error class), so `code` and `details` come from there.
 */
export class ChorusClientError extends ChorusError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.name = 'ChorusClientError';
  }
}

/** Build a ChorusClientError from an `error` frame's data (tolerates malformed data). */
export function errorFromReply(data: unknown): ChorusClientError {
  if (typeof data !== 'object' || data === null) {
    return new ChorusClientError(ErrorCode.INTERNAL, 'malformed error reply');
  }
  const { code, message, ...details } = data as Record<string, unknown>;
  return new ChorusClientError(
    typeof code === 'string' ? code : ErrorCode.INTERNAL,
    typeof message === 'string' ? message : 'request failed',
    Object.keys(details).length > 0 ? details : undefined,
  );
}

export function timeoutError(what: string, ms: number): ChorusClientError {
  return new ChorusClientError(ErrorCode.TIMEOUT, `${what}: no reply within ${ms} ms`);
}

export function disconnectedError(reason = 'the connection closed'): ChorusClientError {
  return new ChorusClientError(ErrorCode.DISCONNECTED, reason);
}
