/*
 * lanchat chat page: one WebSocket, a timeline, the people list, and a
 * message box. No framework, no build step; the wire format is the one in
 * docs/PROTOCOL.md (frames welcome, history, offline, join, leave, message,
 * private, deleted, error).
 *
 * The file reads top to bottom:
 *
 *   1. State       Everything the page knows: my name, who is online, whom
 *                  I have talked with privately, the ids of the messages on
 *                  screen, the highest seq seen, whom I am writing to.
 *   2. Connection  connect() opens /ws and hands each JSON frame to its
 *                  handler in `handlers`. When the socket closes we retry
 *                  with exponential backoff; when it could not even open,
 *                  we first ask the server whether we are still logged in.
 *                  Resuming (see "Where a connection starts" below): the
 *                  first connect of a page load asks for the recent
 *                  history; every reconnect asks only for what came after
 *                  the last seq seen.
 *   3. Rendering   Builds the DOM for messages, notices and the people
 *                  list. Text that users wrote is only ever put on the page
 *                  with textContent / text nodes, never innerHTML, so a
 *                  message like <img src=x onerror=alert(1)> shows up
 *                  literally.
 *   4. Composer    Enter sends, Shift+Enter breaks the line, a click on a
 *                  name switches to private mode, a click on "Delete" (twice:
 *                  once to arm, once to confirm) deletes one's own room
 *                  message, server errors appear under the box.
 *
 * Where a connection starts. Every room and private message carries a
 * `seq`, increasing across the chat; the page keeps the highest one it has
 * seen (history, offline and live frames alike).
 *   - The first connect of a page load goes to plain /ws: the timeline is
 *     empty, so it needs the recent history (the last 100 room messages)
 *     and `history.private` (this name's last 100 private messages), which
 *     is what brings the private conversations back after a reload or on a
 *     second device. Asking for `after=` here would show only what is new.
 *   - Every reconnect in the same page load (server restart, Wi-Fi blip,
 *     a phone waking up) goes to /ws?after=<last seq>: the server replays
 *     exactly what was missed, room and private, and says `gap: true` when
 *     more room messages were missed than it keeps; the page then says so
 *     in the timeline. Deletions made while away are not replayed (the
 *     contract's choice); a reload shows the exact current view.
 *   - The last seq is also kept in localStorage, per name. A page load uses
 *     it only to mark where the reader left off: the messages after it get a
 *     "New since your last visit" divider instead of "You joined at…".
 *   - Message ids on screen are still remembered and skipped, as a safety
 *     net, and so that a server without seqs (which replays the whole
 *     history on every connect and ignores `after`) keeps working: a frame
 *     without `seq` is simply not counted, and a missing `private` or `gap`
 *     reads as none.
 */
'use strict';

// Reconnect backoff: the first retry is quick (a blip is usually short),
// each failure doubles the wait, capped so a restarted LAN server is found
// again within seconds. A random ±25% keeps many pages from retrying in
// lockstep after a restart.
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 8000;
const RECONNECT_JITTER = 0.25;

// The view follows new messages only while the reader is at the bottom,
// give or take this many pixels.
const FOLLOW_SLACK_PX = 64;

// Consecutive messages from one sender within this window share one header.
const GROUP_WINDOW_MS = 5 * 60 * 1000;

// localStorage key for the remembered name; the login page reads it too.
const NAME_KEY = 'lanchat.name';

// localStorage key, followed by the name, for the highest seq this browser
// has shown to that name (see "Where a connection starts" above).
const SEQ_KEY_PREFIX = 'lanchat.lastSeq.';

// A first click on "Delete" arms it; a second click within this time
// deletes. No confirm() dialog: it would block the page and its socket.
const DELETE_ARMED_MS = 4000;

const BASE_TITLE = document.title;

