import type { ControlCommand, Publication } from '../types.js';

/**
 * What travels over Redis pub/sub (and, for publications, what history stores): one JSON
 * object whose `t` says what it is. The publish script writes publications itself (see
 * scripts.ts), so the field names are part of the stored format.
 */
export interface Envelope {
  t: 'p' | 'j' | 'l' | 'c';
  /** publication: offset, epoch, history flag, excluded client, body */
  o?: number;
  e?: string;
  h?: 0 | 1;
  x?: string;
  p?: PublicationBody;
  /** join/leave: channel, user, info */
  c?: string;
  u?: string;
  i?: Record<string, unknown>;
  /** control */
  k?: ControlCommand;
}

export interface PublicationBody {
  channel: string;
  data: unknown;
  time: number;
  publisher?: Publication['publisher'];
  ephemeral?: boolean;
  key?: string;
}

export function toPublication(envelope: Envelope): Publication {
  const body = envelope.p!;
  const publication: Publication = { channel: body.channel, data: body.data, time: body.time };
  if (envelope.o !== undefined) {
    publication.offset = envelope.o;
    publication.epoch = envelope.e!;
  }
  if (body.publisher) publication.publisher = body.publisher;
  if (body.ephemeral) publication.ephemeral = true;
  if (typeof body.key === 'string') publication.key = body.key;
  return publication;
}
