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
import { Backoff } from '../../../src/client/index.js';
import { byId, setupSignIn, showError } from '../signin.js';
import { SignInError, socketUrl, tokenSource, type Session } from '../session.js';
import { PALETTE, paletteSlot, remoteCursors } from './remote-cursors.js';

const DEFAULT_DOCUMENT = 'doc:welcome';
/** Retrying a token that could not be had: full-jitter backoff between these, in ms. */
const TOKEN_RETRY_MIN_MS = 1000;
const TOKEN_RETRY_MAX_MS = 30_000;

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

const editorTheme = EditorView.theme({
  '&': { minHeight: '24rem', fontSize: '15px' },
  '&.cm-focused': { outline: 'none' },
  '.cm-scroller': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace', lineHeight: '1.55' },
  '.cm-content': { padding: '12px 0' },
});

function setStatus(status: string): void {
  el.sync.dataset.state = status;
  el.sync.textContent = status;
  el.state.dataset.state = status;
  el.state.textContent = status;
}

/**
 * A reconnect uses the provider's current params: keep the token in them fresh. When no token
 * can be had (offline, the sign-in endpoint unreachable), the provider stops (reconnecting with
 * a stale token would only be refused) and the token is retried with backoff; once one comes,
 * the provider connects again with it. Returns a function that stops the retries.
 */
function keepTokenFresh(provider: WebsocketProvider, getToken: () => Promise<string>): () => void {
  const backoff = new Backoff(TOKEN_RETRY_MIN_MS, TOKEN_RETRY_MAX_MS);
  let stopped = false;
  /** A renewal is running or waiting for its retry: closes meanwhile start no other. */
  let renewing = false;
  /** The provider was stopped here and must be connected again once a token comes. */
  let halted = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const renew = (): void => {
    retry = undefined;
    getToken().then(
      (token) => {
        if (stopped) return;
        renewing = false;
        backoff.reset();
        provider.params = { token };
        if (halted) {
          halted = false;
          provider.connect();
        }
      },
      (err: unknown) => {
        if (stopped) return;
        if (!halted) {
          halted = true;
          provider.disconnect();
        }
        if (err instanceof SignInError && err.code === 'SIGNED_OUT') return; // the page is torn down
        showError(el.error, 'Could not renew your sign-in (offline?); retrying.');
        retry = setTimeout(renew, backoff.next());
      },
    );
  };
  provider.on('connection-close', () => {
    if (renewing || stopped) return;
    renewing = true;
    renew();
  });
  return () => {
    stopped = true;
    clearTimeout(retry);
  };
}

function open(session: Session): void {
  const name = decodeURIComponent(location.hash.slice(1)) || DEFAULT_DOCUMENT;
  el.page.hidden = false;
  el.title.textContent = name;
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(socketUrl('/yjs'), name, ydoc, { params: { token: session.token } });
  // `holder` is read when a token is needed, not now: a session restored from storage opens the
  // editor from inside `setupSignIn`, before `holder` is assigned.
  const stopRenewing = keepTokenFresh(provider, () => tokenSource(holder)());
  provider.on('status', ({ status }) => setStatus(provider.synced ? 'connected' : status));
  provider.on('sync', (synced) => {
    if (!synced) return;
    setStatus('connected');
    showError(el.error, undefined);
  });
  provider.on('connection-error', () => showError(el.error, 'The document server refused or dropped the connection; retrying.'));

  const slot = paletteSlot(session.user);
  const [color, colorLight] = PALETTE[slot] ?? PALETTE[0]!;
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
        const known = PALETTE.findIndex(([c]) => c === u.color);
        li.classList.add(`peer-${known >= 0 ? known : 0}`);
        return li;
      }),
    );
  };
  provider.awareness.on('change', renderPeers);
  renderPeers();

  const ytext = ydoc.getText('codemirror');
  // CodeMirror writes its styles to a <style> element in a document, which the page's CSP
  // (no inline styles) blocks; in a shadow root it uses constructed style sheets instead.
  const root = el.editor.shadowRoot ?? el.editor.attachShadow({ mode: 'open' });
  const view = new EditorView({
    root,
    parent: root,
    extensions: [
      basicSetup,
      EditorView.lineWrapping,
      editorTheme,
      // Awareness is drawn by remoteCursors (class-based); yCollab only syncs text and undo.
      yCollab(ytext, null, { undoManager: new Y.UndoManager(ytext) }),
      remoteCursors(ytext, provider.awareness),
    ],
  });
  teardown = () => {
    stopRenewing();
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
