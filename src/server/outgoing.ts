import type { Codec, Frame } from '../protocol/index.js';

/**
 * A frame sent to many connections (a publication, a join/leave, a ping): encoded lazily, once
 * per codec in use, never once per subscriber.
 */
export class OutgoingFrame {
  private readonly encoded = new Map<Codec, Uint8Array>();

  constructor(readonly frame: Frame) {}

  /** The frame's bytes in `codec` (encoded on first use). */
  encode(codec: Codec): Uint8Array {
    let bytes = this.encoded.get(codec);
    if (!bytes) this.encoded.set(codec, (bytes = codec.encode(this.frame)));
    return bytes;
  }
}