// What to say for an error frame that comes without its human-readable
// message (the server normally sends one, and that is what is shown).
const ERROR_TEXT = {
  too_long: 'That message is too long: 4000 characters at most.',
  empty: 'Type something first.',
  rate_limited: 'You are sending too fast. Wait a moment and try again.',
  unknown_user: 'Nobody with that name has ever logged in here.',
  bad_request: 'The server did not understand that.',
  not_found: 'That message is no longer there to delete.',
  forbidden: 'You can only delete your own messages.',
};

// Errors that answer a delete, not a message: no text to give back.
const DELETE_ERRORS = new Set(['not_found', 'forbidden']);

const GAP_TEXT = 'You missed more messages than the server keeps; showing the latest.';

/* ------------------------------------------------------------------ */
/* 1. State                                                            */
/* ------------------------------------------------------------------ */

const state = {
  me: null,            // my name, from the welcome frame
  online: [],          // names online now, sorted
  contacts: new Set(), // names I have sent to or received from privately
  seen: new Set(),     // ids of the messages shown so far (dedupe across reconnects)
  lastSeq: null,       // the highest seq seen on this page; null: none yet
  storedSeq: null,     // the highest seq this browser had shown me before this page load
  privateTo: null,     // whom the composer writes to privately; null = everyone
  historyShown: false, // the first history came: later connects ask for after=lastSeq
  unread: 0,           // messages received while the tab was hidden
  lastSent: null,      // the last frame sent, to give its text back on an error
  lastGroup: null,     // {key, ts} of the last message drawn, for grouping
  lastDay: null,       // the local day of the last message drawn, for day dividers
};

let socket = null;               // the open (or opening) WebSocket, or null
let retryDelay = RECONNECT_FIRST_MS;
let retryTimer = null;

const $ = (id) => document.getElementById(id);
const timeline = $('timeline');
const input = $('composer-input');

/* ------------------------------------------------------------------ */
/* 2. Connection                                                       */
/* ------------------------------------------------------------------ */

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (socket) return; // already open or opening

  setStatus('connecting', 'Connecting…');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // A reconnect resumes after the last seq seen; the first connect of the
  // page load (or one before any seq was seen) asks for the recent history.
  const resume = state.historyShown && state.lastSeq !== null ? `?after=${state.lastSeq}` : '';
  const ws = new WebSocket(`${scheme}//${location.host}/ws${resume}`);
  let opened = false;
  socket = ws;
  // For the browser console: `ws.send("hi")` says hi to the room.
  window.ws = ws;

  ws.onopen = () => {
    opened = true;
  };

  ws.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    const handler = handlers[frame.type];
    if (handler) handler(frame);
  };

  // Every way a socket ends (server restart, network loss, refused upgrade)
  // arrives here; onerror carries no detail a page can use.
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (opened) {
      scheduleReconnect();
    } else {
      retryOrLogin();
    }
  };
}

