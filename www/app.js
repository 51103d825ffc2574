/*
 * lanchat chat page: one WebSocket, the conversations (the room, and one
 * per person written with privately), the people list, and a message box;
 * for the host, menus and a panel to run the class. No framework, no build
 * step; the wire format is the one in docs/PROTOCOL.md (frames welcome,
 * history, offline, join, leave, message, private, typing, deleted, error;
 * mode, muted, unmuted, banned, unbanned, cleared; the host frames the page
 * sends; POST /password). Every string comes from i18n.js: t('key').
 *
 * The file reads top to bottom:
 *
 *   1. State       Everything the page knows: my name, who is online and
 *                  who of them is a host, whom I have talked with
 *                  privately, the ids of the messages on screen, the
 *                  highest seq seen, whom I am writing to, the class mode,
 *                  my mute, and (for a host) who is muted or banned.
 *   2. Connection  connect() opens the connection (transport.js: a
 *                  WebSocket, or long polling when the WebSocket cannot get
 *                  through) and hands each JSON frame to its handler in
 *                  `handlers`. When it drops, transport.js retries with
 *                  exponential backoff; when it could not even open, it
 *                  first asks the server whether we are still logged in.
 *                  Closed by a host (4001 kicked, 4002 released), we do not
 *                  retry: the login form says what happened.
 *                  Resuming (see "Where a connection starts" below): the
 *                  first connect of a page load asks for the recent
 *                  history; every reconnect asks only for what came after
 *                  the last seq seen.
 *   3. Rendering   Builds the DOM for messages, notices and the people
 *                  list. Each conversation has its own pane in the
 *                  timeline (only the open one is shown) and an unread
 *                  count in the people list; the tab title and the favicon
 *                  show the total. What was read is kept per conversation
 *                  in localStorage (the last seq read), so the "New since
 *                  your last visit" divider and the counts survive a
 *                  reload. A message that mentions me (@name) is
 *                  highlighted and its count is marked as a mention. Text that users wrote is only ever put on the page
 *                  with textContent / text nodes, never innerHTML, so a
 *                  message like <img src=x onerror=alert(1)> shows up
 *                  literally. Hosts get a "host" badge in the people list
 *                  and on their messages, so nobody can pass as the
 *                  teacher: the badge comes from the server's `hosts`, never
 *                  from a name.
 *   4. Composer    Enter sends, Shift+Enter breaks the line, a click on a
 *                  name opens the private conversation with them, `@` offers
 *                  the people online to mention, typing tells the others
 *                  (at most every TYPING_EVERY_MS), a click on "Delete" (twice:
 *                  once to arm, once to confirm) deletes one's own room
 *                  message, server errors appear under the box.
 *   5. Mode line   The line under the box says why I cannot send right now
 *                  and for how long (muted until HH:MM, announce-only, slow
 *                  mode counting down, private messages off), and the Send
 *                  button is disabled meanwhile. Hosts are never held back.
 *                  The page works this out from the mode, its mute and the
 *                  hosts online; a refusal from the server (`muted`,
 *                  `slow_mode`, ...) teaches it what it did not know.
 *   6. Host tools  Only on a host's page: one menu (#host-menu), opened
 *                  from the "⋯" on a message (delete it; mute, kick, ban or
 *                  release its author) or next to a person; the host panel
 *                  in the people column (the class mode, clear the history,
 *                  the muted and banned with unmute and unban, release a
 *                  name). Whatever loses something (delete, kick, ban,
 *                  release, clear) takes two clicks, like Delete: no
 *                  confirm() dialog, which would block the page. The menu
 *                  works with the keyboard: arrows, Home, End, Escape.
 *                  The page shows a change when the server's frame comes
 *                  back (mode, muted, banned, deleted, cleared), not before.
 *   7. Password    A small dialog that sets or changes the password that
 *                  keeps one's name (POST /password with fetch).
 *   8. Settings    Language; a short sound (WebAudio, no audio file) for
 *                  every message, for mentions and private messages, or
 *                  never; system notifications where the browser allows
 *                  them (a secure context: HTTPS or localhost), and a plain
 *                  explanation where it does not (plain HTTP on a LAN).
 *                  Screen readers hear new messages through #announcer,
 *                  summed up when many come at once.
 *
 * Files and photos live in files.js (loaded first, one global `Files`):
 * attaching, downscaling, the upload, and a message's thumbnail or download
 * link; app.js only calls Files.node() in messageNode(), asks send() for the
 * file, and hands it send, showError and whether I may upload.
 *
 * The connection lives in transport.js (loaded first, one global
 * `Transport`): Transport.open() with a frame callback, Transport.send(frame)
 * and Transport.isOpen(), the same whether the frames travel over the
 * WebSocket or over long polling (GET /poll and POST /say, turned into the
 * same frames), the fallback between them, and the pill's "Connected · long
 * polling". `?transport=poll` or `?transport=ws` forces one.
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
 *     Long polling does the same with /poll and /poll?after=<last seq>, and
 *     a switch between the two transports is a reconnect like any other.
 *   - The last seq is also kept in localStorage, per name, and so is the
 *     last seq read in each conversation. A page load uses them only to mark
 *     where the reader left off: in each conversation, the messages after
 *     the last one read get a "New since your last visit" divider and count
 *     as unread (a conversation never read here falls back to the last seq
 *     shown).
 *   - Message ids on screen are still remembered and skipped, as a safety
 *     net, and so that a server without seqs (which replays the whole
 *     history on every connect and ignores `after`) keeps working: a frame
 *     without `seq` is simply not counted, and a missing `private` or `gap`
 *     reads as none.
 */
'use strict';

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

const t = I18n.t;
I18n.translatePage(); // the strings of index.html (data-i18n), in the page's language

// localStorage key, followed by the name: the last seq read in each
// conversation ({"": seq for the room, "bob": seq, ...}).
const READ_KEY_PREFIX = 'lanchat.read.';

// Typing: sent at most this often while the box changes. The server relays
// no more than one every 2 s; a little more here, so that one sent on time
// but delivered after a late one is not dropped. Shown this long after the
// last one.
const TYPING_EVERY_MS = 2200;
const TYPING_SHOWN_MS = 5000;

// At most this many names offered after `@`.
const MENTIONS_OFFERED = 8;

// At most one chime this often (seconds), however many messages come.
const BEEP_GAP_S = 1;

// New messages within this window are announced to screen readers as one.
const ANNOUNCE_WINDOW_MS = 1500;

// Errors that answer a delete, not a message: no text to give back.
const DELETE_ERRORS = new Set(['not_found', 'forbidden']);

// The class mode of a server that says nothing about it (the contract's MODE).
const DEFAULT_MODE = { announce: false, slow: 0, private: true, uploads: true };

// How long a host's menu offers to mute someone, in minutes (1 to 1440).
const MUTE_MINUTES = [5, 10, 30];

// Slow mode choices in the host panel, in seconds (the contract: 0 to 3600).
const SLOW_CHOICES = [0, 5, 10, 30, 60, 120, 300];

// Refusals because of the mode or a mute: the mode line explains them.
const MODE_ERRORS = new Set(['muted', 'announce_only', 'slow_mode', 'private_off']);

// Presence notices kept in the timeline (older ones are removed), and how
// many names one notice spells out before "and N others".
const PRESENCE_NOTICES_KEPT = 100;
const PRESENCE_NAMES_SHOWN = 3;
// A hidden tab runs no animation frames: presence is applied after this.
const HIDDEN_FLUSH_MS = 250;

// Frames with a `ts` that the page takes as samples of the server's clock
// (mute ends are in server time); this many recent ones are kept.
const CLOCK_SAMPLES = 8;

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
  privateTo: null,     // the open conversation, whom the composer writes to; null = the room
  historyShown: false, // the first history came: later connects ask for after=lastSeq
  unread: new Map(),   // conversation (null: the room) -> {count, mentions} not read yet
  read: {},            // conversation key ('' for the room) -> last seq read
  typing: new Map(),   // conversation -> Map(name -> when to stop showing it, ms)
  lastTyping: 0,       // when I last sent a typing frame (ms)
  lastSent: null,      // the last frame sent, to give its text back on an error
  hosts: new Set(),    // names online as a host now (welcome, join, leave)
  amHost: false,       // this connection is a host's: menus and panel shown
  mode: { ...DEFAULT_MODE }, // the class mode, from welcome and mode frames
  mutedUntil: null,    // when my mute ends (server ms), or null when not muted
  lastRoomSent: null,  // when my last room message came back (local ms), for slow mode
  muted: new Map(),    // host only: name -> end of its mute (server ms)
  banned: new Set(),   // host only: the banned names
  clockSamples: [],    // recent (server ts - local now) of live frames, ms
  clockSkew: 0,        // the server's clock minus ours, ms (the best sample)
};

