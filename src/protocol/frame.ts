import { ChorusError, ErrorCode } from './codes.js';

/** One protocol frame: `{"event": string, "data"?: any, "id"?: string}`. */
export interface Frame<D = unknown> {
  event: string;
  data?: D;
  id?: string;
}

/** Longest accepted frame `id`, in characters. */
export const MAX_FRAME_ID_LENGTH = 128;
/** Longest accepted event name, in characters. */
export const MAX_EVENT_NAME_LENGTH = 128;

/** Reply to a frame that carried an `id`, on success. */
export interface AckFrame<D = unknown> extends Frame<D> {
  event: 'ack';
  id: string;
}

/** Reply to a frame that carried an `id`, on failure; also sent without `id` for frames that had none. */
export interface ErrorFrame extends Frame<ErrorData> {
  event: 'error';
}

export interface ErrorData {
  code: string;
  message: string;
  [extra: string]: unknown;
}

/**
 * Separator between frames when one WebSocket message carries several (server to client
 * batching). JSON text never contains a raw newline, so splitting on it is exact.
 */
export const FRAME_SEPARATOR = '\n';

/**
 * Parse one frame's JSON. Throws a ChorusError(BAD_FRAME) whose message says what is wrong.
 * `data` is left untouched; each event validates its own payload.
 */
export function parseFrame(text: string): Frame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ChorusError(ErrorCode.BAD_FRAME, 'frame is not valid JSON');
  }
  return toFrame(value);
}

/** Validate an already-decoded value as a frame (shared by the JSON and MessagePack codecs). */
export function toFrame(value: unknown): Frame {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ChorusError(ErrorCode.BAD_FRAME, 'frame must be an object (a JSON object or a MessagePack map)');
  }
  const v = value as Record<string, unknown>;
  if (typeof v.event !== 'string' || v.event.length === 0) {
    throw new ChorusError(ErrorCode.BAD_FRAME, 'frame.event must be a non-empty string');
  }
  if (v.event.length > MAX_EVENT_NAME_LENGTH) {
    throw new ChorusError(ErrorCode.BAD_FRAME, `frame.event is longer than ${MAX_EVENT_NAME_LENGTH} characters`);
  }
  const frame: Frame = { event: v.event };
  if ('data' in v) frame.data = v.data;
  if ('id' in v && v.id !== undefined) {
    if (typeof v.id !== 'string' || v.id.length === 0 || v.id.length > MAX_FRAME_ID_LENGTH) {
      throw new ChorusError(
        ErrorCode.BAD_FRAME,
        `frame.id must be a string of 1 to ${MAX_FRAME_ID_LENGTH} characters`,
      );
    }
    frame.id = v.id;
  }
  return frame;
}

/** Encode a frame as JSON text. */
export function encodeFrame(frame: Frame): string {
  return JSON.stringify(frame);
}

/** Split one WebSocket text message into the frames it carries (see FRAME_SEPARATOR). */
export function splitFrames(text: string): string[] {
  if (text.indexOf(FRAME_SEPARATOR) === -1) return [text];
  return text.split(FRAME_SEPARATOR).filter((part) => part.length > 0);
}