// The socket could not open. A browser cannot see the HTTP status of a
// refused upgrade, so ask the page itself: when we are logged out, GET /
// answers with a redirect to the login form.
async function retryOrLogin() {
  try {
    const response = await fetch('/', { redirect: 'manual', cache: 'no-store' });
    if (response.type === 'opaqueredirect') {
      location.assign('/login?next=/');
      return;
    }
  } catch {
    // The server is unreachable: that is what the retry is for.
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  const jitter = 1 + RECONNECT_JITTER * (2 * Math.random() - 1);
  const delay = Math.round(retryDelay * jitter);
  retryDelay = Math.min(retryDelay * 2, RECONNECT_MAX_MS);
  setStatus('offline', 'Reconnecting…');
  retryTimer = setTimeout(connect, delay);
}

// Skip the wait when there is a good reason to believe it would work now.
function reconnectNow() {
  if (!socket) connect();
}
window.addEventListener('online', reconnectNow);

// One handler per server frame type.
const handlers = {
  welcome(frame) {
    // This browser logged in as someone else meanwhile (in another tab):
    // what is on screen was somebody else's, so start over.
    if (state.me !== null && frame.name !== state.me) {
      location.reload();
      return;
    }
    if (state.me === null) state.storedSeq = storedSeq(frame.name);
    state.me = frame.name;
    state.online = [...frame.users];
    retryDelay = RECONNECT_FIRST_MS;
    remember(frame.name);
    setStatus('online', 'Connected');
    $('me-name').textContent = frame.name;
    $('me-avatar').textContent = initial(frame.name);
    $('me-avatar').style.setProperty('--hue', hue(frame.name));
    // A delete sent just before the socket dropped may or may not have
    // happened; its button may be used again.
    for (const button of timeline.querySelectorAll('.delete:disabled')) disarmDelete(button);
    renderUsers();
  },

  // Room messages (`messages`) and private ones (`private`, absent from
  // servers without conversations), shown as one timeline in seq order.
  // Their kind is set here rather than trusted to each entry.
  history(frame) {
    const messages = inOrder([
      ...(frame.messages || []).map((message) => ({ ...message, type: 'message' })),
      ...(frame.private || []).map((message) => ({ ...message, type: 'private' })),
    ]);
    learnContacts(messages);

    if (state.historyShown) {
      // A reconnect: what was missed, added below what is on screen. When
      // more was missed than the server keeps, say so, and a reader who was
      // following starts reading at that notice.
      const following = isAtBottom();
      const gap = frame.gap === true ? addNotice(GAP_TEXT, { kind: 'gap' }) : null;
      for (const message of messages) {
        noteSeq(message);
        if (addMessage(message)) countUnread(message);
      }
      if (gap && following) scrollToShow(gap);
      return;
    }

    state.historyShown = true;
    const firstNew = state.storedSeq === null
      ? -1
      : messages.findIndex((message) => Number.isInteger(message.seq) && message.seq > state.storedSeq);
    let newSince = null;
    messages.forEach((message, index) => {
      if (index === firstNew && index > 0) newSince = addDivider('New since your last visit', { scroll: false });
      noteSeq(message);
      addMessage(message);
    });
    if (newSince) {
      scrollToShow(newSince);
    } else if (messages.length > 0) {
      addDivider(`You joined at ${formatTime(Date.now())}`);
    } else {
      addEmptyState();
    }
  },

  offline(frame) {
    const messages = inOrder((frame.messages || []).map((message) => ({ ...message, type: 'private' })));
    learnContacts(messages);
    for (const message of messages) noteSeq(message);
    const waiting = messages.filter((message) => !state.seen.has(message.id));
    if (waiting.length === 0) return;
    const count = waiting.length === 1 ? 'A private message' : `${waiting.length} private messages`;
    addNotice(`${count} arrived while you were away`, { kind: 'inbox', ts: waiting[0].ts });
    for (const message of waiting) {
      addMessage(message, { fromInbox: true });
      countUnread(message);
    }
  },

  join(frame) {
    if (!state.online.includes(frame.name)) {
      state.online.push(frame.name);
      state.online.sort();
    }
    renderUsers();
    addNotice(`${frame.name} joined`, { ts: frame.ts });
  },

  leave(frame) {
    state.online = state.online.filter((name) => name !== frame.name);
    renderUsers();
    addNotice(`${frame.name} left`, { ts: frame.ts });
  },

  message(frame) {
    noteSeq(frame);
    if (addMessage(frame)) countUnread(frame);
  },

  private(frame) {
    noteSeq(frame);
    learnContacts([frame]);
    if (addMessage(frame)) countUnread(frame);
  },

  // A room message was deleted (by its author, or a host): it leaves
  // everyone's view. Its id stays in `seen`, so no replay brings it back.
  deleted(frame) {
    removeMessage(frame.id);
  },

  error(frame) {
    const text = frame.message || ERROR_TEXT[frame.code] || 'The server refused that.';
    showError(text);
    if (DELETE_ERRORS.has(frame.code)) {
      // The delete was refused: its button may be used again.
      for (const button of timeline.querySelectorAll('.delete:disabled')) disarmDelete(button);
      return;
    }
    // Give the refused text back so it is not lost, unless a new one is
    // already being typed.
    if (state.lastSent && input.value === '' && frame.code !== 'empty') {
      input.value = state.lastSent.text;
      autoGrow();
    }
  },
};

// Messages in the order the server accepted them: by seq when every one
// has a seq, else by time (older servers). The sort is stable, so equal
// keys keep the order they came in.
function inOrder(messages) {
  const bySeq = messages.every((message) => Number.isInteger(message.seq));
  return messages.sort(bySeq ? (a, b) => a.seq - b.seq : (a, b) => a.ts - b.ts);
}

// Remembers the highest seq seen, here and in localStorage for this name.
function noteSeq(message) {
  if (!Number.isInteger(message.seq)) return; // a server without seqs
  if (state.lastSeq !== null && message.seq <= state.lastSeq) return;
  state.lastSeq = message.seq;
  try {
    const key = SEQ_KEY_PREFIX + state.me;
    if (Number(localStorage.getItem(key)) < message.seq) localStorage.setItem(key, String(message.seq));
  } catch {
    // Storage disabled: resuming within this page load still works.
  }
}

function storedSeq(name) {
  try {
    const value = Number.parseInt(localStorage.getItem(SEQ_KEY_PREFIX + name), 10);
    return Number.isInteger(value) ? value : null;
  } catch {
    return null;
  }
}

// The people one writes with privately stay in the people list, offline
// or not, so they can be written to (the message waits in their inbox).
function learnContacts(messages) {
  let changed = false;
  for (const message of messages) {
    if (message.type !== 'private') continue;
    const other = message.from === state.me ? message.to : message.from;
    if (other && other !== state.me && !state.contacts.has(other)) {
      state.contacts.add(other);
      changed = true;
    }
  }
  if (changed) renderUsers();
}

function remember(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Storage disabled: the server's cookie prefill still works.
  }
}

