/**
 * Codecs: how frames become the bytes of one transport message and back. JSON is the default
 * (text messages, frames joined with newlines); MessagePack is chosen with the WebSocket
 * subprotocol `chorus.v1.msgpack` (binary messages, frames concatenated; msgpack.ts, kept apart
 * so that JSON-only users, e.g. an unbundled browser page, never load msgpackr). Isomorphic.
 */
import { binaryToJson, jsonToBinary } from './binary.js';
import { ChorusError, ErrorCode } from './codes.js';
import { FRAME_SEPARATOR, parseFrame, splitFrames, type Frame } from './frame.js';

/** WebSocket subprotocol of the JSON codec. */
export const JSON_SUBPROTOCOL = 'chorus.v1.json';
/** WebSocket subprotocol of the MessagePack codec. */
export const MSGPACK_SUBPROTOCOL = 'chorus.v1.msgpack';

export type CodecName = 'json' | 'msgpack';

/** Frame <-> bytes for one wire format. */
export interface Codec {
  readonly name: CodecName;
  /** The WebSocket subprotocol that selects it. */
  readonly subprotocol: string;
  /** Whether its messages are binary WebSocket messages (else text). */
  readonly binary: boolean;
  /** Bytes between two frames in one message: `\n` for JSON, none for MessagePack. */
  readonly separator: Uint8Array;
  /** Encode one frame. `Uint8Array` anywhere in `data` is binary (see binary.ts for JSON). */
  encode(frame: Frame): Uint8Array;
  /** A text codec's encoding of one frame as a string (the text `encode` gives the UTF-8 of). */
  encodeText?(frame: Frame): string;
  /** Decode one frame; throws ChorusError(BAD_FRAME). */
  decode(bytes: Uint8Array): Frame;
  /**
   * Decode one whole message (several frames when batched). Each entry is a frame or the
   * error of that part; a MessagePack message that does not decode is one error.
   */
  decodeMessage(message: Uint8Array | string): Array<Frame | ChorusError>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Node's Buffer where there is one (no import: this module also runs in browsers). */
const NodeBuffer = (globalThis as { Buffer?: { from(text: string, encoding: 'utf8'): Uint8Array } }).Buffer;

/** A frame as JSON text, binary as `{"$bin": base64}`. */
const encodeText = (frame: Frame): string => JSON.stringify(binaryToJson(frame));

/** UTF-8 bytes of a text: `Buffer.from` on Node (about 3× faster than TextEncoder for frame-sized texts), else TextEncoder. */
const utf8: (text: string) => Uint8Array = NodeBuffer ? (text) => NodeBuffer.from(text, 'utf8') : (text) => encoder.encode(text);

export interface JsonCodecOptions {
  /**
   * Turn `{"$bin": base64}` in decoded frames into `Uint8Array` (the client does). Default
   * false: the server keeps binary in the JSON form, which is how publications are stored.
   */
  decodeBinary?: boolean;
}

/** The JSON codec: one frame is one JSON text; binary travels as `{"$bin": base64}`. */
export function createJsonCodec(options: JsonCodecOptions = {}): Codec {
  const decodeBinary = options.decodeBinary === true;
  const finish = (frame: Frame, text: string): Frame => {
    if (decodeBinary && 'data' in frame && text.includes('"$bin"')) frame.data = jsonToBinary(frame.data);
    return frame;
  };
  return {
    name: 'json',
    subprotocol: JSON_SUBPROTOCOL,
    binary: false,
    separator: encoder.encode(FRAME_SEPARATOR),
    encode: (frame) => utf8(encodeText(frame)),
    encodeText,
    decode(bytes) {
      const text = textOf(bytes);
      return finish(parseFrame(text), text);
    },
    decodeMessage(message) {
      let text: string;
      try {
        text = typeof message === 'string' ? message : textOf(message);
      } catch (err) {
        return [err as ChorusError];
      }
      return splitFrames(text).map((part) => {
        try {
          return finish(parseFrame(part), part);
        } catch (err) {
          return err as ChorusError;
        }
      });
    },
  };
}

function textOf(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new ChorusError(ErrorCode.BAD_FRAME, 'frame is not valid UTF-8');
  }
}

/** The server's JSON codec (keeps binary in its JSON form). */
export const JSON_CODEC: Codec = createJsonCodec();

/** The subprotocols Chorus speaks. */
export const SUBPROTOCOLS: readonly string[] = [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL];

/**
 * The subprotocol to answer to a client's offer (in the client's order of preference): the
 * first one Chorus speaks, or undefined (then no subprotocol is answered and JSON is spoken).
 */
export function chooseSubprotocol(offered: Iterable<string>): string | undefined {
  for (const protocol of offered) if (SUBPROTOCOLS.includes(protocol)) return protocol;
  return undefined;
}