const $ = (id) => document.getElementById(id);
const timeline = $('timeline');
const input = $('composer-input');
const sendButton = document.querySelector('#composer .send');

/* ------------------------------------------------------------------ */
/* 2. Connection                                                       */
/* ------------------------------------------------------------------ */

// The connection (transport.js): a WebSocket, or long polling when the
// WebSocket cannot get through. Either way each frame comes to `handlers`.
function connect() {
  Transport.open({
    onFrame(frame) {
      const handler = handlers[frame.type];
      if (handler) handler(frame);
    },
    setStatus,
    // A reconnect resumes after the last seq seen; the first connect of the
    // page load (or one before any seq was seen) asks for the recent history.
    resumeAfter: () => (state.historyShown && state.lastSeq !== null ? state.lastSeq : null),
  });
}

// Skip the wait when there is a good reason to believe it would work now.
function reconnectNow() {
  Transport.reconnectNow();
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
    const reconnect = state.me !== null;
    if (!reconnect) {
      state.storedSeq = storedSeq(frame.name);
      state.read = loadRead(frame.name);
    }
    state.me = frame.name;
    state.online = [...frame.users];
    presence.queue = []; // older than this list of who is online
    remember(frame.name); // the pill says "Connected" (transport.js)
    $('me-name').textContent = frame.name;
    $('me-avatar').textContent = initial(frame.name);
    $('me-avatar').style.setProperty('--hue', hue(frame.name));
    // A delete sent just before the socket dropped may or may not have
    // happened; its button may be used again.
    for (const button of timeline.querySelectorAll('.delete:disabled')) disarmDelete(button);

    // Hosts and the class mode (absent from servers without hosts: none,
    // and the default mode). Only a host's welcome lists the muted and
    // banned. A mode changed while we were away is said in the timeline.
    const previousMode = state.mode;
    state.hosts = new Set(Array.isArray(frame.hosts) ? frame.hosts : []);
    state.amHost = frame.host === true;
    state.mode = modeFrom(frame.mode, DEFAULT_MODE);
    state.banned = new Set(state.amHost && Array.isArray(frame.banned) ? frame.banned : []);
    state.muted = new Map();
    if (state.amHost && Array.isArray(frame.muted)) {
      for (const entry of frame.muted) {
        if (entry && typeof entry.name === 'string' && Number.isFinite(entry.until)) {
          state.muted.set(entry.name, entry.until);
        }
      }
    }
    if (reconnect) noteModeChanges(previousMode, state.mode);
    document.body.classList.toggle('is-host', state.amHost);
    markHosts();
    renderHostPanel();
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
      const gap = frame.gap === true ? addNotice(t('gap'), { kind: 'gap' }) : null;
      for (const message of messages) {
        noteSeq(message);
        if (addMessage(message)) arrived(message, { live: true });
      }
      if (gap && following) scrollToShow(gap);
      return;
    }

    // The first history of this page load. In each conversation, the
    // first message after the last one read gets the "New since your last
    // visit" divider (unless it is the conversation's first message); the
    // others' messages after it count as unread.
    state.historyShown = true;
    const seenNew = new Set();
    let newSince = null;
    for (const message of messages) {
      const conversation = conversationOf(message);
      const isNew = Number.isInteger(message.seq) && message.seq > lastRead(conversation);
      if (isNew && !seenNew.has(conversation)) {
        seenNew.add(conversation);
        if (paneFor(conversation).node.querySelector('.msg')) {
          const divider = addDivider(t('divider.new'), { conversation, scroll: false });
          if (conversation === state.privateTo) newSince = divider;
        }
      }
      noteSeq(message);
      if (addMessage(message) && isNew) arrived(message, { live: false });
    }
    if (newSince) {
      scrollToShow(newSince);
    } else if (paneFor(null).node.querySelector('.msg')) {
      addDivider(t('divider.joined', { time: formatTime(Date.now()) }));
    } else {
      addEmptyState(null);
    }
  },

  offline(frame) {
    const messages = inOrder((frame.messages || []).map((message) => ({ ...message, type: 'private' })));
    learnContacts(messages);
    for (const message of messages) noteSeq(message);
    const waiting = messages.filter((message) => !state.seen.has(message.id));
    if (waiting.length === 0) return;
    const notice = waiting.length === 1 ? t('inbox.one') : t('inbox.many', { count: waiting.length });
    addNotice(notice, { kind: 'inbox', ts: waiting[0].ts });
    for (const message of waiting) {
      addMessage(message, { fromInbox: true });
      arrived(message, { live: false });
    }
  },

  // Presence comes in storms (a class logging in at once, a script that
  // reconnects in a loop): each notice is queued, and the queue is applied
  // once per animation frame (see "Presence" in Rendering).
  join(frame) {
    queuePresence(frame);
  },

  leave(frame) {
    queuePresence(frame);
  },

  message(frame) {
    noteSeq(frame);
    learnClock(frame.ts);
    if (frame.from === state.me) {
      // Accepted: slow mode counts from now.
      state.lastRoomSent = Date.now();
      renderModeLine();
    }
    stopTyping(null, frame.from);
    if (addMessage(frame)) arrived(frame, { live: true });
  },

  private(frame) {
    noteSeq(frame);
    learnClock(frame.ts);
    learnContacts([frame]);
    stopTyping(frame.from, frame.from);
    if (addMessage(frame)) arrived(frame, { live: true });
  },

  // Someone is typing in the room (no `to`) or to me (`to`): shown for a
  // few seconds after the last of these, or until their message comes.
  typing(frame) {
    if (typeof frame.name !== 'string' || frame.name === state.me) return;
    const conversation = typeof frame.to === 'string' ? frame.name : null;
    if (!state.typing.has(conversation)) state.typing.set(conversation, new Map());
    state.typing.get(conversation).set(frame.name, Date.now() + TYPING_SHOWN_MS);
    renderTyping();
  },

  // A room message was deleted (by its author, or a host): it leaves
  // everyone's view. Its id stays in `seen`, so no replay brings it back.
  deleted(frame) {
    removeMessage(frame.id);
  },

  // The class mode changed (a host did it): everyone is told.
  mode(frame) {
    const previous = state.mode;
    state.mode = modeFrom(frame, previous);
    noteModeChanges(previous, state.mode);
    renderHostPanel();
    renderModeLine();
  },

  // Sent to the muted person and to the hosts.
  muted(frame) {
    if (typeof frame.name !== 'string' || !Number.isFinite(frame.until)) return;
    const until = formatTime(frame.until);
    if (frame.name === state.me) {
      state.mutedUntil = frame.until;
      addNotice(t('notice.youMuted', { time: until }), { kind: 'mode' });
    }
    if (state.amHost) {
      state.muted.set(frame.name, frame.until);
      if (frame.name !== state.me) addNotice(t('notice.muted', { name: frame.name, time: until }), { kind: 'mode' });
      renderHostPanel();
      renderUsers();
    }
    renderModeLine();
  },

  unmuted(frame) {
    if (typeof frame.name !== 'string') return;
    if (frame.name === state.me) {
      state.mutedUntil = null;
      addNotice(t('notice.youUnmuted'), { kind: 'mode' });
    }
    if (state.amHost) {
      state.muted.delete(frame.name);
      if (frame.name !== state.me) addNotice(t('notice.unmuted', { name: frame.name }), { kind: 'mode' });
      renderHostPanel();
      renderUsers();
    }
    renderModeLine();
  },

  // To hosts only.
  banned(frame) {
    if (typeof frame.name !== 'string') return;
    state.banned.add(frame.name);
    addNotice(t('notice.banned', { name: frame.name }), { kind: 'mode' });
    renderHostPanel();
    renderUsers();
  },

  unbanned(frame) {
    if (typeof frame.name !== 'string') return;
    state.banned.delete(frame.name);
    addNotice(t('notice.unbanned', { name: frame.name }), { kind: 'mode' });
    renderHostPanel();
    renderUsers();
  },

  // A host emptied the room history: the room messages leave everyone's
  // view (private ones are not part of it and stay).
  cleared() {
    for (const node of timeline.querySelectorAll('.msg:not(.private)')) node.remove();
    paneFor(null).lastGroup = null;
    addNotice(t('notice.cleared'), { kind: 'mode' });
  },

  error(frame) {
    // Said in the page's language by its code; a code this page does not
    // know keeps the server's own (English) message.
    const known = t(`error.${frame.code}`) !== `error.${frame.code}`;
    const text = known ? t(`error.${frame.code}`) : frame.message || t('error.other');
    if (MODE_ERRORS.has(frame.code)) learnRefusal(frame);
    const line = modeLine();
    if (MODE_ERRORS.has(frame.code) && line && line.blocked) {
      clearError(); // the mode line says why, and for how long
    } else {
      showError(text);
    }
    if (DELETE_ERRORS.has(frame.code)) {
      // The delete was refused: its button may be used again.
      for (const button of timeline.querySelectorAll('.delete:disabled')) disarmDelete(button);
      return;
    }
    // The refused message's file goes back to the box too (files.js).
    if (state.lastSent) Files.refused(frame.code, state.lastSent.file);
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

// The class mode in `frame` (a welcome's `mode`, or a `mode` frame); a
// field that is missing or of the wrong kind keeps its value in `base`.
function modeFrom(frame, base) {
  const mode = { ...base };
  if (frame && typeof frame === 'object') {
    for (const key of Object.keys(DEFAULT_MODE)) {
      if (typeof frame[key] === typeof DEFAULT_MODE[key]) mode[key] = frame[key];
    }
  }
  return mode;
}

// Says in the timeline what changed in the class mode, one notice a change.
function noteModeChanges(before, after) {
  if (after.announce !== before.announce) {
    addNotice(after.announce ? t('notice.announceOn') : t('notice.announceOff'), { kind: 'mode' });
  }
  if (after.slow !== before.slow) {
    addNotice(after.slow > 0 ? t('notice.slowOn', { duration: duration(after.slow) }) : t('notice.slowOff'), { kind: 'mode' });
  }
  if (after.private !== before.private) {
    addNotice(after.private ? t('notice.privateOn') : t('notice.privateOff'), { kind: 'mode' });
  }
  if (after.uploads !== before.uploads) {
    addNotice(after.uploads ? t('notice.uploadsOn') : t('notice.uploadsOff'), { kind: 'mode' });
  }
}

// Mute ends are in the server's time; a phone's clock may differ from the
// teacher's laptop. Each live frame was stamped a little before it arrived,
// so (ts - now) is at most the true difference: the largest recent sample
// is the best guess.
function learnClock(ts) {
  if (!Number.isFinite(ts)) return;
  state.clockSamples.push(ts - Date.now());
  if (state.clockSamples.length > CLOCK_SAMPLES) state.clockSamples.shift();
  state.clockSkew = Math.max(...state.clockSamples);
}

function serverNow() {
  return Date.now() + state.clockSkew;
}

function storedSeq(name) {
  try {
    const value = Number.parseInt(localStorage.getItem(SEQ_KEY_PREFIX + name), 10);
    return Number.isInteger(value) ? value : null;
  } catch {
    return null;
  }
}

// What was read, per conversation: the last seq read in each, kept in
// localStorage for this name (the key of the room is '').
function loadRead(name) {
  try {
    const value = JSON.parse(localStorage.getItem(READ_KEY_PREFIX + name));
    return value && typeof value === 'object' ? value : {};
  } catch {
    return {};
  }
}

function saveRead() {
  try {
    localStorage.setItem(READ_KEY_PREFIX + state.me, JSON.stringify(state.read));
  } catch {
    // Storage disabled: the counts hold until the page is reloaded.
  }
}

// The last seq read in a conversation: its own record, else the last seq
// this browser showed this name, else none yet (a first visit: nothing is
// new).
function lastRead(conversation) {
  const own = state.read[conversation === null ? '' : conversation];
  if (Number.isInteger(own)) return own;
  return state.storedSeq === null ? Infinity : state.storedSeq;
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

  const pane = paneFor(conversationOf(message));
  const open = !pane.node.hidden;
  const follow = open && (isAtBottom() || message.from === state.me);
  removeEmptyState(pane);
  addDayDividerIfNeeded(message.ts, pane);
  pane.node.append(messageNode(message, fromInbox, pane));
  if (Number.isInteger(message.seq)) pane.maxSeq = Math.max(pane.maxSeq ?? 0, message.seq);
  if (follow) {
    scrollToBottom();
  } else if (open) {
    $('jump').hidden = false;
  }
  return true;
}

// The conversation a message belongs to: null for the room, else the
// other person of a private message.
function conversationOf(message) {
  if (message.type !== 'private') return null;
  return message.from === state.me ? message.to : message.from;
}

// One pane per conversation in the timeline; only the open one is shown.
// Each groups its messages and dates its days on its own.
const panes = new Map(); // conversation -> {node, lastGroup, lastDay, maxSeq}

function paneFor(conversation) {
  let pane = panes.get(conversation);
  if (!pane) {
    const node = el('section', 'pane');
    node.dataset.conversation = conversation === null ? '' : conversation;
    node.hidden = conversation !== state.privateTo;
    pane = { node, lastGroup: null, lastDay: null, maxSeq: null };
    panes.set(conversation, pane);
    timeline.append(node);
  }
  return pane;
}

function messageNode(message, fromInbox, pane) {
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
  const previous = pane.lastGroup;
  const continued = previous && previous.key === groupKey && message.ts - previous.ts < GROUP_WINDOW_MS;
  pane.lastGroup = { key: groupKey, ts: message.ts };
  node.classList.toggle('continued', Boolean(continued));

  if (!mine) node.append(avatarNode(message.from));

  const body = el('div', 'msg-body');
  const header = el('header', 'msg-header');
  if (isPrivate) {
    const lock = el('span', 'lock-icon');
    lock.setAttribute('aria-hidden', 'true');
    header.append(lock, ' ');
    header.append(whoNode(message.from, mine ? t('you') : message.from));
    header.append(el('span', 'arrow', ' → '));
    header.append(whoNode(message.to, message.to === state.me ? t('you.lower') : message.to));
    header.append(el('span', 'private-label', t('private.label')));
  } else {
    const who = whoNode(message.from, mine ? t('you') : message.from);
    if (!mine) who.style.setProperty('--hue', hue(message.from));
    header.append(who);
  }
  if (mentionsMe(message)) {
    node.classList.add('mentions-me');
    header.append(el('span', 'visually-hidden', t('mentions.you')));
  }
  body.append(header);
  node.classList.toggle('from-host', state.hosts.has(message.from));

  const bubble = el('div', 'bubble');
  const file = Files.node(message.file); // a thumbnail or a download link, from files.js
  if (file) bubble.append(file);
  appendLinkified(bubble, message.text);
  const time = el('time', 'time', formatTime(message.ts));
  time.dateTime = new Date(message.ts).toISOString();
  time.title = new Date(message.ts).toLocaleString();
  bubble.append(time);
  body.append(bubble);

  if (isPrivate && !mine) {
    const reply = el('button', 'msg-action reply', t('reply'));
    reply.type = 'button';
    reply.addEventListener('click', () => openConversation(message.from));
    body.append(reply);
  }

  // A host's menu on everyone else's messages (CSS shows it only on a
  // host's page: body.is-host): delete a room message, act on its author.
  if (!mine) {
    const label = t('host.actionsMessage', { name: message.from });
    const more = menuButton('msg-action msg-menu host-only', label);
    more.addEventListener('click', () => toggleMenu(more, label, () => messageItems(message)));
    body.append(more);
  }

  // Room messages only: private ones cannot be deleted.
  if (!isPrivate && mine) {
    const remove = el('button', 'msg-action delete', t('delete'));
    remove.type = 'button';
    remove.title = t('delete.title');
    remove.addEventListener('click', () => deleteClicked(remove, message.id));
    remove.addEventListener('blur', () => {
      if (!remove.disabled) disarmDelete(remove);
    });
    body.append(remove);
  }

  node.append(body);
  return node;
}

// A name in a message header, followed by a "host" badge when it is a host.
// `label` is what is shown ("You", "you", or the name).
function whoNode(name, label) {
  const who = el('span', 'who', label);
  who.dataset.name = name;
  if (state.hosts.has(name)) who.append(hostBadge());
  return who;
}

function hostBadge() {
  const badge = el('span', 'host-badge', t('host'));
  badge.title = t('host.title');
  return badge;
}

// Someone is a host now: their messages on screen get the badge too (the
// server's `hosts` says who is one; a name alone never does). Badges are
// not taken away when a host leaves: those messages were a host's.
function markHosts() {
  for (const who of timeline.querySelectorAll('.msg .who')) {
    if (state.hosts.has(who.dataset.name) && !who.querySelector('.host-badge')) who.append(hostBadge());
  }
  for (const node of timeline.querySelectorAll('.msg')) {
    if (state.hosts.has(node.dataset.from)) node.classList.add('from-host');
  }
  $('me-host').hidden = !state.hosts.has(state.me);
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
  const pane = [...panes.values()].find((candidate) => candidate.node === node.parentElement);
  if (pane && node === pane.node.lastElementChild) pane.lastGroup = null;
  node.remove();
}

// A one-line notice in a conversation's pane, the room's unless told
// (joins, leaves, the inbox, a gap, the mode).
function addNotice(text, { ts = Date.now(), kind = 'presence', conversation = null } = {}) {
  const pane = paneFor(conversation);
  const follow = !pane.node.hidden && isAtBottom();
  addDayDividerIfNeeded(ts, pane);
  const node = el('p', `notice notice-${kind}`);
  node.append(el('span', null, text));
  if (kind === 'presence') node.append(el('time', 'time', ` · ${formatTime(ts)}`));
  pane.node.append(node);
  pane.lastGroup = null;
  if (follow) scrollToBottom();
  return node;
}

function addDivider(text, { scroll = true, conversation = null } = {}) {
  const pane = paneFor(conversation);
  const node = el('div', 'divider');
  node.setAttribute('role', 'separator');
  node.append(el('span', null, text));
  pane.node.append(node);
  pane.lastGroup = null;
  if (scroll && !pane.node.hidden) scrollToBottom();
  return node;
}

function addDayDividerIfNeeded(ts, pane) {
  const day = new Date(ts).toDateString();
  if (day === pane.lastDay) return;
  pane.lastDay = day;
  const node = el('div', 'divider day');
  node.setAttribute('role', 'separator');
  node.append(el('span', null, dayLabel(ts)));
  pane.node.append(node);
  pane.lastGroup = null;
}

// What an empty conversation says: who reads what is written there.
function addEmptyState(conversation) {
  const node = el('div', 'empty-state');
  node.append(el('p', 'empty-title', t('empty.title')));
  node.append(el('p', null, conversation === null ? t('empty.room') : t('empty.private', { name: conversation })));
  paneFor(conversation).node.append(node);
}

function removeEmptyState(pane) {
  const node = pane.node.querySelector('.empty-state');
  if (node) node.remove();
}

// Presence. Join and leave notices wait in `presence.queue` until the next
// animation frame (or, in a hidden tab, where frames do not run, a short
// timer); then all of them are applied at once: the people list is drawn
// once, one notice says who came and went, and the timeline scrolls once.
// Handling each notice on its own (a list rebuilt and a layout forced per
// notice) froze the page for seconds under a storm of them.
const presence = { queue: [], scheduled: false, notices: [] };

function queuePresence(frame) {
  presence.queue.push(frame);
  if (presence.scheduled) return;
  presence.scheduled = true;
  if (document.hidden) {
    setTimeout(flushPresence, HIDDEN_FLUSH_MS);
  } else {
    requestAnimationFrame(flushPresence);
  }
}

function flushPresence() {
  presence.scheduled = false;
  const events = presence.queue;
  presence.queue = [];
  if (events.length === 0) return;
  const online = new Set(state.online);
  const joined = [];
  const left = [];
  let newHost = false;
  for (const frame of events) {
    learnClock(frame.ts);
    if (frame.type === 'join') {
      online.add(frame.name);
      if (frame.host === true) {
        state.hosts.add(frame.name);
        newHost = true;
      } else {
        state.hosts.delete(frame.name);
      }
      joined.push(frame.host === true ? t('names.host', { name: frame.name }) : frame.name);
    } else {
      online.delete(frame.name);
      state.hosts.delete(frame.name);
      left.push(frame.name);
    }
  }
  state.online = [...online].sort();
  if (newHost) markHosts();
  renderUsers();
  const ts = events[events.length - 1].ts;
  addPresenceNotice(joined, left, ts);
  // The person of an open private conversation coming or going is said there too.
  for (const frame of events) {
    if (panes.has(frame.name)) {
      addNotice(t(frame.type === 'join' ? 'conversation.online' : 'conversation.offline', { name: frame.name }),
        { ts, conversation: frame.name });
    }
  }
}

// One notice for a frame's worth of presence: "alice and bob joined",
// "alice, bob and 12 others joined · carol left". Only the last
// PRESENCE_NOTICES_KEPT of them stay in the timeline.
function addPresenceNotice(joined, left, ts) {
  const parts = [];
  if (joined.length > 0) parts.push(t('joined', { names: namesInShort(joined) }));
  if (left.length > 0) parts.push(t('left', { names: namesInShort(left) }));
  const node = addNotice(parts.join(' · '), { ts: Number.isFinite(ts) ? ts : Date.now() });
  presence.notices.push(node);
  if (presence.notices.length > PRESENCE_NOTICES_KEPT) presence.notices.shift().remove();
}

function namesInShort(names) {
  const unique = [...new Set(names)];
  if (unique.length === 1) return unique[0];
  if (unique.length <= PRESENCE_NAMES_SHOWN) {
    return t('names.two', { first: unique.slice(0, -1).join(', '), last: unique[unique.length - 1] });
  }
  const first = unique.slice(0, PRESENCE_NAMES_SHOWN - 1).join(', ');
  return t('names.many', { first, count: unique.length - PRESENCE_NAMES_SHOWN + 1 });
}

// The conversations: the room, who is online, then the people I have
// talked with privately who are not; each with its unread count, and a
// click opens it. Drawn again as a whole (at most once per animation frame
// for presence); the keyboard focus stays on the same person's button.
function renderUsers() {
  const focused = document.activeElement && document.activeElement.closest('#people .person')
    ? document.activeElement : null;
  const list = $('user-list');
  list.replaceChildren();
  for (const name of state.online) {
    const item = el('li', 'person');
    if (name === state.me) {
      const self = el('span', 'user self');
      self.append(avatarNode(name), el('span', 'user-name', name));
      if (state.hosts.has(name)) self.append(hostBadge());
      self.append(el('span', 'you-tag', t('you.tag')));
      item.append(self);
    } else {
      item.append(userButton(name, true));
      if (state.amHost) item.append(personMenuButton(name));
    }
    list.append(item);
  }
  $('online-count').textContent = String(state.online.length);
  $('people-toggle-count').textContent = String(state.online.length);

  const away = [...state.contacts].filter((name) => !state.online.includes(name)).sort();
  const awayList = $('offline-list');
  awayList.replaceChildren(...away.map((name) => {
    const item = el('li', 'person');
    item.append(userButton(name, false));
    if (state.amHost) item.append(personMenuButton(name));
    return item;
  }));
  awayList.hidden = away.length === 0;
  $('offline-heading').hidden = away.length === 0;

  $('room-button').setAttribute('aria-pressed', String(state.privateTo === null));
  renderBadge($('room-unread'), state.unread.get(null));
  if (focused && !focused.isConnected) refocus(focused);
  relinkMenu();
  renderPrivateChip();
  renderModeLine();
}

// The button in the redrawn list that stands where `old` stood: the same
// person's, of the same kind (their name, or the host's menu).
function refocus(old) {
  const name = old.dataset.name;
  const again = Array.from(document.querySelectorAll(`#people .${old.classList[0]}`))
    .find((button) => button.dataset.name === name);
  if (again) again.focus();
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
  button.dataset.name = name;
  button.title = online ? t('user.title', { name }) : t('user.titleAway', { name });
  button.setAttribute('aria-pressed', String(name === state.privateTo));
  button.append(avatarNode(name), el('span', 'user-name', name));
  if (online && state.hosts.has(name)) button.append(hostBadge());
  if (state.amHost && isMuted(name)) button.append(el('span', 'muted-tag', t('muted.tag')));
  if (state.amHost && state.banned.has(name)) button.append(el('span', 'muted-tag', t('banned.tag')));
  if (!online) button.append(el('span', 'offline-tag', t('offline.tag')));
  const badge = el('span', 'unread-badge');
  renderBadge(badge, state.unread.get(name));
  button.append(badge);
  button.addEventListener('click', () => {
    openConversation(name);
    togglePeople(false);
  });
  return button;
}

// An unread badge: the count ("@3" when one of them mentions me), and for
// screen readers the same in words. Hidden when nothing is unread.
function renderBadge(badge, unread) {
  const count = unread ? unread.count : 0;
  badge.hidden = count === 0;
  badge.classList.toggle('is-mention', count > 0 && unread.mentions > 0);
  if (count === 0) {
    badge.replaceChildren();
    return;
  }
  const shown = el('span', null, `${unread.mentions > 0 ? '@' : ''}${count}`);
  shown.setAttribute('aria-hidden', 'true');
  const words = unread.mentions > 0 ? t('unread.mention', { count }) : t('unread', { count });
  badge.replaceChildren(shown, el('span', 'visually-hidden', words));
}

function renderPrivateChip() {
  const name = state.privateTo;
  $('private-chip').hidden = name === null;
  $('private-name').textContent = name || '';
  $('private-away').hidden = name === null || state.online.includes(name);
  $('composer').classList.toggle('is-private', name !== null);
  input.placeholder = name === null ? t('placeholder.room') : t('placeholder.private', { name });
}

// Opens a conversation: the room (null) or the private one with `name`.
// Its pane is shown and read, and the message box writes to it.
function openConversation(conversation) {
  state.privateTo = conversation;
  const pane = paneFor(conversation);
  for (const other of panes.values()) other.node.hidden = other !== pane;
  if (!pane.node.querySelector('.msg, .notice, .empty-state')) addEmptyState(conversation);
  scrollToBottom();
  markRead(conversation);
  renderUsers();
  renderTyping();
  input.focus();
}

/* Unread counts -------------------------------------------------------- */

// A message that was not on screen came: it is unread unless its
// conversation is open in a visible tab. Live ones (not a history loaded
// at start) also make a sound, a notification, and a word for screen
// readers (section 8).
function arrived(message, { live }) {
  const conversation = conversationOf(message);
  const looking = conversation === state.privateTo && !document.hidden;
  if (message.from === state.me || looking) {
    if (conversation === state.privateTo) markRead(conversation);
    if (message.from === state.me) return;
  } else {
    // The first unread message of a conversation not read here before:
    // remember that everything before it was read, so a reload counts it.
    const key = conversation === null ? '' : conversation;
    if (!(key in state.read) && Number.isInteger(message.seq)) {
      state.read[key] = message.seq - 1;
      saveRead();
    }
    const unread = state.unread.get(conversation) || { count: 0, mentions: 0 };
    unread.count += 1;
    if (mentionsMe(message)) unread.mentions += 1;
    state.unread.set(conversation, unread);
    renderUnread();
  }
  if (live) alertOf(message, conversation);
}

// A conversation is read up to its last message: remembered (its seq) in
// localStorage, and its count goes.
function markRead(conversation) {
  const pane = panes.get(conversation);
  const key = conversation === null ? '' : conversation;
  if (pane && pane.maxSeq !== null && !(state.read[key] >= pane.maxSeq)) {
    state.read[key] = pane.maxSeq;
    saveRead();
  }
  if (state.unread.delete(conversation)) renderUnread();
}

// The total, in the tab title and on the favicon; each count in the list.
function renderUnread() {
  let total = 0;
  let mentions = 0;
  for (const unread of state.unread.values()) {
    total += unread.count;
    mentions += unread.mentions;
  }
  document.title = total > 0 ? `(${total}) ${BASE_TITLE}` : BASE_TITLE;
  renderFavicon(total, mentions > 0);
  $('people-toggle').classList.toggle('has-unread', total > 0);
  renderUsers();
}

// The favicon with the total on a red dot (an SVG made here: nothing to
// load), or the plain one.
const favicon = document.querySelector('link[rel="icon"]');
const PLAIN_FAVICON = favicon.getAttribute('href');
const FAVICON_DRAWING = '<rect width="64" height="64" rx="14" fill="#4f46e5"/>'
  + '<path d="M16 18h32a4 4 0 0 1 4 4v16a4 4 0 0 1-4 4H30l-9 8v-8h-5a4 4 0 0 1-4-4V22a4 4 0 0 1 4-4z" fill="#fff"/>';

function renderFavicon(total, mention) {
  let href = PLAIN_FAVICON;
  if (total > 0) {
    const label = `${mention ? '@' : ''}${total > 99 ? '99+' : total}`;
    const size = label.length > 2 ? 15 : 22;
    href = `data:image/svg+xml,${encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
      + `${FAVICON_DRAWING}<circle cx="44" cy="20" r="20" fill="#dc2626"/>`
      + `<text x="44" y="${20 + size * 0.36}" font-size="${size}" font-family="sans-serif" font-weight="bold" `
      + `text-anchor="middle" fill="#fff">${label}</text></svg>`)}`;
  }
  if (favicon.getAttribute('href') !== href) favicon.setAttribute('href', href);
}

// Does this message mention me: "@name", in any case, not followed by a
// letter or digit (so @al does not mention alice)?
function mentionsMe(message) {
  if (state.me === null || message.from === state.me || typeof message.text !== 'string') return false;
  const text = message.text.toLocaleLowerCase();
  const needle = `@${state.me.toLocaleLowerCase()}`;
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + 1)) {
    const next = text.slice(at + needle.length);
    if (next === '' || !/^[\p{L}\p{N}_]/u.test(next)) return true;
  }
  return false;
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) return;
  markRead(state.privateTo);
  reconnectNow(); // phones may have suspended the tab and its socket
});