/* ------------------------------------------------------------------ */
/* 3. Rendering                                                        */
/* ------------------------------------------------------------------ */

// A new element with a class and, optionally, its text. Safe for user
// text: it goes in through textContent.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(kind, text) {
  $('status').dataset.state = kind;
  $('status-text').textContent = text;
}

// Appends a room or private message unless its id is already on screen.
// Returns whether it was added.
function addMessage(message, { fromInbox = false } = {}) {
  if (state.seen.has(message.id)) return false;
  state.seen.add(message.id);

  const follow = isAtBottom() || message.from === state.me;
  removeEmptyState();
  addDayDividerIfNeeded(message.ts);
  timeline.append(messageNode(message, fromInbox));
  if (follow) {
    scrollToBottom();
  } else {
    $('jump').hidden = false;
  }
  return true;
}

function messageNode(message, fromInbox) {
  const mine = message.from === state.me;
  const isPrivate = message.type === 'private';

  const node = el('article', 'msg');
  node.dataset.id = message.id;
  node.dataset.from = message.from;
  if (Number.isInteger(message.seq)) node.dataset.seq = String(message.seq);
  node.classList.toggle('mine', mine);
  node.classList.toggle('private', isPrivate);
  node.classList.toggle('from-inbox', fromInbox);

  // Group with the previous message: same sender, same audience, soon after.
  const groupKey = `${message.type}\n${message.from}\n${message.to || ''}`;
  const previous = state.lastGroup;
  const continued = previous && previous.key === groupKey && message.ts - previous.ts < GROUP_WINDOW_MS;
  state.lastGroup = { key: groupKey, ts: message.ts };
  node.classList.toggle('continued', Boolean(continued));

  if (!mine) node.append(avatarNode(message.from));

  const body = el('div', 'msg-body');
  const header = el('header', 'msg-header');
  if (isPrivate) {
    const lock = el('span', 'lock-icon');
    lock.setAttribute('aria-hidden', 'true');
    header.append(lock, ' ');
    header.append(el('span', 'who', mine ? 'You' : message.from));
    header.append(el('span', 'arrow', ' → '));
    header.append(el('span', 'who', message.to === state.me ? 'you' : message.to));
    header.append(el('span', 'private-label', ' · private'));
  } else {
    const who = el('span', 'who', mine ? 'You' : message.from);
    if (!mine) who.style.setProperty('--hue', hue(message.from));
    header.append(who);
  }
  body.append(header);

  const bubble = el('div', 'bubble');
  appendLinkified(bubble, message.text);
  const time = el('time', 'time', formatTime(message.ts));
  time.dateTime = new Date(message.ts).toISOString();
  time.title = new Date(message.ts).toLocaleString();
  bubble.append(time);
  body.append(bubble);

  if (isPrivate && !mine) {
    const reply = el('button', 'msg-action reply', 'Reply privately');
    reply.type = 'button';
    reply.addEventListener('click', () => setPrivateTo(message.from));
    body.append(reply);
  }

  // Room messages only: private ones cannot be deleted.
  if (!isPrivate && mine) {
    const remove = el('button', 'msg-action delete', 'Delete');
    remove.type = 'button';
    remove.title = 'Delete this message for everyone';
    remove.addEventListener('click', () => deleteClicked(remove, message.id));
    remove.addEventListener('blur', () => {
      if (!remove.disabled) disarmDelete(remove);
    });
    body.append(remove);
  }

  node.append(body);
  return node;
}

