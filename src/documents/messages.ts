import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { DocumentCloseCode, DocumentError, DocumentErrorCode } from './codes.js';

/**
 * The y-websocket binary protocol (as `WebsocketProvider` speaks it): every message starts with
 * a varUint type; sync messages carry a varUint sub-type and a varUint8Array payload.
 */
export const MessageType = { SYNC: 0, AWARENESS: 1, AUTH: 2, QUERY_AWARENESS: 3 } as const;
export const SyncType = { STEP1: 0, STEP2: 1, UPDATE: 2 } as const;

export type YMessage =
  | { type: 'step1'; stateVector: Uint8Array }
  | { type: 'step2' | 'update'; update: Uint8Array }
  | { type: 'awareness'; update: Uint8Array }
  | { type: 'query-awareness' }
  | { type: 'auth' };

function bad(message: string): DocumentError {
  return new DocumentError(DocumentErrorCode.BAD_UPDATE, DocumentCloseCode.BAD_MESSAGE, message);
}

/** Decode one message; throws DocumentError(BAD_UPDATE, 4400) for anything else. */
export function decodeMessage(bytes: Uint8Array): YMessage {
  try {
    const decoder = decoding.createDecoder(bytes);
    const type = decoding.readVarUint(decoder);
    switch (type) {
      case MessageType.SYNC: {
        const sub = decoding.readVarUint(decoder);
        const payload = decoding.readVarUint8Array(decoder);
        if (sub === SyncType.STEP1) return { type: 'step1', stateVector: payload };
        if (sub === SyncType.STEP2) return { type: 'step2', update: payload };
        if (sub === SyncType.UPDATE) return { type: 'update', update: payload };
        throw bad(`unknown sync message type ${sub}`);
      }
      case MessageType.AWARENESS:
        return { type: 'awareness', update: decoding.readVarUint8Array(decoder) };
      case MessageType.QUERY_AWARENESS:
        return { type: 'query-awareness' };
      case MessageType.AUTH:
        return { type: 'auth' };
      default:
        throw bad(`unknown message type ${type}`);
    }
  } catch (err) {
    if (err instanceof DocumentError) throw err;
    throw bad('truncated or malformed message');
  }
}

function sync(sub: number, payload: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MessageType.SYNC);
  encoding.writeVarUint(encoder, sub);
  encoding.writeVarUint8Array(encoder, payload);
  return encoding.toUint8Array(encoder);
}

export const encodeStep1 = (stateVector: Uint8Array): Uint8Array => sync(SyncType.STEP1, stateVector);
export const encodeStep2 = (update: Uint8Array): Uint8Array => sync(SyncType.STEP2, update);
export const encodeUpdate = (update: Uint8Array): Uint8Array => sync(SyncType.UPDATE, update);

export function encodeAwareness(update: Uint8Array): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MessageType.AWARENESS);
  encoding.writeVarUint8Array(encoder, update);
  return encoding.toUint8Array(encoder);
}

/** The y-protocols auth message "permission denied" (the provider logs the reason). */
export function encodePermissionDenied(reason: string): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MessageType.AUTH);
  encoding.writeVarUint(encoder, 0);
  encoding.writeVarString(encoder, reason);
  return encoding.toUint8Array(encoder);
}

/** An update that changes nothing (no structs, empty delete set), as a read-only client's step 2 usually is. */
export function isEmptyUpdate(update: Uint8Array): boolean {
  return update.length === 0 || (update.length === 2 && update[0] === 0 && update[1] === 0);
}