/* Typing ---------------------------------------------------------------- */

let typingTimer = null;

// "bob is typing…" under the open conversation, for as long as each notice
// lasts; the names whose time is up are forgotten.
function renderTyping() {
  clearTimeout(typingTimer);
  const now = Date.now();
  let soonest = Infinity;
  for (const [conversation, names] of state.typing) {
    for (const [name, until] of names) {
      if (until <= now) names.delete(name);
      else soonest = Math.min(soonest, until);
    }
    if (names.size === 0) state.typing.delete(conversation);
  }
  const names = [...(state.typing.get(state.privateTo) || new Map()).keys()];
  let text = '';
  if (names.length === 1) text = t('typing.one', { name: names[0] });
  else if (names.length === 2) text = t('typing.two', { first: names[0], second: names[1] });
  else if (names.length > 2) text = t('typing.many', { count: names.length });
  $('typing').textContent = text;
  if (soonest !== Infinity) typingTimer = setTimeout(renderTyping, soonest - now);
}

// Their message came: they are no longer typing it.
function stopTyping(conversation, name) {
  const names = state.typing.get(conversation);
  if (names && names.delete(name)) renderTyping();
}

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
  return new Date(ts).toLocaleTimeString(I18n.lang, { hour: 'numeric', minute: '2-digit' });
}

