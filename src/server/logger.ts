import { pino, type Logger } from 'pino';

/** Paths pino must never print, whatever a caller passes in. */
export const REDACT_PATHS = [
  'token',
  'apiKey',
  'secret',
  'authorization',
  '*.token',
  '*.apiKey',
  '*.secret',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'auth.secret',
];

export function createLogger(options: Logger | { level?: string } | undefined): Logger {
  if (options && typeof (options as Logger).child === 'function') return options as Logger;
  const level = (options as { level?: string } | undefined)?.level ?? 'info';
  return pino({ level, base: { service: 'chorus' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } });
}

/** A URL without its query string (which may carry `?token=`): safe to log. */
export function safePath(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
