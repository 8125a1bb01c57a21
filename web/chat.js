// Chorus chat demo. Plain ES module, no bundler: the client comes from /lib/client/ (dist/).
// All user-provided text is written with textContent, never innerHTML.

const CHANNEL = 'chat:lobby';
const TYPING_SHOW_MS = 6000; // hide someone's indicator if no update arrives for this long
const STORAGE_KEY = 'chorus-demo-session';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  session: $('session'),
  state: $('state'),
  reconnect: $('reconnect'),
  meName: $('me-name'),
  signout: $('signout'),
  signin: $('signin'),
  signinForm: /** @type {HTMLFormElement} */ ($('signin-form')),
  name: /** @type {HTMLInputElement} */ ($('name')),
  signinButton: /** @type {HTMLButtonElement} */ ($('signin-button')),
  tokenForm: /** @type {HTMLFormElement} */ ($('token-form')),
  token: /** @type {HTMLTextAreaElement} */ ($('token')),
  signinError: $('signin-error'),
  loading: $('loading'),
  chat: $('chat'),
  messages: $('messages'),
  typing: $('typing'),
  sendForm: /** @type {HTMLFormElement} */ ($('send-form')),
  text: /** @type {HTMLInputElement} */ ($('text')),
  sendError: $('send-error'),
  members: $('members'),
  memberCount: $('member-count'),
};

/** @type {{ token: string, user: string, name: string, exp?: number, demoName?: string } | null} */
let session = null;
let client = null;
let sub = null;
/** user -> { name, connections } */
const members = new Map();
/** user -> { name, timer } */
const typers = new Map();
/** offsets already rendered, per epoch, so recovery or history never shows a message twice */
const seen = new Set();
let historyLoaded = false;
let presenceTimer = 0;
let connects = 0; // successful connects of this page (shown as the state badge's data-connects)

// ---------- helpers ----------

function show(node, visible) {
  node.hidden = !visible;
}

function showError(node, message) {
  node.textContent = message || '';
  show(node, Boolean(message));
}

/** Decodes a JWT payload (no verification: the server does that). */
function decodeToken(token) {
  const part = token.split('.')[1];
  if (!part) throw new Error('not a JWT');
  const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
  const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function displayName(user, info) {
  const name = info && typeof info.name === 'string' && info.name.trim() ? info.name : user;
  return name || 'server';
}

function stateName(e) {
  if (typeof e === 'string') return e;
  if (e && typeof e.newState === 'string') return e.newState;
  if (e && typeof e.state === 'string') return e.state;
  return client && typeof client.state === 'string' ? client.state : 'disconnected';
}

function saveSession() {
  try {
    if (session) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    /* storage may be unavailable (private mode); the session just does not survive reloads */
  }
}

function loadSession() {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw);
    if (!s || typeof s.token !== 'string') return null;
    if (s.exp && s.exp * 1000 < Date.now() && !s.demoName) return null;
    return s;
  } catch {
    return null;
  }
}

// ---------- sign-in ----------

async function demoSignIn(name) {
  const res = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (res.status === 404) {
    throw new Error('Demo sign-in is off on this server (a JWT key is configured). Sign in with a token instead.');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body?.error?.message || `sign-in failed (HTTP ${res.status})`);
  const payload = decodeToken(body.token);
  return { token: body.token, user: body.user, name: body.info?.name ?? name, exp: payload.exp, demoName: name };
}

function tokenSession(token) {
  let payload;
  try {
    payload = decodeToken(token);
  } catch {
    throw new Error('That does not look like a JWT.');
  }
  if (typeof payload.sub !== 'string' || !payload.sub) throw new Error('The token has no "sub" claim.');
  if (payload.exp && payload.exp * 1000 < Date.now()) throw new Error('The token has expired.');
  const info = payload.info || (payload.name ? { name: payload.name } : undefined);
  return { token, user: payload.sub, name: displayName(payload.sub, info), exp: payload.exp };
}

/** The client calls this on every (re)connect: a demo token close to expiry is replaced. */
async function getToken() {
  if (!session) throw new Error('signed out');
  if (session.demoName && session.exp && session.exp * 1000 - Date.now() < 60_000) {
    session = await demoSignIn(session.demoName);
    saveSession();
    el.meName.textContent = session.name;
  }
  return session.token;
}

// ---------- rendering ----------

