/* eslint-disable @typescript-eslint/no-explicit-any -- Yjs types its roots as AbstractType<any> */
import * as Y from 'yjs';
import { ChorusError, ErrorCode } from '../protocol/index.js';

/** The kind of a root type, as far as its content tells (an empty root reads as text). */
export type RootKind = 'text' | 'xml' | 'map' | 'array';

const CONSTRUCTORS = { text: Y.Text, xml: Y.XmlFragment, map: Y.Map, array: Y.Array } as const;

/** Guess a root type's kind from its content: roots in a loaded update are untyped until read. */
export function rootKind(type: Y.AbstractType<any>): RootKind {
  if (type instanceof Y.Text) return 'text';
  if (type instanceof Y.XmlFragment) return 'xml';
  if (type instanceof Y.Map) return 'map';
  if (type instanceof Y.Array) return 'array';
  if (type._map.size > 0) return 'map';
  for (let item = type._start; item !== null; item = item.right) {
    if (item.deleted) continue;
    const content = item.content;
    if (content instanceof Y.ContentString || content instanceof Y.ContentFormat || content instanceof Y.ContentEmbed) return 'text';
    if (content instanceof Y.ContentType && (content.type instanceof Y.XmlElement || content.type instanceof Y.XmlText)) return 'xml';
    return 'array';
  }
  return 'text';
}

/** A Y.Doc holding one Yjs update. */
export function docFromUpdate(update: Uint8Array): Y.Doc {
  const doc = new Y.Doc();
  try {
    Y.applyUpdate(doc, update);
  } catch {
    throw new ChorusError(ErrorCode.INTERNAL, 'the stored update could not be decoded');
  }
  return doc;
}

function typedRoot(doc: Y.Doc, name: string, kind: RootKind): Y.AbstractType<any> {
  return doc.get(name, CONSTRUCTORS[kind] as unknown as typeof Y.AbstractType) as Y.AbstractType<any>;
}

/** Every root of a document as plain data: text and XML as strings, maps and arrays as JSON. */
export function documentContent(doc: Y.Doc): Record<string, unknown> {
  const content: Record<string, unknown> = {};
  for (const [name, type] of [...doc.share]) {
    const kind = rootKind(type);
    const root = typedRoot(doc, name, kind);
    content[name] = kind === 'text' || kind === 'xml' ? root.toString() : root.toJSON();
  }
  return content;
}

/** One root as text (`field`), or the only root when there is exactly one. Throws BAD_REQUEST otherwise. */
export function documentText(doc: Y.Doc, field: string | null): string {
  const names = [...doc.share.keys()];
  const name = field ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    throw new ChorusError(ErrorCode.BAD_REQUEST, `the document has ${names.length} roots (${names.join(', ')}): choose one with ?field=`);
  }
  if (!doc.share.has(name)) throw new ChorusError(ErrorCode.NOT_FOUND, `the document has no root "${name}"`);
  const content = documentContent(doc)[name];
  return typeof content === 'string' ? content : JSON.stringify(content);
}

function cloned(value: unknown): unknown {
  return value instanceof Y.AbstractType ? (value as Y.AbstractType<any> & { clone(): unknown }).clone() : value;
}

/**
 * Make `live` read like `version`, as ordinary edits in one transaction (so they sync to every
 * client and merge with concurrent edits): each root is replaced by the version's content;
 * roots absent from the version are emptied.
 */
export function restoreInto(live: Y.Doc, version: Y.Doc, origin: unknown): void {
  live.transact(() => {
    const names = new Set([...live.share.keys(), ...version.share.keys()]);
    for (const name of names) {
      const source = version.share.get(name);
      const kind = source ? rootKind(source) : rootKind(live.share.get(name)!);
      const from = source ? typedRoot(version, name, kind) : undefined;
      const to = typedRoot(live, name, kind);
      if (to instanceof Y.Text) {
        to.delete(0, to.length);
        if (from instanceof Y.Text) to.applyDelta(from.toDelta());
      } else if (to instanceof Y.XmlFragment) {
        to.delete(0, to.length);
        if (from instanceof Y.XmlFragment) to.insert(0, from.toArray().map((c) => c.clone()) as Array<Y.XmlElement | Y.XmlText>);
      } else if (to instanceof Y.Map) {
        const map = to as Y.Map<unknown>;
        const next = from instanceof Y.Map ? (from as Y.Map<unknown>) : new Y.Map<unknown>();
        for (const key of [...map.keys()]) if (!next.has(key)) map.delete(key);
        for (const [key, value] of next.entries()) map.set(key, cloned(value));
      } else if (to instanceof Y.Array) {
        const array = to as Y.Array<unknown>;
        array.delete(0, array.length);
        if (from instanceof Y.Array) array.insert(0, (from as Y.Array<unknown>).toArray().map(cloned));
      }
    }
  }, origin);
}
