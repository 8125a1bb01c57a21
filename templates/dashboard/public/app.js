// @ts-check
/**
 * The dashboard page: read `dash:app` from history, subscribe from its top, draw with uPlot.
 * Each publication is one point; the client library keeps the stream gap-free across reconnects
 * (it resubscribes from the last point it delivered and the server replays what was missed).
 */
import { ChorusClient } from '/chorus/client/index.js';
import uPlot from '/vendor/uplot/uPlot.esm.js';

const CHANNEL = 'dash:app';
const WINDOW = 120; // points kept (the channel's history size)
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {[number[], number[], number[], number[]]} time (s), requests/s, lag ms, heap MiB */
const data = [[], [], [], []];

async function token() {
  const res = await fetch('/token', { method: 'POST' });
  return /** @type {{ token: string }} */ (await res.json()).token;
}

const plot = new uPlot(
  {
    width: Math.min(900, $('chart').clientWidth - 32),
    height: 320,
    series: [
      {},
      { label: 'requests/s', stroke: '#4f5bd5', width: 2 },
      { label: 'event-loop lag (ms)', stroke: '#d64545', width: 2 },
      { label: 'heap (MiB)', stroke: '#1f9d55', width: 2, scale: 'mb' },
    ],
    axes: [{}, {}, { scale: 'mb', side: 1, grid: { show: false } }],
  },
  data,
  $('chart'),
);

function add(/** @type {any} */ f) {
  data[0].push(f.t / 1000);
  data[1].push(f.requestsPerSec);
  data[2].push(f.loopLagMs);
  data[3].push(f.heapMb);
  if (data[0].length > WINDOW) for (const column of data) column.shift();
  $('requests').textContent = String(f.requestsPerSec);
  $('lag').textContent = String(f.loopLagMs);
  $('heap').textContent = String(f.heapMb);
}

function redraw() {
  plot.setData(data);
  $('chart').dataset.points = String(data[0].length);
}

const client = new ChorusClient({ url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, getToken: token });
client.on('state', ({ newState }) => {
  $('state').textContent = newState;
  $('state').dataset.state = newState;
});
client.connect();

// History: the top position first, then forward pages of at most 100 from `top - WINDOW`.
const head = await client.history(CHANNEL, { limit: 0 });
let since = Math.max(0, head.offset - WINDOW);
while (since < head.offset) {
  const page = await client.history(CHANNEL, { since: { offset: since, epoch: head.epoch }, limit: Math.min(100, head.offset - since) });
  const kept = page.publications.filter((p) => (p.offset ?? 0) <= head.offset);
  if (kept.length === 0) break;
  for (const p of kept) add(p.data);
  since = kept[kept.length - 1]?.offset ?? head.offset;
}
redraw();

// Then live, from exactly where history ended.
const feed = client.subscribe(CHANNEL, { since: { offset: head.offset, epoch: head.epoch } });
feed.on('message', (m) => {
  add(m.data);
  redraw();
});
feed.on('recovery-failed', () => location.reload());