function scrollToEnd() {
  el.messages.scrollTop = el.messages.scrollHeight;
}

function addSystemLine(text) {
  const li = document.createElement('li');
  li.className = 'system';
  li.textContent = text;
  el.messages.append(li);
  scrollToEnd();
}

function addMessage(m) {
  if (typeof m.offset === 'number') {
    const key = `${m.epoch}:${m.offset}`;
    if (seen.has(key)) return;
    seen.add(key);
  }
  const publisher = m.publisher;
  const user = publisher?.user;
  const data = m.data;
  const text = data && typeof data === 'object' && typeof data.text === 'string' ? data.text : JSON.stringify(data);

  const li = document.createElement('li');
  li.className = 'message';
  if (user && session && user === session.user) li.classList.add('mine');
  if (user) li.dataset.user = user;
  const meta = document.createElement('div');
  meta.className = 'meta';
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = user ? displayName(user, publisher.info) : 'server';
  const time = document.createElement('time');
  const when = typeof m.time === 'number' ? new Date(m.time) : new Date();
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  meta.append(author, time);
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  li.append(meta, body);
  if (user) clearTyper(user);
  if (typeof m.offset === 'number') {
    li.dataset.offset = String(m.offset);
    li.dataset.epoch = String(m.epoch);
    // History can arrive after live messages: keep offset order within the stream.
    const later = [...el.messages.querySelectorAll('li.message[data-offset]')].find(
      (other) => other.dataset.epoch === String(m.epoch) && Number(other.dataset.offset) > m.offset,
    );
    if (later) {
      el.messages.insertBefore(li, later);
      return;
    }
  }
  el.messages.append(li);
  scrollToEnd();
}

function renderMembers() {
  el.members.replaceChildren();
  const sorted = [...members.entries()].sort((a, b) => a[1].name.localeCompare(b[1].name));
  for (const [user, m] of sorted) {
    const li = document.createElement('li');
    li.className = 'member';
    if (session && user === session.user) li.classList.add('me');
    li.dataset.user = user;
    li.title = user;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = m.name;
    const conns = document.createElement('span');
    conns.className = 'conns';
    conns.textContent = m.connections > 1 ? `${m.connections} connections` : '';
    li.append(name, conns);
    el.members.append(li);
  }
  el.memberCount.textContent = String(members.size);
}

