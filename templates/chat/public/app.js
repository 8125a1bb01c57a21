// @ts-check
/**
 * The chat page. The pattern to copy:
 * - history first, then subscribe with `since` = the history's top position: the server sends
 *   what was published in between, then live messages, each once and in order. After a
 *   reconnect the client resubscribes from its last position by itself: no de-duplication here.
 * - presence: one request when the subscription is (re)established, then join/leave events.
 * - typing: `startTyping()` on every keystroke (the library throttles and stops it by itself).
 */
import { ChorusClient } from '/chorus/client/index.js';

const CHANNEL = 'chat:lobby';
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const text = /** @type {HTMLInputElement} */ ($('text'));

/** @type {{ name: string, user: string } | undefined} */
let me;
/** @type {Map<string, string>} user -> name */
const members = new Map();
/** @type {Map<string, { name: string, timer: ReturnType<typeof setTimeout> }>} */
const typers = new Map();

async function signIn(/** @type {string} */ name) {
  const res = await fetch('/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  if (!res.ok) throw new Error(`sign-in failed (HTTP ${res.status})`);
  return /** @type {{ token: string, user: string }} */ (await res.json());
}

const nameOf = (/** @type {string | undefined} */ user, /** @type {any} */ info) => (typeof info?.name === 'string' ? info.name : (user ?? 'server'));

function line(/** @type {string} */ author, /** @type {string} */ body, system = false) {
  const li = document.createElement('li');
  if (system) li.className = 'system';
  const who = document.createElement('span');
  who.className = 'author';
  who.textContent = author;
  const what = document.createElement('span');
  what.className = 'text';
  what.textContent = body;
  li.append(...(system ? [what] : [who, what]));
  $('messages').append(li);
  $('messages').scrollTop = $('messages').scrollHeight;
}

function showMessage(/** @type {import('chorus/client').MessageData} */ m) {
  const data = /** @type {{ text?: unknown }} */ (m.data);
  if (typeof data?.text === 'string') line(nameOf(m.publisher?.user, m.publisher?.info), data.text);
}

function renderMembers() {
  $('members').replaceChildren(
    ...[...members.values()].sort().map((name) => Object.assign(document.createElement('li'), { textContent: name })),
  );
  $('count').textContent = String(members.size);
}

function renderTyping() {
  const names = [...typers.values()].map((t) => t.name);
  $('typing').textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

function stopTyper(/** @type {string} */ user) {
  clearTimeout(typers.get(user)?.timer);
  if (typers.delete(user)) renderTyping();
}

async function start(/** @type {string} */ name) {
  const first = await signIn(name);
  me = { name, user: first.user };
  let token = first.token;
  const client = new ChorusClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
    // The first connect uses the token we have; later ones (reconnects) get a fresh one.
    getToken: async () => {
      const t = token;
      token = '';
      return t || (await signIn(name)).token;
    },
  });
  client.on('state', ({ newState }) => {
    $('state').textContent = newState;
    $('state').dataset.state = newState;
  });
  client.connect();

  // 1. History (newest 50, newest first), 2. subscribe from its top.
  const history = await client.history(CHANNEL, { limit: 50, reverse: true });
  for (const m of [...history.publications].reverse()) showMessage(m);
  const room = client.subscribe(CHANNEL, { since: { offset: history.offset, epoch: history.epoch } });

  room.on('message', (m) => {
    const data = /** @type {{ type?: unknown, typing?: unknown }} */ (m.data);
    const user = m.publisher?.user;
    if (!m.ephemeral) {
      if (user) stopTyper(user);
      showMessage(m);
    } else if (data?.type === 'typing' && user && user !== me?.user) {
      stopTyper(user);
      if (data.typing === true) {
        typers.set(user, { name: nameOf(user, m.publisher?.info), timer: setTimeout(() => stopTyper(user), 6000) });
        renderTyping();
      }
    }
  });
  room.on('subscribed', async () => {
    const { members: list } = await room.presence();
    members.clear();
    for (const m of list) members.set(m.user, nameOf(m.user, m.info));
    renderMembers();
  });
  room.on('join', (e) => {
    members.set(e.user, nameOf(e.user, e.info));
    renderMembers();
  });
  room.on('leave', (e) => {
    members.delete(e.user);
    stopTyper(e.user);
    renderMembers();
  });
  room.on('recovery-failed', () => line('', 'Some messages were lost while you were away.', true));

  text.addEventListener('input', () => (text.value ? room.startTyping() : room.stopTyping()));
  $('send').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    text.value = '';
    room.stopTyping();
    room.publish({ text: value }).catch((err) => line('', `Not sent: ${err.message}`, true));
  });
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = /** @type {HTMLInputElement} */ ($('name')).value.trim();
  if (!name) return;
  $('join').hidden = true;
  $('room').hidden = false;
  text.focus();
  start(name).catch((err) => line('', String(err.message ?? err), true));
});
