/**
 * The dashboard page: stat tiles and uPlot charts of every node's figures over the last two
 * minutes. Data comes from ./feed.ts. The chart element carries `data-points` (ticks held) and
 * `data-offsets` (`first-last` offset held): with no gap, points = last - first + 1.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { byId, setupSignIn, showError } from '../signin.js';
import { socketUrl, tokenSource } from '../session.js';
import { DashboardFeed, type NodeFigures } from './feed.js';

/** How much is drawn, in ms. */
const WINDOW_MS = 120_000;
const COLORS = ['#4f5bd5', '#1f9d55', '#d64545', '#c98a04', '#0e8fb3', '#9c4dcc'];

interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  series: Array<{ key: keyof NodeFigures; label: string }>;
}

const CHARTS: ChartSpec[] = [
  { id: 'conns', title: 'Connections and subscriptions', unit: '', series: [{ key: 'connections', label: 'connections' }, { key: 'subscriptions', label: 'subscriptions' }] },
  { id: 'msgs', title: 'Messages per second', unit: '/s', series: [{ key: 'messagesIn', label: 'in' }, { key: 'messagesOut', label: 'out' }] },
  { id: 'latency', title: 'Publish latency', unit: 'ms', series: [{ key: 'publishMeanMs', label: 'mean' }, { key: 'publishP99Ms', label: 'p99 ≤' }] },
  { id: 'lag', title: 'Event-loop lag', unit: 'ms', series: [{ key: 'loopLagMs', label: 'mean' }, { key: 'loopLagMaxMs', label: 'max' }] },
  { id: 'memory', title: 'Memory', unit: 'MiB', series: [{ key: 'rssMb', label: 'rss' }, { key: 'heapMb', label: 'heap' }] },
];

const el = {
  state: byId('state'),
  reconnect: byId<HTMLButtonElement>('reconnect'),
  dashboard: byId('dashboard'),
  tiles: byId('tiles'),
  charts: byId('charts'),
  error: byId('dash-error'),
};

/** Ticks held, oldest first, with their offsets. */
let ticks: Array<{ offset: number; figures: NodeFigures }> = [];
let feed: DashboardFeed | undefined;
const plots = new Map<string, { plot: uPlot; nodes: string[] }>();

const holder = setupSignIn({
  onSignedIn() {
    el.dashboard.hidden = false;
    feed = new DashboardFeed(socketUrl('/ws'), tokenSource(holder));
    feed.on('state', setState);
    feed.on('connected', (n) => (el.state.dataset.connects = String(n)));
    feed.on('ticks', (list) => {
      ticks.push(...list);
      const cutoff = (ticks[ticks.length - 1]?.figures.t ?? 0) - WINDOW_MS;
      const firstKept = ticks.findIndex((t) => t.figures.t >= cutoff);
      if (firstKept > 0) ticks = ticks.slice(firstKept);
      render();
    });
    feed.on('reset', () => (ticks = []));
    setState('connecting');
    feed.start().catch((err: Error) => showError(el.error, `Could not read the figures: ${err.message}`));
  },
  onSignedOut() {
    feed?.close();
    feed = undefined;
    ticks = [];
    el.dashboard.hidden = true;
  },
});

function setState(state: string): void {
  el.state.dataset.state = state;
  el.state.textContent = state;
  el.reconnect.hidden = state !== 'disconnected';
}
el.reconnect.addEventListener('click', () => feed?.client.connect());

function render(): void {
  const first = ticks[0];
  const last = ticks[ticks.length - 1];
  el.charts.dataset.points = String(ticks.length);
  el.charts.dataset.offsets = first && last ? `${first.offset}-${last.offset}` : '';
  const nodes = [...new Set(ticks.map((t) => t.figures.node))].sort();
  renderTiles(nodes);
  // One x value per tick time (nodes tick independently), each node's series null elsewhere.
  const xs = [...new Set(ticks.map((t) => t.figures.t))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  for (const spec of CHARTS) {
    const columns: Array<Array<number | null>> = [];
    for (const node of nodes) {
      for (const s of spec.series) {
        const column: Array<number | null> = new Array<number | null>(xs.length).fill(null);
        for (const t of ticks) {
          if (t.figures.node === node) column[index.get(t.figures.t) as number] = Number(t.figures[s.key]);
        }
        columns.push(column);
      }
    }
    drawChart(spec, nodes, [xs.map((x) => x / 1000), ...columns]);
  }
}

function drawChart(spec: ChartSpec, nodes: string[], data: uPlot.AlignedData): void {
  const existing = plots.get(spec.id);
  if (existing && existing.nodes.join() === nodes.join()) {
    existing.plot.setData(data);
    return;
  }
  existing?.plot.destroy();
  let box = el.charts.querySelector<HTMLElement>(`[data-chart="${spec.id}"]`);
  if (!box) {
    box = document.createElement('figure');
    box.className = 'chart card';
    box.dataset.chart = spec.id;
    const caption = document.createElement('figcaption');
    caption.textContent = spec.unit ? `${spec.title} (${spec.unit})` : spec.title;
    box.append(caption);
    el.charts.append(box);
  }
  const series: uPlot.Series[] = [{}];
  nodes.forEach((node, n) =>
    spec.series.forEach((s, i) =>
      series.push({
        label: nodes.length > 1 ? `${node} ${s.label}` : s.label,
        stroke: COLORS[(n * spec.series.length + i) % COLORS.length] ?? '#4f5bd5',
        width: 2,
        spanGaps: true,
        points: { show: false },
      }),
    ),
  );
  const plot = new uPlot(
    {
      width: Math.max(280, box.clientWidth - 24),
      height: 180,
      series,
      axes: [{ stroke: '#6b7385' }, { stroke: '#6b7385', size: 56 }],
      scales: { x: { time: true } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    },
    data,
    box,
  );
  plots.set(spec.id, { plot, nodes });
}

function renderTiles(nodes: string[]): void {
  const latest = new Map<string, NodeFigures>();
  for (const t of ticks) latest.set(t.figures.node, t.figures);
  const total = (key: keyof NodeFigures): number => [...latest.values()].reduce((s, f) => s + Number(f[key]), 0);
  const tiles: Array<[string, string]> = [
    ['Nodes', String(nodes.length)],
    ['Connections', String(total('connections'))],
    ['Subscriptions', String(total('subscriptions'))],
    ['Messages out/s', total('messagesOut').toFixed(0)],
    ['Messages in/s', total('messagesIn').toFixed(0)],
    ['Max event-loop lag', `${Math.max(0, ...[...latest.values()].map((f) => f.loopLagMaxMs)).toFixed(1)} ms`],
  ];
  el.tiles.replaceChildren(
    ...tiles.map(([label, value]) => {
      const tile = document.createElement('div');
      tile.className = 'tile card';
      const v = document.createElement('div');
      v.className = 'value';
      v.textContent = value;
      const l = document.createElement('div');
      l.className = 'label';
      l.textContent = label;
      tile.append(v, l);
      return tile;
    }),
  );
}

window.addEventListener('resize', () => {
  for (const [id, { plot }] of plots) {
    const box = el.charts.querySelector<HTMLElement>(`[data-chart="${id}"]`);
    if (box) plot.setSize({ width: Math.max(280, box.clientWidth - 24), height: 180 });
  }
});
