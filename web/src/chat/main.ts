/**
 * The chat page's DOM: rooms, messages (with "seen by"), presence, typing. All Chorus wiring is
 * in ./chorus.ts. User-provided text is only ever written with textContent.
 */
import { byId, setupSignIn, showError } from '../signin.js';
import { socketUrl, tokenSource, type Session } from '../session.js';
import { Chat, LOBBY, type ChatMessage, type ChatRoom, type Member, type Receipt } from './chorus.js';

const el = {
  state: byId('state'),
  reconnect: byId<HTMLButtonElement>('reconnect'),
  chat: byId('chat'),
  rooms: byId('rooms'),
  roomForm: byId<HTMLFormElement>('room-form'),
  roomName: byId<HTMLInputElement>('room-name'),
  roomError: byId('room-error'),
  roomTitle: byId('room-title'),
  channelName: byId('channel-name'),
  messages: byId('messages'),
  typing: byId('typing'),
  sendForm: byId<HTMLFormElement>('send-form'),
  text: byId<HTMLInputElement>('text'),
  sendError: byId('send-error'),
  members: byId('members'),
  memberCount: byId('member-count'),
};

let chat: Chat | undefined;
let room: ChatRoom | undefined;
let me: Session | undefined;
let loadingOlder = false;
let historyStart = false;

const holder = setupSignIn({ onSignedIn: start, onSignedOut: stop });

// ---------- connection ----------

function start(session: Session): void {
  me = session;
  el.chat.hidden = false;
  chat = new Chat({ url: socketUrl('/ws'), getToken: tokenSource(holder), user: session.user });
  chat.on('state', (state) => setState(state));
  chat.on('connected', (count) => {
    el.state.dataset.connects = String(count);
    el.state.title = count > 1 ? `reconnected ${count - 1}×` : '';
  });
  chat.on('rooms', renderRooms);
  setState('connecting');
  chat.start().catch((err: Error) => showError(el.sendError, `Could not load the rooms: ${err.message}`));
  void switchRoom(decodeURIComponent(location.hash.slice(1)) || LOBBY);
  el.text.focus();
}

function stop(): void {
  void room?.close();
  chat?.close();
  room = undefined;
  chat = undefined;
  me = undefined;
  el.chat.hidden = true;
  el.messages.replaceChildren();
  renderMembers([]);
  renderTyping([]);
}

function setState(state: string): void {
  el.state.dataset.state = state;
  el.state.textContent = state;
  el.reconnect.hidden = state !== 'disconnected';
}

// ---------- rooms ----------

function renderRooms(): void {
  if (!chat) return;
  el.rooms.replaceChildren(
    ...chat.rooms().map((r) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'room';
      button.dataset.room = r.id;
      button.textContent = `# ${r.title}`;
      if (room?.id === r.id) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => void switchRoom(r.id));
      li.append(button);
      return li;
    }),
  );
}

async function switchRoom(id: string): Promise<void> {
  if (!chat || room?.id === id) return;
  const previous = room;
  const current = chat.openRoom(id);
  room = current;
  history.replaceState(null, '', id === LOBBY ? location.pathname : `#${encodeURIComponent(id)}`);
  await previous?.close();
  if (room !== current) return; // switched again meanwhile
  el.messages.replaceChildren();
  historyStart = false;
  renderMembers([]);
  renderTyping([]);
  showError(el.sendError, undefined);
  el.roomTitle.textContent = `# ${chat.rooms().find((r) => r.id === id)?.title ?? id}`;
  el.channelName.textContent = current.channel;
  renderRooms();
  current.on('messages', ({ messages, older }) => (older ? prependMessages(messages) : appendMessages(messages)));
  current.on('reset', () => {
    el.messages.replaceChildren();
    addSystemLine('Some messages could not be recovered after a reconnect: reloaded the room.');
  });
  current.on('members', renderMembers);
  current.on('join', (m) => m.user !== me?.user && addSystemLine(`${m.name} joined`));
  current.on('leave', (m) => addSystemLine(`${m.name} left`));
  current.on('typing', renderTyping);
  current.on('receipts', renderReceipts);
  try {
    await current.open();
    await fillViewport();
  } catch (err) {
    if (room === current) showError(el.sendError, `Could not open the room: ${(err as Error).message}`);
  }
}

el.roomForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const title = el.roomName.value.trim();
  if (!title || !chat) return;
  showError(el.roomError, undefined);
  chat.createRoom(title).then(
    (r) => {
      el.roomName.value = '';
      void switchRoom(r.id);
    },
    (err: Error) => showError(el.roomError, err.message),
  );
});

// ---------- messages ----------

function messageItem(m: ChatMessage): HTMLLIElement {
  const li = document.createElement('li');
  li.className = 'message';
  if (m.user !== undefined && m.user === me?.user) li.classList.add('mine');
  li.dataset.offset = String(m.offset);
  li.dataset.epoch = m.epoch;
  if (m.user) li.dataset.user = m.user;
  const meta = document.createElement('div');
  meta.className = 'meta';
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = m.name;
  const time = document.createElement('time');
  const when = new Date(m.time);
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  meta.append(author, time);
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = m.text;
  li.append(meta, body);
  return li;
}

