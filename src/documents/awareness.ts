import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';

interface Entry {
  clock: number;
  /** The state as the JSON text the client sent; `null` once removed (the clock is kept). */
  state: string;
  /** When it was last set or renewed, ms since the Unix epoch. */
  updated: number;
  /** The local peer that sent it; absent for entries from other nodes. */
  owner: string | undefined;
}

/**
 * A document's awareness (cursors, names, colours) on the server, in the y-protocols wire format:
 * `varUint count` then per client `varUint clientID, varUint clock, varString JSON state`.
 * Entries are removed when their peer disconnects or when not renewed within the timeout. No
 * timers: the owner calls `expire` from its own.
 */
export class AwarenessEntries {
  private readonly entries = new Map<number, Entry>();

  /** Live (non-removed) entries. */
  get size(): number {
    let n = 0;
    for (const entry of this.entries.values()) if (entry.state !== 'null') n++;
    return n;
  }

  /**
   * Apply an awareness update (throws on a malformed one); returns the accepted changes
   * re-encoded, or undefined when nothing changed. `owner` is the local peer it came from.
   */
  apply(update: Uint8Array, owner: string | undefined, now: number): Uint8Array | undefined {
    const decoder = decoding.createDecoder(update);
    const count = decoding.readVarUint(decoder);
    const changed: Array<[number, number, string]> = [];
    for (let i = 0; i < count; i++) {
      const client = decoding.readVarUint(decoder);
      const clock = decoding.readVarUint(decoder);
      const state = decoding.readVarString(decoder);
      JSON.parse(state);
      const current = this.entries.get(client);
      const newer = !current || current.clock < clock || (current.clock === clock && state === 'null' && current.state !== 'null');
      if (!newer) continue;
      this.entries.set(client, { clock, state, updated: now, owner: owner ?? current?.owner });
      changed.push([client, clock, state]);
    }
    return changed.length > 0 ? encode(changed) : undefined;
  }

  /** Every live entry, encoded (what a new peer gets). Undefined when there are none. */
  encodeAll(): Uint8Array | undefined {
    const all: Array<[number, number, string]> = [];
    for (const [client, entry] of this.entries) if (entry.state !== 'null') all.push([client, entry.clock, entry.state]);
    return all.length > 0 ? encode(all) : undefined;
  }

  /** Remove the entries a peer sent (it disconnected); returns the removal to broadcast. */
  removeOwner(owner: string, now: number): Uint8Array | undefined {
    return this.remove((entry) => entry.owner === owner, now);
  }

  /** Remove entries not renewed for `timeoutMs`; forget removed ones after as long again. */
  expire(now: number, timeoutMs: number): Uint8Array | undefined {
    for (const [client, entry] of this.entries) {
      if (entry.state === 'null' && now - entry.updated >= timeoutMs) this.entries.delete(client);
    }
    return this.remove((entry) => now - entry.updated >= timeoutMs, now);
  }

  private remove(match: (entry: Entry) => boolean, now: number): Uint8Array | undefined {
    const removed: Array<[number, number, string]> = [];
    for (const [client, entry] of this.entries) {
      if (entry.state === 'null' || !match(entry)) continue;
      // Same clock, state null (as y-protocols removes): the client's next renewal (clock + 1) wins.
      this.entries.set(client, { clock: entry.clock, state: 'null', updated: now, owner: undefined });
      removed.push([client, entry.clock, 'null']);
    }
    return removed.length > 0 ? encode(removed) : undefined;
  }
}

function encode(entries: Array<[number, number, string]>): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, entries.length);
  for (const [client, clock, state] of entries) {
    encoding.writeVarUint(encoder, client);
    encoding.writeVarUint(encoder, clock);
    encoding.writeVarString(encoder, state);
  }
  return encoding.toUint8Array(encoder);
}
