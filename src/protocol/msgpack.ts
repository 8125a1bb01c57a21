/**
 * The MessagePack codec (subprotocol `chorus.v1.msgpack`, docs/PROTOCOL.md 2.3), apart from
 * codec.ts so that only its users load msgpackr (which runs in browsers and Node). Not
 * re-exported from the protocol index for the same reason.
 */
import { Packr, Unpackr } from 'msgpackr';
import { jsonToBinary } from './binary.js';
import { ChorusError, ErrorCode } from './codes.js';
import { JSON_CODEC, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, type Codec } from './codec.js';
import { toFrame } from './frame.js';

const PACK_OPTIONS = {
  // Plain MessagePack maps and types only: no msgpackr records, no extension types.
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  encodeUndefinedAsNil: true,
  mapsAsObjects: true,
  int64AsType: 'number' as const,
};

/**
 * The MessagePack codec: one frame is one MessagePack map with the JSON frame's keys; binary is
 * MessagePack `bin` anywhere in `data` (decoded as `Uint8Array`). Several frames in one message
 * are concatenated MessagePack values, nothing between them.
 */
export function createMsgpackCodec(): Codec {
  const packr = new Packr(PACK_OPTIONS);
  const unpackr = new Unpackr(PACK_OPTIONS);
  const values = (bytes: Uint8Array): unknown[] => {
    try {
      return unpackr.unpackMultiple(bytes) as unknown[];
    } catch {
      throw new ChorusError(ErrorCode.BAD_FRAME, 'message is not valid MessagePack');
    }
  };
  return {
    name: 'msgpack',
    subprotocol: MSGPACK_SUBPROTOCOL,
    binary: true,
    separator: new Uint8Array(0),
    encode: (frame) => packr.pack(jsonToBinary(frame)),
    decode(bytes) {
      const all = values(bytes);
      if (all.length !== 1) throw new ChorusError(ErrorCode.BAD_FRAME, 'expected exactly one MessagePack value');
      return toFrame(all[0]);
    },
    decodeMessage(message) {
      if (typeof message === 'string') return [new ChorusError(ErrorCode.BAD_FRAME, 'text messages are not accepted with chorus.v1.msgpack; send binary')];
      let all: unknown[];
      try {
        all = values(message);
      } catch (err) {
        return [err as ChorusError];
      }
      return all.map((value) => {
        try {
          return toFrame(value);
        } catch (err) {
          return err as ChorusError;
        }
      });
    },
  };
}

/** The server's MessagePack codec. */
export const MSGPACK_CODEC: Codec = createMsgpackCodec();

/** The codec a WebSocket subprotocol selects, or undefined for one Chorus does not speak. */
export function codecForSubprotocol(subprotocol: string): Codec | undefined {
  if (subprotocol === JSON_SUBPROTOCOL) return JSON_CODEC;
  if (subprotocol === MSGPACK_SUBPROTOCOL) return MSGPACK_CODEC;
  return undefined;
}
