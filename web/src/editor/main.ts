/**
 * The editor page: a CodeMirror 6 editor bound to a shared Yjs document with y-codemirror.next,
 * synced by the unmodified `WebsocketProvider` from y-websocket against Chorus's y-websocket
 * endpoint `ws(s)://<host>/yjs/<document>` with the user's token as `?token=` (the same JWT as
 * the chat's). Remote cursors and selections show each user's name and colour through awareness.
 * The document is `doc:welcome`, or the one named in the URL's hash (`/editor#doc:notes`).
 */
import { basicSetup, EditorView } from 'codemirror';
import { yCollab } from 'y-codemirror.next';
import { WebsocketProvider } from 'y-websocket';
import * as Y from 'yjs';
import { byId, setupSignIn, showError } from '../signin.js';
import { socketUrl, tokenSource, type Session } from '../session.js';

const DEFAULT_DOCUMENT = 'doc:welcome';
/** Cursor colours: [caret and name tag, selection background]. */
const COLORS: ReadonlyArray<readonly [string, string]> = [
  ['#4f5bd5', '#4f5bd533'],
  ['#1f9d55', '#1f9d5533'],
  ['#d64545', '#d6454533'],
  ['#c98a04', '#c98a0433'],
  ['#0e8fb3', '#0e8fb333'],
  ['#9c4dcc', '#9c4dcc33'],
];

const el = {
  page: byId('editor-page'),
  title: byId('doc-title'),
  sync: byId('sync'),
  peers: byId('peers'),
  editor: byId('editor'),
  error: byId('editor-error'),
  state: byId('state'),
};

let teardown: (() => void) | undefined;

/** A colour per user id, stable across reloads. */
function colorOf(user: string): readonly [string, string] {
  let hash = 0;
  for (const ch of user) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return COLORS[hash % COLORS.length] ?? COLORS[0]!;
}

function setStatus(status: string): void {
  el.sync.dataset.state = status;
  el.sync.textContent = status;
  el.state.dataset.state = status;
  el.state.textContent = status;
}

function open(session: Session): void {
  const name = decodeURIComponent(location.hash.slice(1)) || DEFAULT_DOCUMENT;
  el.page.hidden = false;
  el.title.textContent = name;
  const getToken = tokenSource(holder);
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(socketUrl('/yjs'), name, ydoc, { params: { token: session.token } });
  // A reconnect uses the provider's current params: keep the token fresh for it.
  provider.on('connection-close', () => {
    getToken().then(
      (token) => (provider.params = { token }),
      () => provider.disconnect(),
    );
  });
  provider.on('status', ({ status }) => setStatus(provider.synced ? 'connected' : status));
  provider.on('sync', (synced) => synced && setStatus('connected'));
  provider.on('connection-error', () => showError(el.error, 'The document server refused or dropped the connection; retrying.'));

  const [color, colorLight] = colorOf(session.user);
  provider.awareness.setLocalStateField('user', { name: session.name, color, colorLight, id: session.user });
  const renderPeers = (): void => {
    const peers = [...provider.awareness.getStates().values()]
      .map((s) => (s as { user?: { name?: unknown; color?: unknown } }).user)
      .filter((u): u is { name: string; color: string } => typeof u?.name === 'string' && typeof u.color === 'string');
    el.peers.replaceChildren(
      ...peers.map((u) => {
        const li = document.createElement('li');
        li.className = 'peer';
        li.textContent = u.name;
        li.style.setProperty('--peer', u.color);
        return li;
      }),
    );
  };
  provider.awareness.on('change', renderPeers);
  renderPeers();

  const ytext = ydoc.getText('codemirror');
  const view = new EditorView({
    parent: el.editor,
    extensions: [basicSetup, EditorView.lineWrapping, yCollab(ytext, provider.awareness, { undoManager: new Y.UndoManager(ytext) })],
  });
  teardown = () => {
    view.destroy();
    provider.destroy();
    ydoc.destroy();
    el.page.hidden = true;
  };
}

const holder = setupSignIn({
  onSignedIn: open,
  onSignedOut() {
    teardown?.();
    teardown = undefined;
  },
});

window.addEventListener('hashchange', () => {
  if (!holder.session) return;
  teardown?.();
  open(holder.session);
});
