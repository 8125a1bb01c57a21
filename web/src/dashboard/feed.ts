/**
 * The dashboard's Chorus wiring, apart from the charts: reads the recent window of
 * `dash:nodes` from history and subscribes from its top (web/src/channel-log.ts), so a new
 * viewer starts with full charts and then gets one publication per node per second. After a
 * reconnect the client library resubscribes from the last publication it delivered and the
 * server replays the ticks missed meanwhile: the charts fill without a gap.
 */
import { ChorusClient, Emitter, type ClientState, type MessageData, type Subscription } from '../../../src/client/index.js';
import { DASHBOARD_CHANNEL, type NodeFigures } from '../../../src/cli/dashboard-figures.js';
import { openChannelLog } from '../channel-log.js';

export type { NodeFigures };

/** Publications read on open (the namespace's history size). */
const HISTORY = 600;

export interface FeedEvents {
  state: ClientState;
  connected: number;
  /** New ticks, oldest first (the history window on open, then live ones). */
  ticks: Array<{ offset: number; figures: NodeFigures }>;
  /** History was lost: drop everything shown (ticks follow). */
  reset: undefined;
}

function toTick(m: MessageData): { offset: number; figures: NodeFigures } | undefined {
  const f = m.data as Partial<NodeFigures> | null;
  if (m.offset === undefined || typeof f?.node !== 'string' || typeof f.t !== 'number') return undefined;
  return { offset: m.offset, figures: f as NodeFigures };
}

export class DashboardFeed extends Emitter<FeedEvents> {
  readonly client: ChorusClient;
  #subscription: Subscription | undefined;
  #connects = 0;

  constructor(url: string, getToken: () => Promise<string>) {
    super();
    this.client = new ChorusClient({ url, getToken });
    this.client.on('state', ({ newState }) => this.emitEvent('state', newState));
    this.client.on('connected', () => this.emitEvent('connected', ++this.#connects));
  }

  async start(): Promise<void> {
    this.client.connect();
    await this.#open();
  }

  close(): void {
    this.client.close();
  }

  async #open(): Promise<void> {
    const log = await openChannelLog(this.client, DASHBOARD_CHANNEL, HISTORY, (sub) => {
      this.#subscription = sub;
      sub.on('message', (m) => {
        const tick = toTick(m);
        if (tick) this.emitEvent('ticks', [tick]);
      });
      sub.on('recovery-failed', () => void this.#reload());
    });
    this.emitEvent('ticks', log.past.map(toTick).filter((t) => t !== undefined));
  }

  async #reload(): Promise<void> {
    if (this.#subscription) await this.client.removeSubscription(this.#subscription).catch(() => undefined);
    this.emitEvent('reset', undefined);
    await this.#open();
  }
}
