/**
 * The sign-in card and the header's "signed in as" part, the same on every page: a name for the
 * demo sign-in, or a pasted JWT. The page gets `onSignedIn(session)` once signed in (also right
 * away when the tab already has a session) and `onSignedOut()` after "Sign out".
 */
import { demoSignIn, loadSession, saveSession, tokenSession, type Session } from './session.js';

export interface SignInCallbacks {
  onSignedIn(session: Session): void;
  onSignedOut(): void;
}

/** Holds the current session; the Chorus client's token source reads it. */
export interface SessionHolder {
  session: Session | undefined;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node as T;
}

export function showError(node: HTMLElement, message: string | undefined): void {
  node.textContent = message ?? '';
  node.hidden = !message;
}

export function setupSignIn(callbacks: SignInCallbacks): SessionHolder {
  const holder: SessionHolder = { session: undefined };
  const card = byId('signin');
  const form = byId<HTMLFormElement>('signin-form');
  const name = byId<HTMLInputElement>('name');
  const button = byId<HTMLButtonElement>('signin-button');
  const tokenForm = byId<HTMLFormElement>('token-form');
  const token = byId<HTMLTextAreaElement>('token');
  const error = byId('signin-error');
  const header = byId('session');
  const meName = byId('me-name');

  function enter(session: Session): void {
    holder.session = session;
    saveSession(session);
    meName.textContent = session.name;
    card.hidden = true;
    header.hidden = false;
    callbacks.onSignedIn(session);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = name.value.trim();
    if (!value) return;
    button.disabled = true;
    showError(error, undefined);
    demoSignIn(value).then(enter, (err: Error) => showError(error, err.message)).finally(() => (button.disabled = false));
  });

  tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    showError(error, undefined);
    try {
      enter(tokenSession(token.value.trim()));
    } catch (err) {
      showError(error, (err as Error).message);
    }
  });

  byId('signout').addEventListener('click', () => {
    holder.session = undefined;
    saveSession(undefined);
    header.hidden = true;
    card.hidden = false;
    callbacks.onSignedOut();
    name.focus();
  });

  const restored = loadSession();
  // After this function returns, so callers' `const holder = setupSignIn(...)` is assigned before
  // their onSignedIn runs (their token source reads it).
  if (restored) queueMicrotask(() => enter(restored));
  else card.hidden = false;
  return holder;
}
