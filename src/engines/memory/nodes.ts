import type { NodeDirectory, NodeReport } from '../types.js';
import { systemClock, type Clock } from '../clock.js';

/** Node reports in one process (the memory engine: one node; the test bus: every node on it). */
export class MemoryNodeDirectory implements NodeDirectory {
  private readonly reports = new Map<string, { report: NodeReport; expiresAt: number }>();

  constructor(private readonly now: Clock = systemClock) {}

  async report(node: string, data: unknown, ttlMs: number): Promise<void> {
    const now = this.now();
    this.reports.set(node, { report: { node, time: now, data: structuredClone(data) }, expiresAt: now + ttlMs });
  }

  async list(): Promise<NodeReport[]> {
    const now = this.now();
    const out: NodeReport[] = [];
    for (const [node, entry] of this.reports) {
      if (entry.expiresAt <= now) this.reports.delete(node);
      else out.push(structuredClone(entry.report));
    }
    return out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  async remove(node: string): Promise<void> {
    this.reports.delete(node);
  }
}
