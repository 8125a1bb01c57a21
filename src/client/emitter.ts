/**
 * A small typed event emitter (isomorphic: no Node EventEmitter). `Events` maps each event
 * name to the type of its payload.
 *
 * A throwing listener does not stop the other listeners nor corrupt the emitter's owner: the
 * error is re-thrown asynchronously (like a DOM EventTarget), so it surfaces as an uncaught
 * error instead of disappearing.
 */
export type Listener<T> = (data: T) => void;

export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Add a listener. Returns a function that removes it. */
  on<K extends keyof Events & string>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Add a listener called at most once. Returns a function that removes it. */
  once<K extends keyof Events & string>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (data) => {
      off();
      listener(data);
    });
    return off;
  }

  /** Remove a listener added with `on` (listeners added with `once` are removed by the function `once` returns). */
  off<K extends keyof Events & string>(event: K, listener: Listener<Events[K]>): void {
    const set = this.#listeners.get(event);
    if (set === undefined) return;
    set.delete(listener as Listener<never>);
    if (set.size === 0) this.#listeners.delete(event);
  }

  /** Number of listeners of an event. */
  listenerCount(event: keyof Events & string): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /** Remove every listener (of one event, or of all). */
  removeAllListeners(event?: keyof Events & string): void {
    if (event === undefined) this.#listeners.clear();
    else this.#listeners.delete(event);
  }

  /** Call every listener of `event` in the order they were added. Returns whether there was one. */
  protected emitEvent<K extends keyof Events & string>(event: K, data: Events[K]): boolean {
    const set = this.#listeners.get(event);
    if (set === undefined) return false;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(data);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    return true;
  }
}