function dayLabel(ts) {
  const day = new Date(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (day.toDateString() === today.toDateString()) return t('today');
  if (day.toDateString() === yesterday.toDateString()) return t('yesterday');
  return day.toLocaleDateString(I18n.lang, { weekday: 'long', day: 'numeric', month: 'long' });
}

/* ------------------------------------------------------------------ */
/* 4. Composer                                                         */
/* ------------------------------------------------------------------ */

function isConnected() {
  return Transport.isOpen();
}

function send() {
  const text = input.value.trim();
  if (text === '' && !Files.attached()) return;
  // The mode line already says why, and the text stays in the box.
  if (sendBlocked()) return;
  if (!isConnected()) {
    showError(t('notConnected'));
    return;
  }
  // An attached file still uploading: files.js calls send() again when done.
  const file = Files.readyToSend();
  if (file === false) return;
  const frame = state.privateTo === null
    ? { type: 'message', text }
    : { type: 'private', to: state.privateTo, text };
  if (file) frame.file = file.id;
  Transport.send(frame);
  state.lastSent = frame;
  Files.sent();
  input.value = '';
  closeMentions();
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
    button.textContent = t('delete.armed');
    button.title = t('delete.armedTitle');
    clearTimeout(disarmTimers.get(button));
    disarmTimers.set(button, setTimeout(() => disarmDelete(button), DELETE_ARMED_MS));
    return;
  }
  if (!isConnected()) {
    showError(t('notConnected.delete'));
    disarmDelete(button);
    return;
  }
  clearTimeout(disarmTimers.get(button));
  Transport.send({ type: 'delete', id });
  button.disabled = true;
  button.textContent = t('delete.busy');
  clearError();
}

