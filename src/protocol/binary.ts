/**
 * Binary data in JSON. A JSON frame cannot hold bytes, so binary travels as an object with the
 * single key `$bin` whose value is the bytes in standard base64 (RFC 4648 section 4, with
 * padding): `{"$bin":"AAEC"}`. Publications are stored (history, Redis) in this JSON-safe form;
 * the MessagePack codec turns it back into MessagePack `bin`, and the client library into
 * `Uint8Array`. Isomorphic: no Node imports.
 */
import { ChorusError, ErrorCode } from './codes.js';

/** The key that marks binary in JSON: `{"$bin": "<base64>"}`. */
export const BINARY_KEY = '$bin';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const LOOKUP = new Uint8Array(128).fill(255);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard base64 with padding. */
export function toBase64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  const n = bytes.length;
  const parts: string[] = [];
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[v >> 18]! + ALPHABET[(v >> 12) & 63]! + ALPHABET[(v >> 6) & 63]! + ALPHABET[v & 63]!;
    if (out.length >= 8192) {
      parts.push(out);
      out = '';
    }
  }
  if (i < n) {
    const v = (bytes[i]! << 16) | (i + 1 < n ? bytes[i + 1]! << 8 : 0);
    out += ALPHABET[v >> 18]! + ALPHABET[(v >> 12) & 63]! + (i + 1 < n ? ALPHABET[(v >> 6) & 63]! : '=') + '=';
  }
  parts.push(out);
  return parts.join('');
}

/** Whether `text` is standard padded base64. */
export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && BASE64.test(text);
}

/** Decode standard padded base64; throws ChorusError(BAD_REQUEST) if it is not. */
export function fromBase64(text: string): Uint8Array {
  if (!isBase64(text)) throw new ChorusError(ErrorCode.BAD_REQUEST, `"${BINARY_KEY}" must be standard base64 with padding`);
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const v =
      (LOOKUP[text.charCodeAt(i)]! << 18) |
      (LOOKUP[text.charCodeAt(i + 1)]! << 12) |
      ((LOOKUP[text.charCodeAt(i + 2)]! & 63) << 6) |
      (LOOKUP[text.charCodeAt(i + 3)]! & 63);
    out[o++] = v >> 16;
    if (o < out.length) out[o++] = (v >> 8) & 255;
    if (o < out.length) out[o++] = v & 255;
  }
  return out;
}

/** Whether `value` is the JSON form of binary: an object whose only key is `$bin`, a string. */
export function isBinaryMarker(value: unknown): value is { $bin: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return false;
  const v = value as Record<string, unknown>;
  if (typeof v[BINARY_KEY] !== 'string') return false;
  for (const key in v) if (key !== BINARY_KEY) return false;
  return true;
}

const MAX_DEPTH = 64;

/**
 * Replace every `Uint8Array` in `value` with `{"$bin": base64}`. Returns `value` itself when it
 * holds no binary (nothing is copied); copies only the objects on the way to a replaced one.
 * With `validate`, existing `$bin` markers must hold valid base64 (else BAD_REQUEST).
 */
export function binaryToJson(value: unknown, validate = false, depth = 0): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (value instanceof Uint8Array) return { [BINARY_KEY]: toBase64(value) };
  if (depth > MAX_DEPTH) return value;
  if (validate && isBinaryMarker(value)) {
    if (!isBase64(value.$bin)) throw new ChorusError(ErrorCode.BAD_REQUEST, `"${BINARY_KEY}" must be standard base64 with padding`);
    return value;
  }
  return mapChildren(value, (child) => binaryToJson(child, validate, depth + 1));
}

/** Replace every `{"$bin": base64}` in `value` with its bytes. Same copy-on-write rule as `binaryToJson`. */
export function jsonToBinary(value: unknown, depth = 0): unknown {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return value;
  if (isBinaryMarker(value)) return isBase64(value.$bin) ? fromBase64(value.$bin) : value;
  if (depth > MAX_DEPTH) return value;
  return mapChildren(value, (child) => jsonToBinary(child, depth + 1));
}

/** Apply `map` to each child; a new container only if some child changed. */
function mapChildren(value: object, map: (child: unknown) => unknown): unknown {
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const child = value[i] as unknown;
      const mapped = map(child);
      if (mapped !== child) (copy ??= value.slice())[i] = mapped;
    }
    return copy ?? value;
  }
  let copy: Record<string, unknown> | undefined;
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    const child = record[key];
    const mapped = map(child);
    if (mapped !== child) (copy ??= { ...record })[key] = mapped;
  }
  return copy ?? value;
}
