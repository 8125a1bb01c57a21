/**
 * The client's side of a codec: what it offers in the WebSocket handshake, how a frame goes out
 * (JSON as a text message, MessagePack as a binary one) and how a received message becomes
 * frames. Binary payloads are `Uint8Array` with either codec: over JSON they travel as
 * `{"$bin": base64}` (docs/PROTOCOL.md 2.2) and are turned back into bytes here.
 */
import {
  ChorusError,
  ErrorCode,
  MSGPACK_SUBPROTOCOL,
  binaryToJson,
  createJsonCodec,
  type Codec,
  type CodecName,
  type Frame,
} from '../protocol/index.js';

export class Wire {
  private constructor(
    readonly name: CodecName,
    private readonly codec: Codec,
  ) {}

  /** The JSON wire (binary markers become `Uint8Array`). */
  static json(): Wire {
    return new Wire('json', createJsonCodec({ decodeBinary: true }));
  }

  /** The MessagePack wire; msgpackr is loaded on first use, so JSON-only pages never fetch it. */
  static async msgpack(): Promise<Wire> {
    const { createMsgpackCodec } = await import('../protocol/msgpack.js');
    return new Wire('msgpack', createMsgpackCodec());
  }

  /** Subprotocols to offer: none for JSON (the server's default), `chorus.v1.msgpack` for MessagePack. */
  get protocols(): string[] | undefined {
    return this.name === 'msgpack' ? [MSGPACK_SUBPROTOCOL] : undefined;
  }

  /** One frame as the message to send: a string (JSON text) or bytes (MessagePack). */
  encode(frame: Frame): string | Uint8Array {
    return this.name === 'json' ? JSON.stringify(binaryToJson(frame)) : this.codec.encode(frame);
  }

  /** The frames of one received message (`event.data`: a string, an ArrayBuffer or bytes). */
  decode(data: unknown): Array<Frame | ChorusError> {
    if (typeof data === 'string') {
      if (this.name === 'msgpack') return [new ChorusError(ErrorCode.BAD_FRAME, 'text message on a chorus.v1.msgpack connection: the server does not speak MessagePack')];
      return this.codec.decodeMessage(data);
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : undefined;
    if (bytes === undefined || this.name === 'json') return [new ChorusError(ErrorCode.BAD_FRAME, 'binary message ignored')];
    return this.codec.decodeMessage(bytes);
  }
}
