import { ChorusError } from '../protocol/index.js';

const CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;

/** Turn anything thrown by a handler into a protocol error; internals never reach the client. */
export function toChorusError(err: unknown): ChorusError | undefined {
  if (err instanceof ChorusError) return err;
  if (err instanceof Error) {
    const e = err as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
    // A coded application error (not a Node system or internal error) is shown as it is.
    if (typeof e.code === 'string' && CODE_PATTERN.test(e.code) && !e.code.startsWith('ERR_') && e.errno === undefined && e.syscall === undefined) {
      return new ChorusError(e.code, e.message);
    }
  }
  return undefined;
}