function disarmDelete(button) {
  clearTimeout(disarmTimers.get(button));
  button.dataset.armed = 'false';
  button.disabled = false;
  button.textContent = t('delete');
  button.title = t('delete.title');
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
  if (mentionKey(event)) return; // the list of names after @ took it
  // isComposing: Enter that confirms an IME candidate (Chinese, Japanese…)
  // must not send the half-typed message.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  } else if (event.key === 'Escape' && state.privateTo !== null) {
    openConversation(null);
  }
});

input.addEventListener('input', () => {
  autoGrow();
  clearError();
  sendTyping();
  renderMentions();
});
input.addEventListener('blur', closeMentions);
// The caret moved (arrows, a click): the name being typed after @ may have changed.
input.addEventListener('click', renderMentions);

$('private-cancel').addEventListener('click', () => openConversation(null));
$('room-button').addEventListener('click', () => {
  openConversation(null);
  togglePeople(false);
});

// Tells the others I am typing in the open conversation: at most every
// TYPING_EVERY_MS while the box changes (the server drops more), and only
// what could be sent. A change within that time is told when it is over,
// so a short burst of typing right after a message is not lost.
let typingLater = null;

function sendTyping() {
  if (input.value.trim() === '' || !isConnected() || sendBlocked()) return;
  const wait = state.lastTyping + TYPING_EVERY_MS - Date.now();
  if (wait > 0) {
    if (typingLater === null) {
      typingLater = setTimeout(() => {
        typingLater = null;
        sendTyping();
      }, wait);
    }
    return;
  }
  state.lastTyping = Date.now();
  Transport.send(state.privateTo === null ? { type: 'typing' } : { type: 'typing', to: state.privateTo });
}