// Puts `text` into `parent`, turning http(s) addresses into links. Both the
// link text and everything around it go in as text nodes; the only markup is
// the <a> element we create, whose href can only start with http(s)://.
function appendLinkified(parent, text) {
  const urlPattern = /\bhttps?:\/\/[^\s<>"']+/g;
  let last = 0;
  for (const match of text.matchAll(urlPattern)) {
    // A sentence's closing punctuation is not part of the address.
    const url = match[0].replace(/[.,;:!?)\]]+$/, '');
    parent.append(document.createTextNode(text.slice(last, match.index)));
    const link = el('a', null, url);
    link.href = url;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    parent.append(link);
    last = match.index + url.length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

// Takes a deleted message off the screen. When it headed a group, the next
// message of that group gets the header back.
function removeMessage(id) {
  const node = timeline.querySelector(`.msg[data-id="${CSS.escape(id)}"]`);
  if (!node) return;
  const next = node.nextElementSibling;
  if (!node.classList.contains('continued') && next && next.classList.contains('continued')) {
    next.classList.remove('continued');
  }
  if (node === timeline.lastElementChild) state.lastGroup = null;
  node.remove();
}

// A one-line notice in the timeline (joins, leaves, the inbox, a gap).
function addNotice(text, { ts = Date.now(), kind = 'presence' } = {}) {
  const follow = isAtBottom();
  addDayDividerIfNeeded(ts);
  const node = el('p', `notice notice-${kind}`);
  node.append(el('span', null, text));
  if (kind === 'presence') node.append(el('time', 'time', ` · ${formatTime(ts)}`));
  timeline.append(node);
  state.lastGroup = null;
  if (follow) scrollToBottom();
  return node;
}

function addDivider(text, { scroll = true } = {}) {
  const node = el('div', 'divider');
  node.setAttribute('role', 'separator');
  node.append(el('span', null, text));
  timeline.append(node);
  state.lastGroup = null;
  if (scroll) scrollToBottom();
  return node;
}

function addDayDividerIfNeeded(ts) {
  const day = new Date(ts).toDateString();
  if (day === state.lastDay) return;
  state.lastDay = day;
  const node = el('div', 'divider day');
  node.setAttribute('role', 'separator');
  node.append(el('span', null, dayLabel(ts)));
  timeline.append(node);
  state.lastGroup = null;
}

function addEmptyState() {
  const node = el('div', 'empty-state');
  node.id = 'empty-state';
  node.append(el('p', 'empty-title', 'No messages yet'));
  node.append(el('p', null, 'Say hello: everyone online sees what you write here.'));
  timeline.append(node);
}

function removeEmptyState() {
  const node = $('empty-state');
  if (node) node.remove();
}

// Who is online, then the people I have talked with privately who are
// not: both lists offer a click to write to them privately.
function renderUsers() {
  const list = $('user-list');
  list.replaceChildren();
  for (const name of state.online) {
    const item = el('li');
    if (name === state.me) {
      const self = el('span', 'user self');
      self.append(avatarNode(name), el('span', 'user-name', name), el('span', 'you-tag', 'you'));
      item.append(self);
    } else {
      item.append(userButton(name, true));
    }
    list.append(item);
  }
  $('online-count').textContent = String(state.online.length);
  $('people-toggle-count').textContent = String(state.online.length);

  const away = [...state.contacts].filter((name) => !state.online.includes(name)).sort();
  const awayList = $('offline-list');
  awayList.replaceChildren(...away.map((name) => {
    const item = el('li');
    item.append(userButton(name, false));
    return item;
  }));
  awayList.hidden = away.length === 0;
  $('offline-heading').hidden = away.length === 0;
  renderPrivateChip();
}

function avatarNode(name) {
  const avatar = el('span', 'avatar', initial(name));
  avatar.style.setProperty('--hue', hue(name));
  avatar.setAttribute('aria-hidden', 'true');
  return avatar;
}

function userButton(name, online) {
  const button = el('button', online ? 'user' : 'user is-offline');
  button.type = 'button';
  button.title = online
    ? `Write privately to ${name}`
    : `Write privately to ${name} (offline: gets it on return)`;
  button.setAttribute('aria-pressed', String(name === state.privateTo));
  button.append(avatarNode(name), el('span', 'user-name', name));
  if (!online) button.append(el('span', 'offline-tag', 'offline'));
  button.addEventListener('click', () => {
    setPrivateTo(name);
    togglePeople(false);
  });
  return button;
}

function renderPrivateChip() {
  const name = state.privateTo;
  $('private-chip').hidden = name === null;
  $('private-name').textContent = name || '';
  $('private-away').hidden = name === null || state.online.includes(name);
  $('composer').classList.toggle('is-private', name !== null);
  input.placeholder = name === null ? 'Message everyone' : `Private message to ${name}`;
}

// Unread count in the tab title while the tab is hidden.
function countUnread(message) {
  if (!document.hidden || message.from === state.me) return;
  state.unread += 1;
  document.title = `(${state.unread}) ${BASE_TITLE}`;
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) return;
  state.unread = 0;
  document.title = BASE_TITLE;
  reconnectNow(); // phones may have suspended the tab and its socket
});

