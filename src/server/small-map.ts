/** Entries of every empty `SmallMap` while it is iterated (never mutated). */
const EMPTY: ReadonlyMap<unknown, unknown> = new Map<unknown, unknown>();

/**
 * A `Map` that holds a single entry inline and makes a real `Map` only when a second key
 * arrives. A connection's subscriptions are nearly always just its personal channel: a `Map`
 * each (the object and a ~150 B hash table) was the largest part of an idle connection's own
 * state. Behaves as a `Map` (same methods, insertion order, `undefined` values allowed);
 * iterating a one-entry map makes a short-lived `Map` for the iterator.
 */
export class SmallMap<K, V> implements Map<K, V> {
  private many: Map<K, V> | undefined;
  private held = false;
  private oneKey: K | undefined;
  private oneValue: V | undefined;

  get size(): number {
    if (this.many) return this.many.size;
    return this.held ? 1 : 0;
  }

  get [Symbol.toStringTag](): string {
    return 'Map';
  }

  has(key: K): boolean {
    if (this.many) return this.many.has(key);
    return this.held && sameValueZero(this.oneKey, key);
  }

  get(key: K): V | undefined {
    if (this.many) return this.many.get(key);
    return this.held && sameValueZero(this.oneKey, key) ? this.oneValue : undefined;
  }

  set(key: K, value: V): this {
    if (this.many) this.many.set(key, value);
    else if (!this.held || sameValueZero(this.oneKey, key)) {
      this.held = true;
      this.oneKey = key;
      this.oneValue = value;
    } else {
      this.many = new Map<K, V>([[this.oneKey as K, this.oneValue as V], [key, value]]);
      this.dropOne();
    }
    return this;
  }

  delete(key: K): boolean {
    if (this.many) return this.many.delete(key);
    if (!this.held || !sameValueZero(this.oneKey, key)) return false;
    this.dropOne();
    return true;
  }

  clear(): void {
    this.many = undefined;
    this.dropOne();
  }

  forEach(callback: (value: V, key: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    if (this.many) {
      for (const [key, value] of this.many) callback.call(thisArg, value, key, this);
    } else if (this.held) callback.call(thisArg, this.oneValue as V, this.oneKey as K, this);
  }

  entries(): MapIterator<[K, V]> {
    return this.view().entries();
  }

  keys(): MapIterator<K> {
    return this.view().keys();
  }

  values(): MapIterator<V> {
    return this.view().values();
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.view().entries();
  }

  private dropOne(): void {
    this.held = false;
    this.oneKey = undefined;
    this.oneValue = undefined;
  }

  /** The entries as a `Map` to iterate: the real one, or a new one for a single entry. */
  private view(): ReadonlyMap<K, V> {
    if (this.many) return this.many;
    return this.held ? new Map([[this.oneKey as K, this.oneValue as V]]) : (EMPTY as ReadonlyMap<K, V>);
  }
}

/** `Map`'s key equality: like `===`, except that NaN equals NaN. */
function sameValueZero(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b);
}
