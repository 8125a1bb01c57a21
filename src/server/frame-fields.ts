import { ChorusError, ErrorCode, isStreamPosition, type Frame, type StreamPosition } from '../protocol/index.js';

/** The frame's `data` as an object, or BAD_REQUEST. */
export function objectData(frame: Frame): Record<string, unknown> {
  const data = frame.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, `"${frame.event}" needs an object as data`);
  }
  return data as Record<string, unknown>;
}

/** The `channel` field: missing or not a string is BAD_REQUEST; an invalid name is BAD_CHANNEL later. */
export function channelOf(data: Record<string, unknown>): string {
  const channel = data.channel;
  if (typeof channel !== 'string') throw new ChorusError(ErrorCode.BAD_REQUEST, 'channel must be a string');
  return channel;
}

export function optionalPosition(data: Record<string, unknown>, key: string): StreamPosition | undefined {
  const value = data[key];
  if (value === undefined || value === null) return undefined;
  if (!isStreamPosition(value)) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be {"offset": non-negative integer, "epoch": string}`);
  }
  return { offset: value.offset, epoch: value.epoch };
}

export function optionalBoolean(data: Record<string, unknown>, key: string): boolean | undefined {
  const value = data[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new ChorusError(ErrorCode.BAD_REQUEST, `${key} must be a boolean`);
  return value;
}
