/**
 * The admin console page. Signs in with the API key once (POST /admin/api/session): the server
 * answers with an HttpOnly session cookie this script cannot read and a CSRF token kept only in
 * this module's memory (a reload asks GET /admin/api/session for it again). Every action is a
 * POST carrying the token in `x-chorus-csrf`. The figures are cluster-wide: the server merges
 * every node's report (docs/PROTOCOL.md, "Admin console").
 */

const REFRESH_MS = 2000;

interface NodeStats {
  node: string;
  startedAt: number;
  connections: number;
  users: number;
  channelCount: number;
  recent: Array<{ id: string; user: string; transport: string; connectedAt: number; subscriptions: number }>;
  rates: { messagesIn: number; messagesOut: number; publications: number };
}
interface Overview {
  node: string;
  time: number;
  nodes: NodeStats[];
  channels: Array<{ channel: string; subscribers: number; nodes: number }>;
}

class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
};

let csrf: string | undefined;
let refreshTimer: number | undefined;
/** The channel shown in the inspector, refreshed with the figures. */
let inspected: string | undefined;

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    if (csrf) headers['x-chorus-csrf'] = csrf;
  }
  const res = await fetch(`/admin/api${path}`, { method, headers, credentials: 'same-origin', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new AdminApiError(res.status, data.error?.code ?? 'ERROR', data.error?.message ?? res.statusText);
  return data as T;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string | number, className?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells: Array<string | number | HTMLElement>): HTMLTableRowElement {
  const tr = el('tr');
  for (const cell of cells) {
    const td = el('td');
    if (cell instanceof HTMLElement) td.append(cell);
    else td.textContent = String(cell);
    tr.append(td);
  }
  return tr;
}

function fill(table: string, rows: HTMLTableRowElement[], empty: string, columns: number): void {
  const body = $(table).querySelector('tbody')!;
  if (rows.length === 0) {
    const td = el('td', empty, 'empty');
    td.colSpan = columns;
    const tr = el('tr');
    tr.append(td);
    body.replaceChildren(tr);
  } else {
    body.replaceChildren(...rows);
  }
}

function since(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function button(label: string, onClick: () => void, className?: string): HTMLButtonElement {
  const b = el('button', label, className);
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

function showError(where: string, err: unknown): void {
  if (err instanceof AdminApiError && err.status === 401) return signedOut('Your session ended; sign in again.');
  const box = $(where);
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function notice(text: string): void {
  const box = $('action-result');
  box.textContent = text;
  box.hidden = false;
  $('console-error').hidden = true;
}

function render(o: Overview): void {
  const tiles: Array<[string, number | string]> = [
    ['nodes', o.nodes.length],
    ['connections', o.nodes.reduce((n, x) => n + x.connections, 0)],
    ['channels', o.channels.length],
    ['messages in / s', round(o.nodes.reduce((n, x) => n + x.rates.messagesIn, 0))],
    ['messages out / s', round(o.nodes.reduce((n, x) => n + x.rates.messagesOut, 0))],
    ['publications / s', round(o.nodes.reduce((n, x) => n + x.rates.publications, 0))],
  ];
  $('totals').replaceChildren(
    ...tiles.map(([label, value]) => {
      const tile = el('div', undefined, 'card tile');
      tile.dataset.tile = label;
      tile.append(el('div', value, 'value'), el('div', label, 'label'));
      return tile;
    }),
  );
  fill(
    'nodes',
    o.nodes.map((n) => row([n.node + (n.node === o.node ? ' (this)' : ''), n.connections, n.users, n.channelCount, n.rates.messagesIn, n.rates.messagesOut, n.rates.publications, since(n.startedAt, o.time)])),
    'no node has reported yet',
    8,
  );
  const connections = o.nodes.flatMap((n) => n.recent.map((c) => ({ ...c, node: n.node }))).sort((a, b) => b.connectedAt - a.connectedAt);
  fill(
    'connections',
    connections.slice(0, 200).map((c) => {
      const tr = row([c.user, c.node, c.transport, c.subscriptions, since(c.connectedAt, o.time), button('Disconnect', () => void disconnect(c.user), 'danger')]);
      tr.dataset.user = c.user;
      tr.title = c.id;
      return tr;
    }),
    'no connections',
    6,
  );
  fill(
    'channels',
    o.channels.slice(0, 200).map((c) => row([c.channel, c.subscribers, c.nodes, button('Inspect', () => void inspect(c.channel))])),
    'no channel has subscribers',
    4,
  );
  $('answering-node').textContent = o.node;
  $('updated').textContent = `Updated ${new Date(o.time).toLocaleTimeString()}.`;
}

const round = (n: number) => Math.round(n * 10) / 10;

async function refresh(): Promise<void> {
  window.clearTimeout(refreshTimer);
  try {
    render(await call<Overview>('GET', '/overview'));
    if (inspected !== undefined) await inspect(inspected);
    $('state').dataset.state = 'connected';
    $('state').textContent = 'live';
  } catch (err) {
    $('state').dataset.state = 'disconnected';
    $('state').textContent = 'stale';
    showError('console-error', err);
    if (err instanceof AdminApiError && err.status === 401) return;
  }
  if (csrf) refreshTimer = window.setTimeout(() => void refresh(), REFRESH_MS);
}

async function inspect(channel: string): Promise<void> {
  inspected = channel;
  $('inspect-name').textContent = channel;
  ($('inspect-channel') as HTMLInputElement).value = channel;
  const q = `?channel=${encodeURIComponent(channel)}`;
  const [presence, history] = await Promise.allSettled([
    call<{ members: Array<{ user: string; connections: number }> }>('GET', `/presence${q}`),
    call<{ publications: Array<{ offset?: number; data: unknown; time: number }> }>('GET', `/history${q}&limit=20`),
  ]);
  $('presence').replaceChildren(
    ...(presence.status === 'fulfilled'
      ? presence.value.members.map((m) => {
          const li = el('li', undefined, 'member');
          li.append(el('span', m.user, 'name'), el('span', `${m.connections} conn.`, 'conns'));
          return li;
        })
      : [el('li', (presence.reason as Error).message, 'muted')]),
  );
  $('history').replaceChildren(
    ...(history.status === 'fulfilled'
      ? history.value.publications.map((p) => {
          const li = el('li');
          li.append(el('span', `#${p.offset ?? '-'}`, 'offset'), document.createTextNode(JSON.stringify(p.data)));
          return li;
        })
      : [el('li', (history.reason as Error).message, 'muted')]),
  );
}

async function disconnect(user: string): Promise<void> {
  try {
    const r = await call<{ disconnected: number; nodes: string[]; missing: string[] }>('POST', '/disconnect', { user });
    notice(`Disconnected ${r.disconnected} connection(s) of ${user} on ${r.nodes.length} node(s)${r.missing.length ? `; no answer from ${r.missing.join(', ')}` : ''}.`);
    await refresh();
  } catch (err) {
    showError('console-error', err);
  }
}

function signedIn(token: string): void {
  csrf = token;
  $('signin').hidden = true;
  $('console').hidden = false;
  $('session').hidden = false;
  void refresh();
}

function signedOut(message?: string): void {
  csrf = undefined;
  window.clearTimeout(refreshTimer);
  $('console').hidden = true;
  $('session').hidden = true;
  $('signin').hidden = false;
  const box = $('signin-error');
  box.textContent = message ?? '';
  box.hidden = message === undefined;
}

function wire(): void {
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('api-key') as HTMLInputElement;
    const key = input.value;
    input.value = ''; // the key is not kept anywhere in the page
    call<{ csrf: string }>('POST', '/session', { key }).then(
      (r) => signedIn(r.csrf),
      (err: AdminApiError) => signedOut(err.status === 401 ? 'Wrong API key.' : err.message),
    );
  });
  $('signout').addEventListener('click', () => {
    void call('POST', '/signout', {}).finally(() => signedOut());
  });
  $('inspect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void inspect(($('inspect-channel') as HTMLInputElement).value.trim());
  });
  $('publish-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const channel = ($('publish-channel') as HTMLInputElement).value.trim();
    const text = ($('publish-text') as HTMLInputElement).value;
    call<{ offset?: number }>('POST', '/publish', { channel, data: { text, from: 'admin console' } }).then(
      (r) => notice(`Published to ${channel}${r.offset !== undefined ? ` at offset ${r.offset}` : ''}.`),
      (err) => showError('console-error', err),
    );
  });
  $('disconnect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void disconnect(($('disconnect-user') as HTMLInputElement).value.trim());
  });
  $('unsubscribe-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const user = ($('unsubscribe-user') as HTMLInputElement).value.trim();
    const channel = ($('unsubscribe-channel') as HTMLInputElement).value.trim();
    call<{ unsubscribed: number; nodes: string[] }>('POST', '/unsubscribe', { user, channel }).then(
      (r) => notice(`Unsubscribed ${r.unsubscribed} connection(s) of ${user} from ${channel}.`),
      (err) => showError('console-error', err),
    );
  });
}

wire();
call<{ csrf: string }>('GET', '/session').then(
  (r) => signedIn(r.csrf),
  () => signedOut(),
);