// Scrolling: follow new messages unless the reader scrolled up to read.
function isAtBottom() {
  return timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < FOLLOW_SLACK_PX;
}

function scrollToBottom() {
  timeline.scrollTop = timeline.scrollHeight;
  $('jump').hidden = true;
}

// Scrolls so that `node` is near the top of the timeline (or as far as the
// timeline goes), e.g. the first message the reader has not seen yet.
function scrollToShow(node) {
  const offset = node.getBoundingClientRect().top - timeline.getBoundingClientRect().top;
  timeline.scrollTop += offset - 8;
  $('jump').hidden = isAtBottom();
}

timeline.addEventListener('scroll', () => {
  if (isAtBottom()) $('jump').hidden = true;
});
$('jump').addEventListener('click', () => {
  scrollToBottom();
  input.focus();
});

// Small helpers for names and times.
function initial(name) {
  return Array.from(name)[0].toUpperCase(); // Array.from: keep emoji whole
}

// A stable colour per name, so a person is recognisable at a glance. The
// hues are spread apart and all carry white text at a readable contrast.
const AVATAR_HUES = [0, 22, 150, 175, 200, 222, 250, 275, 300, 330];

function hue(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return String(AVATAR_HUES[hash % AVATAR_HUES.length]);
}

function formatTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
}

