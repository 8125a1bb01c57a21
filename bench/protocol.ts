/** Messages between bench/run.ts (load + report) and bench/server.ts (the server under test). */

export type ServerKind = 'chorus' | 'ws' | 'socketio';

export const BENCH_CHANNEL = 'bench:fanout';
export const BENCH_ROOM = 'bench';

/** How the server-side publisher runs. Both modes stop by themselves at `max` or `durationMs`. */
export type PublishPlan =
  | {
      /** Closed loop: publish while fewer than `window` publications are undelivered (credit from the load). */
      mode: 'window';
      window: number;
      /** Bytes of text padding in each publication (`p`). Default 64. */
      padBytes?: number;
      /** Publications per event-loop turn. */
      burst: number;
      max: number;
      durationMs: number;
    }
  | {
      /** Open loop at a fixed rate (publications per second). */
      mode: 'rate';
      rate: number;
      /** Bytes of text padding in each publication (`p`). Default 64. */
      padBytes?: number;
      max: number;
      durationMs: number;
      /** Publish round-robin to these channels instead of the fan-out channel (Chorus only). */
      channels?: string[];
    };

export type ToServer =
  | { type: 'stats' }
  | { type: 'memory' }
  | { type: 'cpu-start' }
  | { type: 'cpu-read' }
  | { type: 'publish'; plan: PublishPlan }
  | { type: 'credit'; upTo: number }
  | { type: 'lag-start' }
  | { type: 'lag-read' }
  | { type: 'exit' };

export type FromServer =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'stats'; subscribers: number; connections: number }
  | { type: 'memory'; heapUsed: number; rss: number }
  | { type: 'ok' }
  | { type: 'cpu'; cpuMs: number }
  | { type: 'lag'; p50Ms: number; p99Ms: number; maxMs: number }
  | { type: 'published'; count: number; elapsedMs: number; cpuMs: number; stalledMs: number };