function renderTyping() {
  const names = [...typers.values()].map((t) => t.name);
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.length} people are typing…`;
  el.typing.textContent = text;
}

function clearTyper(user) {
  const t = typers.get(user);
  if (!t) return;
  clearTimeout(t.timer);
  typers.delete(user);
  renderTyping();
}

function onTyping(m) {
  const user = m.publisher?.user;
  if (!user || (session && user === session.user)) return;
  if (m.data.typing) {
    clearTimeout(typers.get(user)?.timer);
    const timer = setTimeout(() => clearTyper(user), TYPING_SHOW_MS);
    typers.set(user, { name: displayName(user, m.publisher.info), timer });
    renderTyping();
  } else {
    clearTyper(user);
  }
}

// ---------- presence ----------

async function refreshPresence() {
  if (!sub) return;
  try {
    const result = await sub.presence();
    members.clear();
    for (const m of result.members ?? []) {
      members.set(m.user, { name: displayName(m.user, m.info), connections: m.connections ?? 1 });
    }
    renderMembers();
  } catch {
    /* not subscribed yet, or disconnected: the next (re)subscribe refreshes it */
  }
}

/** Batches presence refreshes triggered by join/leave bursts into one request. */
function schedulePresence() {
  clearTimeout(presenceTimer);
  presenceTimer = setTimeout(refreshPresence, 150);
}

// ---------- typing (local) ----------
// The client throttles startTyping() (one event per few seconds) and sends the stop event by
// itself after a pause; the page only reports keystrokes and explicit stops.

function stopTyping() {
  if (sub) sub.stopTyping();
}

function onInput() {
  if (!sub) return;
  if (el.text.value.trim() === '') stopTyping();
  else sub.startTyping();
}

// ---------- history ----------

/** Loads the latest retained messages (newest 50), merged in offset order with live ones. */
async function loadHistory() {
  if (!sub || typeof sub.history !== 'function') return;
  try {
    const result = await sub.history({ limit: 50, reverse: true });
    for (const m of [...(result.publications ?? [])].reverse()) addMessage(m);
  } catch {
    /* history is optional for the page */
  }
}

// ---------- connection ----------

function setState(state) {
  el.state.dataset.state = state;
  el.state.textContent = state;
  show(el.reconnect, state === 'disconnected');
}

async function loadClientModule() {
  try {
    return await import('/lib/client/index.js');
  } catch (err) {
    console.error(err);
    throw new Error('Could not load the Chorus client from /lib/client/ (run `npm run build`).');
  }
}

async function start() {
  const { ChorusClient } = await loadClientModule();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  client = new ChorusClient({ url: `${scheme}//${location.host}/ws`, getToken });
  client.on('state', (e) => setState(stateName(e)));
  client.on('connected', () => {
    connects++;
    el.state.dataset.connects = String(connects);
    el.state.title = connects > 1 ? `reconnected ${connects - 1}×` : '';
    setState('connected');
    schedulePresence();
  });
  client.on('disconnected', (e) => {
    setState(stateName(client.state ?? 'disconnected'));
    if (e && e.reconnect === false && e.code !== 1000) {
      addSystemLine(`Disconnected${e.reason ? `: ${e.reason}` : ''} (code ${e.code}).`);
    }
  });

  sub = client.subscribe(CHANNEL);
  sub.on('message', (m) => {
    if (m.ephemeral && m.data && typeof m.data === 'object' && m.data.type === 'typing') onTyping(m);
    else if (!m.ephemeral) addMessage(m);
  });
  sub.on('join', (e) => {
    if (!members.has(e.user)) {
      members.set(e.user, { name: displayName(e.user, e.info), connections: 1 });
      renderMembers();
      if (!session || e.user !== session.user) addSystemLine(`${displayName(e.user, e.info)} joined`);
    }
    schedulePresence();
  });
  sub.on('leave', (e) => {
    const m = members.get(e.user);
    members.delete(e.user);
    renderMembers();
    clearTyper(e.user);
    addSystemLine(`${m ? m.name : displayName(e.user, e.info)} left`);
    schedulePresence();
  });
  sub.on('subscribed', () => {
    schedulePresence();
    if (!historyLoaded) {
      historyLoaded = true;
      loadHistory();
    }
  });
  sub.on('recovery-failed', () => {
    addSystemLine('Some messages could not be recovered after the reconnect; reloaded recent history.');
    loadHistory();
  });
  sub.on('error', (e) => console.warn('subscription error', e));

  setState('connecting');
  client.connect();
}

function enterChat() {
  el.meName.textContent = session.name;
  show(el.signin, false);
  show(el.session, true);
  show(el.chat, true);
  el.text.focus();
  start().catch((err) => {
    showError(el.sendError, err.message);
  });
}

function signOut() {
  stopTyping();
  if (client) client.close();
  client = null;
  sub = null;
  session = null;
  saveSession();
  members.clear();
  for (const t of typers.values()) clearTimeout(t.timer);
  typers.clear();
  seen.clear();
  historyLoaded = false;
  el.messages.replaceChildren();
  renderMembers();
  renderTyping();
  show(el.chat, false);
  show(el.session, false);
  show(el.signin, true);
  el.name.focus();
}

// ---------- wiring ----------

el.signinForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = el.name.value.trim();
  if (!name) return;
  el.signinButton.disabled = true;
  showError(el.signinError, '');
  try {
    session = await demoSignIn(name);
    saveSession();
    enterChat();
  } catch (err) {
    showError(el.signinError, err.message);
  } finally {
    el.signinButton.disabled = false;
  }
});

el.tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  showError(el.signinError, '');
  try {
    session = tokenSession(el.token.value.trim());
    saveSession();
    enterChat();
  } catch (err) {
    showError(el.signinError, err.message);
  }
});

el.sendForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = el.text.value.trim();
  if (!text || !sub) return;
  el.text.value = '';
  stopTyping();
  showError(el.sendError, '');
  try {
    await sub.publish({ text });
  } catch (err) {
    el.text.value = el.text.value || text;
    showError(el.sendError, `Not sent: ${err.message}${err.code ? ` (${err.code})` : ''}`);
  }
});

el.text.addEventListener('input', onInput);
el.text.addEventListener('blur', stopTyping);
el.signout.addEventListener('click', signOut);
el.reconnect.addEventListener('click', () => {
  if (client) client.connect();
});

const restored = loadSession();
if (restored) {
  session = restored;
  enterChat();
}
