/**
 * The chat's Chorus wiring, apart from the DOM (web/src/chat/main.ts draws it). Copy this.
 *
 * Channels (the standalone's default namespaces allow all three):
 * - `chat:<room>`: the messages `{text}` (history, presence with join/leave); typing indicators
 *   are ephemeral publications on it (`Subscription.startTyping`).
 * - `rooms:index`: the room list, one publication `{id, title}` per created room, kept as
 *   history. A page reads it and subscribes from its top (web/src/channel-log.ts).
 * - `receipts:<room>`: read receipts. A member publishes `{offset, epoch}` = "I have read the
 *   room up to this message"; each member's newest receipt is their last-read position, and
 *   the server stamps who published it, so nobody can speak for someone else. New members read
 *   the recent receipts from history.
 *
 * Messages: the newest page from history, then a subscription with `since` (no overlap, no
 * gap, nothing de-duplicated here), older pages on demand by offset. Presence: one `presence`
 * request per (re)subscribe, then join/leave events; never a request per event.
 */
import { ChorusClient, Emitter, type ClientState, type MessageData, type PresenceMember, type StreamPosition, type Subscription } from '../../../src/client/index.js';
import { openChannelLog, readBefore } from '../channel-log.js';
import { displayName } from '../session.js';

/** The room everyone starts in. */
export const LOBBY = 'lobby';
/** Messages per history page (initial and each scroll-up). */
export const MESSAGE_PAGE = 50;
/** Receipts read when a room opens (the namespace keeps at least this many). */
const RECEIPT_HISTORY = 100;
/** Rooms read from `rooms:index` (its namespace's history size). */
const ROOM_HISTORY = 200;
/** A member's receipt is sent at most this often, in ms. */
const RECEIPT_INTERVAL_MS = 500;
/** Room ids: what goes after `chat:`. */
const ROOM_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

export interface RoomInfo {
  id: string;
  title: string;
}

export interface ChatMessage {
  offset: number;
  epoch: string;
  text: string;
  /** The publisher's user id (absent for publications from the server or the HTTP API). */
  user: string | undefined;
  name: string;
  /** ms since the Unix epoch, when the server accepted it. */
  time: number;
}

export interface Member {
  user: string;
  name: string;
  connections: number;
}

export interface Receipt {
  user: string;
  name: string;
  /** The offset of the newest message this member has read. */
  offset: number;
  /** The room stream's epoch that offset belongs to. */
  epoch: string;
}

export interface ChatEvents {
  state: ClientState;
  /** Every successful (re)connect, with the count so far. */
  connected: number;
  /** The room list changed. */
  rooms: RoomInfo[];
}

export interface RoomEvents {
  /** Messages to add: `older` ones go above what is shown, the rest below, in offset order. */
  messages: { messages: ChatMessage[]; older: boolean };
  /** The room's history was lost or reloaded: clear what is shown (messages follow). */
  reset: undefined;
  members: Member[];
  join: Member;
  leave: Member;
  /** Names of the members typing now (not including you). */
  typing: string[];
  /** Every member's last-read position (not including you). */
  receipts: Receipt[];
}

/** A room id from a title: lower-case letters, digits and dashes. */
export function roomId(title: string): string {
  return title
    .normalize('NFKD')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 32);
}

function toMessage(m: MessageData): ChatMessage | undefined {
  const data = m.data as { text?: unknown } | null;
  if (m.offset === undefined || m.epoch === undefined || typeof data?.text !== 'string') return undefined;
  return { offset: m.offset, epoch: m.epoch, text: data.text, user: m.publisher?.user, name: displayName(m.publisher?.user, m.publisher?.info), time: m.time };
}

function messages(list: MessageData[]): ChatMessage[] {
  return list.map(toMessage).filter((m): m is ChatMessage => m !== undefined);
}

export interface ChatOptions {
  /** WebSocket URL, e.g. `ws://localhost:8080/ws`. */
  url: string;
  /** Called on every (re)connect. */
  getToken: () => Promise<string>;
  /** The signed-in user's id (to leave yourself out of "typing" and "seen by"). */
  user: string;
}

/** The connection, the room list, and the open room. */
export class Chat extends Emitter<ChatEvents> {
  readonly client: ChorusClient;
  readonly user: string;
  readonly #rooms = new Map<string, RoomInfo>([[LOBBY, { id: LOBBY, title: 'lobby' }]]);
  #connects = 0;