function dayLabel(ts) {
  const day = new Date(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (day.toDateString() === today.toDateString()) return 'Today';
  if (day.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return day.toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' });
}

/* ------------------------------------------------------------------ */
/* 4. Composer                                                         */
/* ------------------------------------------------------------------ */

function isConnected() {
  return socket !== null && socket.readyState === WebSocket.OPEN;
}

function send() {
  const text = input.value.trim();
  if (text === '') return;
  if (!isConnected()) {
    showError('Not connected right now. Your message is kept; send it again once connected.');
    return;
  }
  const frame = state.privateTo === null
    ? { type: 'message', text }
    : { type: 'private', to: state.privateTo, text };
  socket.send(JSON.stringify(frame));
  state.lastSent = frame;
  input.value = '';
  autoGrow();
  clearError();
  scrollToBottom();
}

// "Delete" on one's own message: the first click arms the button, the
// second sends the delete. The message leaves the screen when the server's
// `deleted` comes back (to everyone at once), not before.
const disarmTimers = new WeakMap(); // armed Delete button -> its timer

function deleteClicked(button, id) {
  if (button.dataset.armed !== 'true') {
    button.dataset.armed = 'true';
    button.textContent = 'Delete?';
    button.title = 'Click again to delete it for everyone';
    clearTimeout(disarmTimers.get(button));
    disarmTimers.set(button, setTimeout(() => disarmDelete(button), DELETE_ARMED_MS));
    return;
  }
  if (!isConnected()) {
    showError('Not connected right now. Delete it again once connected.');
    disarmDelete(button);
    return;
  }
  clearTimeout(disarmTimers.get(button));
  socket.send(JSON.stringify({ type: 'delete', id }));
  button.disabled = true;
  button.textContent = 'Deleting…';
  clearError();
}

function disarmDelete(button) {
  clearTimeout(disarmTimers.get(button));
  button.dataset.armed = 'false';
  button.disabled = false;
  button.textContent = 'Delete';
  button.title = 'Delete this message for everyone';
}

function setPrivateTo(name) {
  state.privateTo = name;
  renderUsers();
  input.focus();
}

function showError(text) {
  $('composer-error').textContent = text;
}

function clearError() {
  $('composer-error').textContent = '';
}

// The box grows with its text up to the CSS max-height, then scrolls.
function autoGrow() {
  input.style.height = 'auto';
  input.style.height = `${input.scrollHeight}px`;
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});

input.addEventListener('keydown', (event) => {
  // isComposing: Enter that confirms an IME candidate (Chinese, Japanese…)
  // must not send the half-typed message.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  } else if (event.key === 'Escape' && state.privateTo !== null) {
    setPrivateTo(null);
  }
});

input.addEventListener('input', () => {
  autoGrow();
  clearError();
});

$('private-cancel').addEventListener('click', () => setPrivateTo(null));

// Phones: the list of people is a drawer opened from the header.
function togglePeople(open) {
  document.body.classList.toggle('people-open', open);
  $('people-toggle').setAttribute('aria-expanded', String(open));
}

$('people-toggle').addEventListener('click', () => {
  togglePeople(!document.body.classList.contains('people-open'));
});

$('people-backdrop').addEventListener('click', () => togglePeople(false));

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') togglePeople(false);
});

connect();
// Start in the message box, except on touch screens, where focusing it
// would pop up the keyboard over the conversation.
if (window.matchMedia('(pointer: fine)').matches) input.focus();
