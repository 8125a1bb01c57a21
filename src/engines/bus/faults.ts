import type { Publication } from '../types.js';

/** Which publications a fault applies to: on the way to one node (by id), of one channel, the next `count`. */
export interface FaultTarget {
  /** Only publications delivered to this node (its `id`). Default: any node. */
  to?: string;
  /** Only publications of this channel. Default: any channel. */
  channel?: string;
  /** How many publications the fault applies to (each matching delivery uses one). Default 1. */
  count?: number;
}

export type FaultKind = 'drop' | 'duplicate' | 'delay' | 'reorder';

interface Rule extends FaultTarget {
  kind: FaultKind;
  remaining: number;
  /** For `delay`, in ms. */
  ms: number;
}

/** What the bus does with one publication on its way to one node. */
export type FaultAction =
  | { kind: 'deliver' }
  | { kind: 'drop' }
  | { kind: 'duplicate' }
  | { kind: 'delay'; ms: number }
  /** Hold it and deliver it right after the next publication of its channel to this node. */
  | { kind: 'reorder' };

/**
 * Fault switches between bus nodes, consumed in the order they were set: each matching
 * delivery of a publication uses up one count of the first rule that matches it. Pure: no
 * timers, no I/O; the bus acts on the returned action.
 */
export class FaultSwitches {
  private rules: Rule[] = [];

  add(kind: FaultKind, target: FaultTarget & { ms?: number }): void {
    const count = target.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) throw new TypeError(`fault count must be a positive integer, got ${count}`);
    this.rules.push({ ...target, kind, remaining: count, ms: target.ms ?? 0 });
  }

  /** Faults not used up yet. */
  get pending(): number {
    return this.rules.reduce((sum, rule) => sum + rule.remaining, 0);
  }

  clear(): void {
    this.rules = [];
  }

  /** Decide the fate of `publication` on its way to node `to` (uses up one count of the matching rule). */
  next(to: string, publication: Publication): FaultAction {
    const rule = this.rules.find((r) => (r.to === undefined || r.to === to) && (r.channel === undefined || r.channel === publication.channel));
    if (!rule) return { kind: 'deliver' };
    if (--rule.remaining === 0) this.rules = this.rules.filter((r) => r !== rule);
    return rule.kind === 'delay' ? { kind: 'delay', ms: rule.ms } : { kind: rule.kind };
  }
}