  constructor(options: ChatOptions) {
    super();
    this.user = options.user;
    this.client = new ChorusClient({ url: options.url, getToken: options.getToken });
    this.client.on('state', ({ newState }) => this.emitEvent('state', newState));
    this.client.on('connected', () => this.emitEvent('connected', ++this.#connects));
  }

  /** Connects and loads the room list. */
  async start(): Promise<void> {
    this.client.connect();
    const log = await openChannelLog<RoomInfo>(this.client, 'rooms:index', ROOM_HISTORY, (sub) => {
      sub.on('message', (m) => this.#addRoom(m.data));
    });
    for (const m of log.past) this.#addRoom(m.data, false);
    this.emitEvent('rooms', this.rooms());
  }

  rooms(): RoomInfo[] {
    const list = [...this.#rooms.values()].filter((r) => r.id !== LOBBY).sort((a, b) => a.title.localeCompare(b.title));
    return [this.#rooms.get(LOBBY) as RoomInfo, ...list];
  }

  /** Announces a room on `rooms:index` (a room that exists already is just returned). */
  async createRoom(title: string): Promise<RoomInfo> {
    const clean = title.trim().slice(0, 40);
    const id = roomId(clean);
    if (!ROOM_ID.test(id)) throw new Error('A room name needs at least one letter or digit.');
    const existing = this.#rooms.get(id);
    if (existing) return existing;
    const room = { id, title: clean };
    await this.client.publish('rooms:index', room);
    return room;
  }

  /** Opens a room (close the previous one first). */
  openRoom(id: string): ChatRoom {
    return new ChatRoom(this, id);
  }

  close(): void {
    this.client.close();
  }

  #addRoom(data: unknown, notify = true): void {
    const room = data as Partial<RoomInfo> | null;
    if (typeof room?.id !== 'string' || typeof room.title !== 'string' || !ROOM_ID.test(room.id)) return;
    if (this.#rooms.has(room.id)) return;
    this.#rooms.set(room.id, { id: room.id, title: room.title });
    if (notify) this.emitEvent('rooms', this.rooms());
  }
}

/** One open room: messages, presence, typing and receipts. */
export class ChatRoom extends Emitter<RoomEvents> {
  readonly id: string;
  readonly channel: string;
  readonly #chat: Chat;
  #messages: Subscription | undefined;
  #receipts: Subscription | undefined;
  /** The oldest message shown (paging goes back from it); undefined when the room is empty. */
  #oldest: StreamPosition | undefined;
  #epoch: string | undefined;
  readonly #members = new Map<string, Member>();
  readonly #typers = new Map<string, { name: string; timer: ReturnType<typeof setTimeout> }>();
  readonly #receiptsByUser = new Map<string, Receipt>();
  #readSent = 0;
  #readPending: StreamPosition | undefined;
  #readTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(chat: Chat, id: string) {
    super();
    this.#chat = chat;
    this.id = id;
    this.channel = `chat:${id}`;
  }

  /** Loads the newest messages and receipts and subscribes to both. */
  async open(): Promise<void> {
    await Promise.all([this.#openMessages(), this.#openReceipts()]);
  }

  /** Loads the page of messages before the oldest shown. Resolves with how many (0: nothing older). */
  async loadOlder(): Promise<number> {
    if (this.#oldest === undefined || this.#oldest.offset <= 1) return 0;
    const older = messages(await readBefore(this.#chat.client, this.channel, this.#oldest, MESSAGE_PAGE));
    if (this.#closed || older.length === 0) return 0;
    this.#oldest = { offset: older[0]!.offset, epoch: this.#oldest.epoch };
    this.emitEvent('messages', { messages: older, older: true });
    return older.length;
  }

  async send(text: string): Promise<void> {
    this.#messages?.stopTyping();
    await this.#chat.client.publish(this.channel, { text });
  }

  /** Call on every keystroke in the message box (the library throttles and auto-stops). */
  typing(active: boolean): void {
    if (active) this.#messages?.startTyping();
    else this.#messages?.stopTyping();
  }

  /** Call when the member has seen the message at `offset` (sent at most every 500 ms, only forward). */
  markRead(position: StreamPosition): void {
    if (position.epoch !== this.#epoch || position.offset <= this.#readSent) return;
    this.#readPending = position;
    if (this.#readTimer !== undefined) return;
    this.#flushRead();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#readTimer);
    for (const t of this.#typers.values()) clearTimeout(t.timer);
    this.#typers.clear();
    const client = this.#chat.client;
    await Promise.all(
      [this.#messages, this.#receipts].map((s) => (s ? client.removeSubscription(s).catch(() => undefined) : undefined)),
    );
  }

  #flushRead(): void {
    const position = this.#readPending;
    this.#readPending = undefined;
    if (position === undefined || position.offset <= this.#readSent || this.#closed) return;
    this.#readSent = position.offset;
    this.#chat.client.publish(`receipts:${this.id}`, position).catch(() => {
      this.#readSent = 0; // try again with the next one
    });
    this.#readTimer = setTimeout(() => {
      this.#readTimer = undefined;
      this.#flushRead();
    }, RECEIPT_INTERVAL_MS);
  }

  async #openMessages(): Promise<void> {
    const client = this.#chat.client;
    const log = await openChannelLog(client, this.channel, MESSAGE_PAGE, (sub) => {
      this.#messages = sub;
      sub.on('message', (m) => {
        if (m.ephemeral) this.#onTyping(m);
        else this.#onLive(m);
      });
      sub.on('subscribed', () => this.#fetchPresence());
      sub.on('join', (e) => this.#onJoin(e.user, e.info));
      sub.on('leave', (e) => this.#onLeave(e.user));
      sub.on('recovery-failed', () => this.#reload());
    });
    if (this.#closed) return void client.removeSubscription(log.subscription);
    this.#epoch = log.top.epoch;
    const past = messages(log.past);
    this.#oldest = past[0] ? { offset: past[0].offset, epoch: log.top.epoch } : { offset: log.top.offset + 1, epoch: log.top.epoch };
    this.emitEvent('messages', { messages: past, older: false });
    this.#emitReceipts();
  }

  async #reload(): Promise<void> {
    if (this.#closed) return;
    if (this.#messages) await this.#chat.client.removeSubscription(this.#messages).catch(() => undefined);
    this.emitEvent('reset', undefined);
    await this.#openMessages();
  }

  #onLive(m: MessageData): void {
    const message = toMessage(m);
    if (message === undefined) return;
    if (this.#oldest === undefined || this.#oldest.offset > message.offset) this.#oldest = { offset: message.offset, epoch: message.epoch };
    if (message.user) this.#stopTyper(message.user);
    this.emitEvent('messages', { messages: [message], older: false });
  }

  async #fetchPresence(): Promise<void> {
    try {
      const { members } = await this.#chat.client.presence(this.channel);
      if (this.#closed) return;
      this.#members.clear();
      for (const m of members) this.#members.set(m.user, this.#member(m));
      this.emitEvent('members', [...this.#members.values()]);
    } catch {
      // Disconnected meanwhile: the next subscribe fetches it again.
    }
  }

  #member(m: Pick<PresenceMember, 'user' | 'info'> & { connections?: number }): Member {
    return { user: m.user, name: displayName(m.user, m.info), connections: m.connections ?? 1 };
  }

  #onJoin(user: string, info: Record<string, unknown> | undefined): void {
    if (this.#members.has(user)) return;
    const member = this.#member({ user, info });
    this.#members.set(user, member);
    this.emitEvent('join', member);
    this.emitEvent('members', [...this.#members.values()]);
  }

  #onLeave(user: string): void {
    const member = this.#members.get(user);
    if (!member) return;
    this.#members.delete(user);
    this.#stopTyper(user);
    this.emitEvent('leave', member);
    this.emitEvent('members', [...this.#members.values()]);
  }

  #onTyping(m: MessageData): void {
    const user = m.publisher?.user;
    const data = m.data as { type?: unknown; typing?: unknown } | null;
    if (!user || user === this.#chat.user || data?.type !== 'typing') return;
    if (data.typing !== true) return this.#stopTyper(user);
    clearTimeout(this.#typers.get(user)?.timer);
    // The sender's library sends a stop after 5 s without keystrokes; this covers a lost one.
    const timer = setTimeout(() => this.#stopTyper(user), 6000);
    this.#typers.set(user, { name: displayName(user, m.publisher?.info), timer });
    this.#emitTyping();
  }

  #stopTyper(user: string): void {
    const typer = this.#typers.get(user);
    if (!typer) return;
    clearTimeout(typer.timer);
    this.#typers.delete(user);
    this.#emitTyping();
  }

  #emitTyping(): void {
    this.emitEvent('typing', [...this.#typers.values()].map((t) => t.name));
  }

  async #openReceipts(): Promise<void> {
    const log = await openChannelLog(this.#chat.client, `receipts:${this.id}`, RECEIPT_HISTORY, (sub) => {
      this.#receipts = sub;
      sub.on('message', (m) => {
        if (this.#onReceipt(m)) this.#emitReceipts();
      });
    });
    if (this.#closed) return void this.#chat.client.removeSubscription(log.subscription);
    for (const m of log.past) this.#onReceipt(m);
    this.#emitReceipts();
  }

  /** Records a receipt; true if it moved someone's position. */
  #onReceipt(m: MessageData): boolean {
    const user = m.publisher?.user;
    const data = m.data as Partial<StreamPosition> | null;
    if (!user || typeof data?.offset !== 'number' || typeof data.epoch !== 'string') return false;
    if (user === this.#chat.user) {
      this.#readSent = Math.max(this.#readSent, data.offset);
      return false;
    }
    const previous = this.#receiptsByUser.get(user);
    if (previous && previous.offset >= data.offset) return false;
    this.#receiptsByUser.set(user, { user, name: displayName(user, m.publisher?.info), offset: data.offset, epoch: data.epoch });
    return true;
  }

  #emitReceipts(): void {
    // Receipts of another epoch point into a history that no longer exists.
    this.emitEvent('receipts', [...this.#receiptsByUser.values()].filter((r) => r.epoch === this.#epoch));
  }
}