/* Mentions: typing @ offers the people online ---------------------------- */

const mentionList = $('mention-list');
let mentionChoice = 0; // the highlighted name in the list

// The "@fragment" just before the caret, or null.
function mentionAtCaret() {
  const before = input.value.slice(0, input.selectionStart);
  const match = before.match(/(^|\s)@([^\s@]*)$/u);
  return match ? { start: before.length - match[2].length - 1, fragment: match[2] } : null;
}

// The people online (not me) whose name starts with what follows the @;
// none once it is a whole name (then Enter sends, as usual).
function mentionCandidates() {
  const at = mentionAtCaret();
  if (at === null) return [];
  const fragment = at.fragment.toLocaleLowerCase();
  if (state.online.some((name) => name.toLocaleLowerCase() === fragment)) return [];
  return state.online
    .filter((name) => name !== state.me && name.toLocaleLowerCase().startsWith(fragment))
    .slice(0, MENTIONS_OFFERED);
}

// The list above the box: a listbox the arrows move through (the focus
// stays in the box; aria-activedescendant says which name is highlighted;
// a textarea may not carry aria-expanded, so the list's presence is all).
function renderMentions() {
  const names = mentionCandidates();
  if (names.length === 0) {
    closeMentions();
    return;
  }
  mentionChoice = Math.min(mentionChoice, names.length - 1);
  mentionList.replaceChildren(...names.map((name, index) => {
    const option = el('li', 'mention-option');
    option.id = `mention-${index}`;
    option.setAttribute('role', 'option');
    option.setAttribute('aria-selected', String(index === mentionChoice));
    option.append(avatarNode(name), el('span', null, name));
    // mousedown, not click: the box keeps the focus (and its caret).
    option.addEventListener('mousedown', (event) => {
      event.preventDefault();
      pickMention(name);
    });
    return option;
  }));
  mentionList.hidden = false;
  input.setAttribute('aria-activedescendant', `mention-${mentionChoice}`);
}

function closeMentions() {
  if (mentionList.hidden) return;
  mentionList.hidden = true;
  mentionList.replaceChildren();
  mentionChoice = 0;
  input.removeAttribute('aria-activedescendant');
}

// Replaces the "@fragment" at the caret with "@name ".
function pickMention(name) {
  const at = mentionAtCaret();
  if (at === null) return;
  const after = input.value.slice(input.selectionStart);
  const before = `${input.value.slice(0, at.start)}@${name} `;
  input.value = before + after;
  input.setSelectionRange(before.length, before.length);
  closeMentions();
  autoGrow();
}

// Keys while the list is open: arrows move, Enter or Tab picks, Escape
// closes. Returns whether the key was the list's.
function mentionKey(event) {
  if (mentionList.hidden || event.isComposing) return false;
  const count = mentionList.children.length;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    mentionChoice = (mentionChoice + (event.key === 'ArrowDown' ? 1 : count - 1)) % count;
    renderMentions();
  } else if (event.key === 'Enter' || event.key === 'Tab') {
    pickMention(mentionCandidates()[mentionChoice]);
  } else if (event.key === 'Escape') {
    closeMentions();
  } else {
    return false;
  }
  event.preventDefault();
  return true;
}

/* ------------------------------------------------------------------ */
/* 5. Mode line                                                        */
/* ------------------------------------------------------------------ */

// Why I cannot send what the box holds right now (blocked: true), or what
// to know about the mode (blocked: false), or null. `timed`: it changes by
// itself (a countdown, a mute that ends), so it is worked out every second.
function modeLine() {
  if (state.me === null) return null;
  const mode = state.mode;
  if (state.hosts.has(state.me)) {
    const active = activeModes(mode);
    if (active.length === 0) return null;
    return { text: t('mode.hostLine', { modes: active.join(' · ') }), blocked: false };
  }
  const to = state.privateTo;
  const toHost = to !== null && state.hosts.has(to);
  const hostOnline = state.hosts.size > 0;
  if (state.mutedUntil !== null && state.mutedUntil <= serverNow()) state.mutedUntil = null;
  if (state.mutedUntil !== null && !toHost) {
    const hint = hostOnline ? t('mode.hintHostPrivately') : '';
    return { text: t('mode.mutedUntil', { time: formatTime(state.mutedUntil) }) + hint, blocked: true, timed: true };
  }
  if (to === null) {
    if (mode.announce) {
      const hint = hostOnline ? t('mode.hintHostPrivately') : '';
      return { text: t('mode.announceOnly') + hint, blocked: true };
    }
    if (mode.slow > 0) {
      const left = state.lastRoomSent === null ? 0 : state.lastRoomSent + mode.slow * 1000 - Date.now();
      if (left > 0) {
        return { text: t('mode.slowWait', { seconds: Math.ceil(left / 1000) }), blocked: true, timed: true };
      }
      return { text: t('mode.slowEvery', { duration: duration(mode.slow) }), blocked: false };
    }
  } else if (!toHost && !mode.private) {
    const hint = hostOnline ? t('mode.hintHost') : '';
    return { text: t('mode.privateOff') + hint, blocked: true };
  }
  return null;
}

function activeModes(mode) {
  const active = [];
  if (mode.announce) active.push(t('mode.announce'));
  if (mode.slow > 0) active.push(t('mode.slow', { duration: duration(mode.slow) }));
  if (!mode.private) active.push(t('mode.noPrivate'));
  if (!mode.uploads) active.push(t('mode.noUploads'));
  return active;
}

function sendBlocked() {
  const line = modeLine();
  return line !== null && line.blocked;
}

let modeTimer = null;

// Shows the mode line, disables Send while it blocks, and keeps a
// one-second tick while something in it runs out by itself.
function renderModeLine() {
  const line = modeLine();
  const node = $('composer-mode');
  node.textContent = line ? line.text : '';
  node.classList.toggle('is-blocking', line !== null && line.blocked);
  $('composer').classList.toggle('is-blocked', line !== null && line.blocked);
  sendButton.disabled = line !== null && line.blocked;
  const ticking = (line !== null && line.timed === true) || (state.amHost && state.muted.size > 0);
  if (ticking && modeTimer === null) modeTimer = setInterval(tick, 1000);
  if (!ticking && modeTimer !== null) {
    clearInterval(modeTimer);
    modeTimer = null;
  }
}

function tick() {
  // A host's list of the muted drops the mutes that ended (no frame says so).
  let ended = false;
  for (const [name, until] of state.muted) {
    if (until <= serverNow()) {
      state.muted.delete(name);
      ended = true;
    }
  }
  if (ended) {
    renderHostPanel();
    renderUsers();
  }
  renderModeLine();
}

// A refusal teaches what the page did not know: that I am muted (after a
// reload, only the host's page is told), or how long slow mode still holds.
function learnRefusal(frame) {
  if (frame.code === 'muted' && Number.isFinite(frame.until)) state.mutedUntil = frame.until;
  if (frame.code === 'slow_mode' && Number.isFinite(frame.retry_after_ms)) {
    state.lastRoomSent = Date.now() + frame.retry_after_ms - state.mode.slow * 1000;
  }
  renderModeLine();
}

function isMuted(name) {
  const until = state.muted.get(name);
  return until !== undefined && until > serverNow();
}

// 45 -> "45 s", 120 -> "2 min".
function duration(seconds) {
  return seconds >= 60 && seconds % 60 === 0 ? t('minutes', { n: seconds / 60 }) : t('seconds', { n: seconds });
}

/* ------------------------------------------------------------------ */
/* 6. Host tools                                                       */
/* ------------------------------------------------------------------ */

// Sends a host frame (or a delete). An error that comes back is about it,
// not about a message whose text should be given back.
function sendHost(frame) {
  if (!isConnected()) {
    showError(t('notConnected.host'));
    return false;
  }
  Transport.send(frame);
  state.lastSent = null;
  clearError();
  return true;
}

