/** What readers of a `SmallSet` may use: its size and its members. */
export interface ReadonlyMembers<T> extends Iterable<T> {
  readonly size: number;
  has(value: T): boolean;
}

const NONE: readonly never[] = [];

/**
 * A set that holds a single member inline and makes a `Set` only when a second one arrives.
 * Most users hold one connection on a node and most personal channels have one subscriber: a
 * `Set` each (an object and a ~120 B hash table) would be most of the hub's per-connection
 * memory. Iterates in insertion order like a `Set`; `undefined` cannot be a member.
 */
export class SmallSet<T> implements ReadonlyMembers<T> {
  private one: T | undefined;
  private many: Set<T> | undefined;

  get size(): number {
    if (this.many) return this.many.size;
    return this.one === undefined ? 0 : 1;
  }

  has(value: T): boolean {
    if (this.many) return this.many.has(value);
    return value !== undefined && this.one === value;
  }

  add(value: T): this {
    if (this.many) this.many.add(value);
    else if (this.one === undefined || this.one === value) this.one = value;
    else {
      this.many = new Set([this.one, value]);
      this.one = undefined;
    }
    return this;
  }

  delete(value: T): boolean {
    if (this.many) return this.many.delete(value);
    if (value === undefined || this.one !== value) return false;
    this.one = undefined;
    return true;
  }

  [Symbol.iterator](): Iterator<T> {
    if (this.many) return this.many.values();
    return (this.one === undefined ? NONE : [this.one]).values();
  }
}
