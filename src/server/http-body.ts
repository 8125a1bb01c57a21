/**
 * What every HTTP endpoint of Chorus shares (the HTTP API, HTTP streaming, the admin console):
 * the status each error code is answered with, and reading a request body under a size limit.
 */
import type { IncomingMessage } from 'node:http';
import { ChorusError, ErrorCode } from '../protocol/index.js';

const STATUS: Readonly<Record<string, number>> = {
  [ErrorCode.BAD_REQUEST]: 400,
  [ErrorCode.BAD_CHANNEL]: 400,
  [ErrorCode.UNRECOVERABLE_POSITION]: 400,
  [ErrorCode.NOT_AVAILABLE]: 400,
  [ErrorCode.UNAUTHORIZED]: 401,
  [ErrorCode.PERMISSION_DENIED]: 403,
  [ErrorCode.ORIGIN_NOT_ALLOWED]: 403,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.TOO_LARGE]: 413,
  [ErrorCode.RATE_LIMITED]: 429,
  [ErrorCode.UNAVAILABLE]: 503,
  [ErrorCode.SHUTTING_DOWN]: 503,
  // Not 503: a publish that may have been applied must not look like "not applied, retry".
  [ErrorCode.OUTCOME_UNKNOWN]: 504,
};

/** The HTTP status for an error code (docs/PROTOCOL.md, HTTP API); 500 for any other. */
export function httpStatus(code: string | undefined): number {
  return (code !== undefined ? STATUS[code] : undefined) ?? 500;
}

/**
 * The request's body, at most `maxBytes`: a larger one rejects with TOO_LARGE (`<what> larger
 * than N bytes`) and the rest is drained unread, so the response can still be written.
 */
export function readBody(req: IncomingMessage, maxBytes: number, what = 'body'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > maxBytes) {
        failed = true;
        chunks.length = 0;
        reject(new ChorusError(ErrorCode.TOO_LARGE, `${what} larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
      failed = true;
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
  });
}
