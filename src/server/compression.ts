import { bool, fail } from './option-checks.js';

/**
 * permessage-deflate on WebSocket connections (RFC 7692, through `ws`). A compressed connection
 * keeps zlib state: see README "Compression" for the measured memory and CPU per connection.
 * The message size limit (`limits.maxMessageBytes`) applies to the decompressed message.
 */
export interface CompressionOptions {
  /** Messages smaller than this are sent uncompressed, in bytes. Default 1024. */
  threshold?: number;
  /** Compression and decompression jobs running at once in the process (zlib threads are shared). Default 10. */
  concurrency?: number;
  /**
   * Keep the deflate context between messages (better ratio on similar messages, but the
   * context's memory stays allocated per connection). Default false: no context takeover.
   */
  contextTakeover?: boolean;
  /** zlib compression level, 1 (fastest) to 9 (smallest). Default 1. */
  level?: number;
  /** zlib memLevel, 1 to 9: deflate memory is about 2^(memLevel+9) bytes. Default 4. */
  memLevel?: number;
  /** Largest LZ77 window the server uses, as bits, 9 to 15: deflate memory is about 2^(bits+2) bytes. Default 11. */
  windowBits?: number;
}

/** Compression settings with every default applied. */
export type CompressionSettings = Required<CompressionOptions>;

export const DEFAULT_COMPRESSION: CompressionSettings = {
  threshold: 1024,
  concurrency: 10,
  contextTakeover: false,
  level: 1,
  memLevel: 4,
  windowBits: 11,
};

const COMPRESSION_RANGES: Record<keyof CompressionOptions, [number, number] | 'boolean'> = {
  threshold: [0, 2 ** 31],
  concurrency: [1, 1024],
  contextTakeover: 'boolean',
  level: [1, 9],
  memLevel: [1, 9],
  windowBits: [9, 15],
};

/** Resolve the `compression` option: undefined when off. */
export function resolveCompression(value: boolean | CompressionOptions | undefined): CompressionSettings | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { ...DEFAULT_COMPRESSION };
  if (typeof value !== 'object' || value === null) fail('compression', `must be true, false or an object, got ${JSON.stringify(value)}`);
  const out: Record<string, unknown> = { ...DEFAULT_COMPRESSION };
  for (const [k, v] of Object.entries(value)) {
    const range = COMPRESSION_RANGES[k as keyof CompressionOptions];
    if (range === undefined) fail(`compression.${k}`, 'unknown key');
    if (v === undefined) continue;
    if (range === 'boolean') out[k] = bool(`compression.${k}`, v);
    else if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < range[0] || v > range[1]) {
      fail(`compression.${k}`, `must be an integer from ${range[0]} to ${range[1]}, got ${JSON.stringify(v)}`);
    } else out[k] = v;
  }
  return out as CompressionSettings;
}

