/** Small zod building blocks shared by the config schemas, each with the message style of `config.ts`. */
import { z } from 'zod';

/** An error function: `<problem>, got <the value as JSON>`. Never use it for secret keys. */
export function got(problem: string): (issue: { input?: unknown }) => string {
  return (issue) => `${problem}, got ${JSON.stringify(issue.input)}`;
}

export const positiveInt = z.int({ error: got('must be a positive integer') }).min(1, { error: got('must be a positive integer') });

export const trueOrFalse = z.boolean({ error: got('must be true or false') });

/** A non-empty string; the message does not echo the value (it may be a secret). */
export const nonEmptyString = z.string({ error: 'must be a non-empty string' }).min(1, { error: 'must be a non-empty string' });

export const hostPort = z.strictObject(
  {
    host: nonEmptyString,
    port: z
      .int({ error: got('must be an integer from 0 to 65535') })
      .min(0, { error: got('must be an integer from 0 to 65535') })
      .max(65535, { error: got('must be an integer from 0 to 65535') }),
  },
  { error: 'must be {"host","port"}' },
);

/** An `http://` or `https://` URL. */
export const httpUrl = z
  .string({ error: 'must be an http:// or https:// URL' })
  .refine((v) => URL.canParse(v) && ['http:', 'https:'].includes(new URL(v).protocol), { error: 'must be an http:// or https:// URL' });