// Two clicks for what loses something: the first arms the button (it says
// what the second will do), the second returns true. It disarms by itself
// after a while, or when focus leaves it.
function confirmed(button, armedText) {
  if (button.dataset.armed === 'true') {
    disarm(button);
    return true;
  }
  button.dataset.armed = 'true';
  button.dataset.idleText = button.textContent;
  button.textContent = armedText;
  clearTimeout(disarmTimers.get(button));
  disarmTimers.set(button, setTimeout(() => disarm(button), DELETE_ARMED_MS));
  if (button.dataset.disarmsOnBlur !== 'true') {
    button.dataset.disarmsOnBlur = 'true';
    button.addEventListener('blur', () => disarm(button));
  }
  return false;
}

function disarm(button) {
  clearTimeout(disarmTimers.get(button));
  if (button.dataset.armed !== 'true') return;
  button.dataset.armed = 'false';
  button.textContent = button.dataset.idleText;
}

// The one menu, reused: its items are built each time it opens.
const menu = el('div', 'menu');
menu.id = 'host-menu';
menu.setAttribute('role', 'menu');
menu.hidden = true;
document.body.append(menu);
let menuTrigger = null;

function menuButton(className, label) {
  const button = el('button', className, '⋯');
  button.type = 'button';
  button.title = t('host.actions');
  button.setAttribute('aria-label', label);
  button.setAttribute('aria-haspopup', 'menu');
  button.setAttribute('aria-expanded', 'false');
  button.setAttribute('aria-controls', 'host-menu');
  return button;
}

function personMenuButton(name) {
  const label = t('host.actionsFor', { name });
  const button = menuButton('person-menu', label);
  button.dataset.name = name;
  button.addEventListener('click', () => toggleMenu(button, label, () => [{ heading: name }, ...personItems(name)]));
  return button;
}

// What a host may do about a person. Each item: label, run, and for those
// that lose something, the text that asks for the second click.
function personItems(name) {
  const items = [];
  if (isMuted(name)) {
    items.push({
      label: t('host.unmuteUntil', { time: formatTime(state.muted.get(name)) }),
      run: () => sendHost({ type: 'unmute', name }),
    });
  }
  for (const minutes of MUTE_MINUTES) {
    items.push({ label: t('host.muteFor', { minutes }), run: () => sendHost({ type: 'mute', name, minutes }) });
  }
  items.push({
    label: t('host.kick'),
    confirm: t('host.kickConfirm', { name }),
    danger: true,
    run: () => sendHost({ type: 'kick', name }),
  });
  if (state.banned.has(name)) {
    items.push({ label: t('host.unban'), run: () => sendHost({ type: 'unban', name }) });
  } else {
    items.push({
      label: t('host.ban'),
      confirm: t('host.banConfirm', { name }),
      danger: true,
      run: () => sendHost({ type: 'ban', name }),
    });
  }
  items.push({
    label: t('host.releaseName'),
    confirm: t('host.releaseConfirm', { name }),
    danger: true,
    run: () => sendHost({ type: 'release', name }),
  });
  return items;
}

function messageItems(message) {
  const items = [];
  if (message.type === 'message') {
    items.push({
      label: t('host.deleteMessage'),
      confirm: t('host.deleteConfirm'),
      danger: true,
      run: () => sendHost({ type: 'delete', id: message.id }),
    });
  }
  if (message.from !== state.me) items.push({ heading: message.from }, ...personItems(message.from));
  return items;
}

function toggleMenu(trigger, label, items) {
  if (menuTrigger === trigger && !menu.hidden) {
    closeMenu(true);
    return;
  }
  openMenu(trigger, label, items());
}

function openMenu(trigger, label, items) {
  closeMenu(false);
  menu.replaceChildren();
  menu.setAttribute('aria-label', label);
  for (const item of items) {
    if (item.heading !== undefined) {
      // The menu's aria-label already names the person.
      const heading = el('p', 'menu-heading', item.heading);
      heading.setAttribute('aria-hidden', 'true');
      menu.append(heading);
      continue;
    }
    const button = el('button', item.danger ? 'menu-item danger' : 'menu-item', item.label);
    button.type = 'button';
    button.tabIndex = -1;
    button.setAttribute('role', 'menuitem');
    button.addEventListener('click', () => {
      if (item.confirm && !confirmed(button, item.confirm)) return;
      closeMenu(true);
      item.run();
    });
    menu.append(button);
  }
  menuTrigger = trigger;
  trigger.setAttribute('aria-expanded', 'true');
  menu.hidden = false;
  placeMenu();
  const first = menuItems()[0];
  if (first) first.focus();
}

function closeMenu(returnFocus) {
  if (menu.hidden) return;
  menu.hidden = true;
  const trigger = menuTrigger;
  menuTrigger = null;
  if (!trigger) return;
  trigger.setAttribute('aria-expanded', 'false');
  if (returnFocus) (trigger.isConnected ? trigger : input).focus();
}

function menuItems() {
  return Array.from(menu.querySelectorAll('.menu-item'));
}

// Below its button, or above when there is no room; inside the window.
function placeMenu() {
  if (menu.hidden || !menuTrigger) return;
  const margin = 8;
  const anchor = menuTrigger.getBoundingClientRect();
  const width = menu.offsetWidth;
  const height = menu.offsetHeight;
  const left = Math.max(margin, Math.min(anchor.left, window.innerWidth - width - margin));
  let top = anchor.bottom + 4;
  if (top + height > window.innerHeight - margin) top = Math.max(margin, anchor.top - height - 4);
  menu.style.left = `${left}px`;
  menu.style.top = `${top}px`;
}

// The people list is drawn again on every join and leave: an open menu
// follows its person's new button, or closes when the person is gone.
function relinkMenu() {
  if (menu.hidden || !menuTrigger || menuTrigger.isConnected) return;
  const name = menuTrigger.dataset.name;
  const again = name === undefined ? null
    : Array.from(document.querySelectorAll('#people .person-menu')).find((b) => b.dataset.name === name);
  if (!again) {
    closeMenu(false);
    return;
  }
  menuTrigger = again;
  again.setAttribute('aria-expanded', 'true');
  placeMenu();
}

menu.addEventListener('keydown', (event) => {
  const items = menuItems();
  const index = items.indexOf(document.activeElement);
  const focusAt = (i) => items[(i + items.length) % items.length].focus();
  switch (event.key) {
    case 'ArrowDown': focusAt(index + 1); break;
    case 'ArrowUp': focusAt(index < 0 ? -1 : index - 1); break;
    case 'Home': focusAt(0); break;
    case 'End': focusAt(-1); break;
    case 'Escape':
    case 'Tab':
      closeMenu(true);
      break;
    default:
      return;
  }
  event.preventDefault();
  event.stopPropagation(); // Escape closes the menu, not the people drawer too
});

document.addEventListener('pointerdown', (event) => {
  if (menu.hidden || menu.contains(event.target)) return;
  if (menuTrigger && menuTrigger.contains(event.target)) return; // its click toggles
  closeMenu(false);
});

// New messages scroll the timeline: an open menu stays by its button, and
// closes once the button is out of sight.
function followMenu() {
  if (menu.hidden || !menuTrigger) return;
  const anchor = menuTrigger.getBoundingClientRect();
  const view = (menuTrigger.closest('.timeline, .people') || document.body).getBoundingClientRect();
  if (!menuTrigger.isConnected || anchor.bottom < view.top || anchor.top > view.bottom) {
    closeMenu(false);
    return;
  }
  placeMenu();
}
timeline.addEventListener('scroll', followMenu);
$('people').addEventListener('scroll', followMenu);
window.addEventListener('resize', followMenu);

// The host panel: it shows the mode as the server last said it; a change
// is sent, and shown for good when the `mode` frame comes back.
function renderHostPanel() {
  $('host-panel').hidden = !state.amHost;
  if (!state.amHost) return;
  $('mode-announce').checked = state.mode.announce;
  $('mode-private').checked = state.mode.private;
  $('mode-uploads').checked = state.mode.uploads;
  const slow = $('mode-slow');
  const value = String(state.mode.slow);
  if (!Array.from(slow.options).some((option) => option.value === value)) {
    slow.append(new Option(duration(state.mode.slow), value)); // set by another host
  }
  slow.value = value;

  const mutedList = $('muted-list');
  const muted = [...state.muted].filter(([, until]) => until > serverNow()).sort((a, b) => a[1] - b[1]);
  mutedList.replaceChildren(...muted.map(([name, until]) => hostListItem(
    name, t('host.until', { time: formatTime(until) }), t('host.unmute'), t('host.unmuteName', { name }),
    () => sendHost({ type: 'unmute', name }),
  )));
  if (muted.length === 0) mutedList.append(el('li', 'host-list-empty', t('host.nobody')));

  const bannedList = $('banned-list');
  const banned = [...state.banned].sort();
  bannedList.replaceChildren(...banned.map((name) => hostListItem(
    name, '', t('host.unban'), t('host.unbanName', { name }), () => sendHost({ type: 'unban', name }),
  )));
  if (banned.length === 0) bannedList.append(el('li', 'host-list-empty', t('host.nobody')));
}