function nearBottom(): boolean {
  const box = el.messages;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

function appendMessages(messages: ChatMessage[]): void {
  if (messages.length === 0) return;
  const stick = nearBottom() || messages.some((m) => m.user === me?.user);
  el.messages.append(...messages.map(messageItem));
  if (stick) el.messages.scrollTop = el.messages.scrollHeight;
  markRead();
}

function prependMessages(messages: ChatMessage[]): void {
  const before = el.messages.scrollHeight;
  el.messages.prepend(...messages.map(messageItem));
  el.messages.scrollTop += el.messages.scrollHeight - before;
}

/** Pages back on scroll-up; marks the history's start once nothing older is left. */
async function loadOlder(): Promise<void> {
  if (!room || loadingOlder || historyStart) return;
  loadingOlder = true;
  const current = room;
  try {
    const count = await current.loadOlder();
    if (count === 0 && current === room) {
      historyStart = true;
      const li = document.createElement('li');
      li.className = 'system history-start';
      li.textContent = `This is the start of ${el.roomTitle.textContent ?? 'the room'}'s history.`;
      el.messages.prepend(li);
    }
  } catch (err) {
    showError(el.sendError, `Could not load older messages: ${(err as Error).message}`);
  } finally {
    loadingOlder = false;
  }
}

/** Loads older pages until the list can scroll (so scrolling up can ask for more). */
async function fillViewport(): Promise<void> {
  while (room && !historyStart && el.messages.scrollHeight <= el.messages.clientHeight) await loadOlder();
  el.messages.scrollTop = el.messages.scrollHeight;
}

el.messages.addEventListener('scroll', () => {
  if (el.messages.scrollTop < 64) void loadOlder();
  if (nearBottom()) markRead();
});

function addSystemLine(text: string): void {
  const li = document.createElement('li');
  li.className = 'system';
  li.textContent = text;
  const stick = nearBottom();
  el.messages.append(li);
  if (stick) el.messages.scrollTop = el.messages.scrollHeight;
}

// ---------- receipts ----------

/** Tells the room the newest message is read, when the user can see it. */
function markRead(): void {
  if (!room || document.visibilityState !== 'visible' || !nearBottom()) return;
  const items = el.messages.querySelectorAll<HTMLElement>('li.message[data-offset]');
  const last = items[items.length - 1];
  if (last?.dataset.offset === undefined || last.dataset.epoch === undefined) return;
  room.markRead({ offset: Number(last.dataset.offset), epoch: last.dataset.epoch });
}

document.addEventListener('visibilitychange', markRead);

function renderReceipts(receipts: Receipt[]): void {
  for (const node of el.messages.querySelectorAll('.seen')) node.remove();
  const byOffset = new Map<number, Receipt[]>();
  for (const r of receipts) byOffset.set(r.offset, [...(byOffset.get(r.offset) ?? []), r]);
  for (const [offset, readers] of byOffset) {
    const li = el.messages.querySelector<HTMLElement>(`li.message[data-offset="${offset}"]`);
    // The author has obviously seen their own message.
    const names = readers.filter((r) => r.user !== li?.dataset.user).map((r) => r.name);
    if (!li || names.length === 0) continue;
    const seen = document.createElement('div');
    seen.className = 'seen';
    seen.textContent = `Seen by ${names.sort((a, b) => a.localeCompare(b)).join(', ')}`;
    li.append(seen);
  }
}

// ---------- presence and typing ----------

function renderMembers(list: Member[]): void {
  el.members.replaceChildren(
    ...[...list]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((m) => {
        const li = document.createElement('li');
        li.className = 'member';
        if (m.user === me?.user) li.classList.add('me');
        li.dataset.user = m.user;
        li.title = m.user;
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = m.name;
        const conns = document.createElement('span');
        conns.className = 'conns';
        conns.textContent = m.connections > 1 ? `${m.connections} tabs` : '';
        li.append(name, conns);
        return li;
      }),
  );
  el.memberCount.textContent = String(list.length);
}

function renderTyping(names: string[]): void {
  el.typing.textContent =
    names.length === 0
      ? ''
      : names.length === 1
        ? `${names[0]} is typing…`
        : names.length === 2
          ? `${names[0]} and ${names[1]} are typing…`
          : `${names.length} people are typing…`;
}

// ---------- sending ----------

el.sendForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = el.text.value.trim();
  if (!text || !room) return;
  el.text.value = '';
  showError(el.sendError, undefined);
  room.send(text).catch((err: Error & { code?: string }) => {
    if (!el.text.value) el.text.value = text;
    showError(el.sendError, `Not sent: ${err.message}${err.code ? ` (${err.code})` : ''}`);
  });
});

el.text.addEventListener('input', () => room?.typing(el.text.value.trim() !== ''));
el.text.addEventListener('blur', () => room?.typing(false));
el.reconnect.addEventListener('click', () => chat?.client.connect());
