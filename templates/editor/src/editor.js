// @ts-check
/**
 * The editor page (bundled by `npm run build` into public/editor.js): CodeMirror 6 bound to a
 * shared Y.Text with y-codemirror.next, synced by y-websocket's `WebsocketProvider` against
 * Chorus's `/yjs` endpoint with the user's token. Cursors carry each user's name and colour
 * through awareness. The document is `doc:notes`, or the one in the URL's hash.
 */
import { basicSetup, EditorView } from 'codemirror';
import { yCollab } from 'y-codemirror.next';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';

const COLORS = ['#4f5bd5', '#1f9d55', '#d64545', '#c98a04', '#0e8fb3', '#9c4dcc'];
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

async function signIn(/** @type {string} */ name) {
  const res = await fetch('/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  if (!res.ok) throw new Error(`sign-in failed (HTTP ${res.status})`);
  return /** @type {{ token: string, user: string }} */ (await res.json());
}

async function open(/** @type {string} */ name) {
  const { token } = await signIn(name);
  const documentName = decodeURIComponent(location.hash.slice(1)) || 'doc:notes';
  $('doc').textContent = documentName;
  const ydoc = new Y.Doc();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const provider = new WebsocketProvider(`${scheme}://${location.host}/yjs`, documentName, ydoc, { params: { token } });
  // Reconnects reuse provider.params: refresh the token for them.
  provider.on('connection-close', () => {
    signIn(name).then(({ token: fresh }) => (provider.params = { token: fresh }));
  });
  provider.on('status', ({ status }) => {
    $('status').textContent = status;
    $('status').dataset.state = status;
  });
  const color = COLORS[Math.floor(Math.random() * COLORS.length)] ?? COLORS[0];
  provider.awareness.setLocalStateField('user', { name, color, colorLight: `${color}33` });

  const ytext = ydoc.getText('codemirror');
  new EditorView({
    parent: $('editor'),
    extensions: [basicSetup, EditorView.lineWrapping, yCollab(ytext, provider.awareness)],
  });
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = /** @type {HTMLInputElement} */ ($('name')).value.trim();
  if (!name) return;
  $('join').hidden = true;
  $('page').hidden = false;
  open(name).catch((err) => ($('status').textContent = String(err.message ?? err)));
});