function hostListItem(name, detail, action, label, run) {
  const item = el('li');
  const who = el('span', 'host-list-name', name);
  item.append(who);
  if (detail) item.append(el('span', 'host-list-detail', detail));
  const button = el('button', 'btn-quiet host-list-action', action);
  button.type = 'button';
  button.setAttribute('aria-label', label);
  button.addEventListener('click', run);
  item.append(button);
  return item;
}

function sendMode(change) {
  if (!sendHost({ type: 'mode', ...change })) renderHostPanel(); // not sent: show the mode as it is
}

for (const seconds of SLOW_CHOICES) {
  const label = seconds === 0 ? t('host.slowOff') : t('host.slowEvery', { duration: duration(seconds) });
  $('mode-slow').append(new Option(label, String(seconds)));
}
$('mode-announce').addEventListener('change', (event) => sendMode({ announce: event.target.checked }));
$('mode-private').addEventListener('change', (event) => sendMode({ private: event.target.checked }));
$('mode-uploads').addEventListener('change', (event) => sendMode({ uploads: event.target.checked }));
$('mode-slow').addEventListener('change', (event) => sendMode({ slow: Number(event.target.value) }));

$('clear-history').addEventListener('click', (event) => {
  if (confirmed(event.currentTarget, t('host.clearConfirm'))) sendHost({ type: 'clear' });
});

$('release-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('release-name').value.trim();
  if (name === '') return;
  if (!confirmed($('release-submit'), t('host.releaseSure'))) return;
  if (sendHost({ type: 'release', name })) $('release-name').value = '';
});
$('release-name').addEventListener('input', () => disarm($('release-submit')));

/* ------------------------------------------------------------------ */
/* 7. Password                                                         */
/* ------------------------------------------------------------------ */

const passwordDialog = $('password-dialog');

$('password-open').addEventListener('click', () => {
  $('password-form').reset();
  $('password-error').textContent = '';
  $('password-user').value = state.me || ''; // for password managers
  passwordDialog.showModal();
});

$('password-cancel').addEventListener('click', () => passwordDialog.close());

$('password-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = new URLSearchParams({ password: $('new-password').value });
  const current = $('current-password').value;
  if (current !== '') body.set('current', current);
  const save = $('password-save');
  const error = $('password-error');
  save.disabled = true;
  error.textContent = '';
  try {
    const response = await fetch('/password', { method: 'POST', body, cache: 'no-store' });
    if (response.status === 204) {
      passwordDialog.close();
      addNotice(t('notice.passwordSet', { name: state.me }), { kind: 'mode' });
      return;
    }
    const reason = I18n.loginReason((await response.text()).trim());
    if (response.status === 401) {
      error.textContent = t('password.loggedOut');
    } else if (response.status === 403) {
      error.textContent = t('password.wrong');
      $('current-password').focus();
    } else {
      error.textContent = reason || t('password.refused', { status: response.status });
    }
  } catch {
    error.textContent = t('password.unreachable');
  } finally {
    save.disabled = false;
  }
});

/* ------------------------------------------------------------------ */
/* 8. Settings: language, sound, notifications; screen readers         */
/* ------------------------------------------------------------------ */

// localStorage key of the sound setting: 'all', 'personal' (mentions and
// private messages: the default) or 'off'.
const SOUND_KEY = 'lanchat.sound';
const SOUND_CHOICES = ['all', 'personal', 'off'];

function soundSetting() {
  try {
    const value = localStorage.getItem(SOUND_KEY);
    return SOUND_CHOICES.includes(value) ? value : 'personal';
  } catch {
    return 'personal';
  }
}

// What a live message from someone else sets off: a sound (by the
// setting), a system notification for what is for me while the tab is
// hidden, and a word for screen readers.
function alertOf(message, conversation) {
  const forMe = message.type === 'private' || mentionsMe(message);
  const setting = soundSetting();
  const seen = conversation === state.privateTo && !document.hidden;
  const wanted = setting === 'all' || (setting === 'personal' && forMe);
  if (wanted && (forMe || !seen)) beep();
  if (forMe && setting !== 'off' && document.hidden) notify(message, conversation);
  announce(message, conversation);
}

// A short two-note chime made by WebAudio: no audio file to load. Browsers
// let a page make sound only after the person has used it (a click, a
// key), so the audio context is made, or woken, on the first one.
let audio = null;

function wakeAudio() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  if (audio === null) audio = new Context();
  if (audio.state === 'suspended') audio.resume().catch(() => {});
}
document.addEventListener('pointerdown', wakeAudio);
document.addEventListener('keydown', wakeAudio);

let lastBeep = -Infinity; // audio time of the last chime, s

function beep() {
  if (audio === null || audio.state !== 'running') return; // nobody has used the page yet
  const start = audio.currentTime;
  if (start - lastBeep < BEEP_GAP_S) return; // a burst of messages: one chime
  lastBeep = start;
  for (const [offset, frequency] of [[0, 880], [0.12, 1320]]) {
    const tone = audio.createOscillator();
    const volume = audio.createGain();
    tone.frequency.value = frequency;
    volume.gain.setValueAtTime(0.0001, start + offset);
    volume.gain.exponentialRampToValueAtTime(0.2, start + offset + 0.02);
    volume.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.18);
    tone.connect(volume).connect(audio.destination);
    tone.start(start + offset);
    tone.stop(start + offset + 0.2);
  }
}

// System notifications exist only in a secure context (HTTPS, or
// localhost); a chat on a LAN address over plain HTTP has none, and the
// settings say so. No Web Push: nothing leaves the LAN.
function canNotify() {
  return window.isSecureContext && 'Notification' in window;
}

function notify(message, conversation) {
  if (!canNotify() || Notification.permission !== 'granted') return;
  const title = message.type === 'private'
    ? t('notify.private', { name: message.from })
    : t('notify.mention', { name: message.from });
  const shown = new Notification(title, { body: message.text, tag: `lanchat-${conversation ?? ''}` });
  shown.addEventListener('click', () => {
    window.focus();
    openConversation(conversation);
    shown.close();
  });
}

// Screen readers: the timeline itself is not live (a history of 100
// messages would be read out at once); new messages are said here, one by
// one when they come slowly, as "5 new messages" when they come in a burst.
const announcer = $('announcer');
let announced = [];
let announceTimer = null;

function announce(message, conversation) {
  announced.push({ message, conversation });
  if (announceTimer !== null) return;
  announceTimer = setTimeout(() => {
    const batch = announced;
    announced = [];
    announceTimer = null;
    if (batch.length > 1) {
      announcer.textContent = t('announce.many', { count: batch.length });
      return;
    }
    const [{ message: one, conversation: where }] = batch;
    announcer.textContent = where === state.privateTo
      ? t('announce.one', { name: one.from, text: one.text })
      : t('announce.elsewhere', { name: one.from });
  }, ANNOUNCE_WINDOW_MS);
}

// The settings dialog.
const settingsDialog = $('settings-dialog');
I18n.fillLanguageSelect($('language'));
$('sound').value = soundSetting();
$('sound').addEventListener('change', (event) => {
  try {
    localStorage.setItem(SOUND_KEY, event.target.value);
  } catch {
    // Storage disabled: the setting lasts for this page load.
  }
  wakeAudio();
  if (event.target.value !== 'off') beep(); // what it sounds like
});

function renderNotifyState() {
  let text;
  if (!window.isSecureContext) text = t('notify.insecure');
  else if (!('Notification' in window)) text = t('notify.unsupported');
  else if (Notification.permission === 'granted') text = t('notify.on');
  else if (Notification.permission === 'denied') text = t('notify.denied');
  else text = '';
  $('notify-state').textContent = text;
  $('notify-state').hidden = text === '';
  $('notify-on').hidden = !canNotify() || Notification.permission !== 'default';
}

$('notify-on').addEventListener('click', async () => {
  await Notification.requestPermission();
  renderNotifyState();
});

$('settings-open').addEventListener('click', () => {
  renderNotifyState();
  settingsDialog.showModal();
});

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

// Files and photos (files.js): attach, camera, paste and drop; uploads.
Files.init({ send, showError, clearError, canUpload: () => state.amHost || state.mode.uploads });
paneFor(null); // the room's pane comes first in the timeline

connect();
// Start in the message box, except on touch screens, where focusing it
// would pop up the keyboard over the conversation.
if (window.matchMedia('(pointer: fine)').matches) input.focus();
