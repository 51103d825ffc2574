/*
 * lanchat chat page: one WebSocket, a timeline, the people list, and a
 * message box; for the host, menus and a panel to run the class. No
 * framework, no build step; the wire format is the one in docs/PROTOCOL.md
 * (frames welcome, history, offline, join, leave, message, private,
 * deleted, error; mode, muted, unmuted, banned, unbanned, cleared; the
 * host frames the page sends; POST /password).
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
 *                  list. Text that users wrote is only ever put on the page
 *                  with textContent / text nodes, never innerHTML, so a
 *                  message like <img src=x onerror=alert(1)> shows up
 *                  literally. Hosts get a "host" badge in the people list
 *                  and on their messages, so nobody can pass as the
 *                  teacher: the badge comes from the server's `hosts`, never
 *                  from a name.
 *   4. Composer    Enter sends, Shift+Enter breaks the line, a click on a
 *                  name switches to private mode, a click on "Delete" (twice:
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
  unknown_user: 'Nobody has that name here.',
  bad_request: 'The server did not understand that.',
  not_found: 'That message is no longer there to delete.',
  forbidden: 'You are not allowed to do that.',
  muted: 'The host has muted you for now.',
  announce_only: 'Only the host can write to everyone right now.',
  slow_mode: 'Slow mode: wait a little before your next message.',
  private_off: 'Private messages between students are off right now.',
  unknown_file: 'That file is no longer on the server: attach it again.',
};

// Errors that answer a delete, not a message: no text to give back.
const DELETE_ERRORS = new Set(['not_found', 'forbidden']);

const GAP_TEXT = 'You missed more messages than the server keeps; showing the latest.';

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
  privateTo: null,     // whom the composer writes to privately; null = everyone
  historyShown: false, // the first history came: later connects ask for after=lastSeq
  unread: 0,           // messages received while the tab was hidden
  lastSent: null,      // the last frame sent, to give its text back on an error
  lastGroup: null,     // {key, ts} of the last message drawn, for grouping
  lastDay: null,       // the local day of the last message drawn, for day dividers
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
    if (!reconnect) state.storedSeq = storedSeq(frame.name);
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
    if (addMessage(frame)) countUnread(frame);
  },

  private(frame) {
    noteSeq(frame);
    learnClock(frame.ts);
    learnContacts([frame]);
    if (addMessage(frame)) countUnread(frame);
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
      addNotice(`The host muted you until ${until}.`, { kind: 'mode' });
    }
    if (state.amHost) {
      state.muted.set(frame.name, frame.until);
      if (frame.name !== state.me) addNotice(`${frame.name} is muted until ${until}.`, { kind: 'mode' });
      renderHostPanel();
      renderUsers();
    }
    renderModeLine();
  },

  unmuted(frame) {
    if (typeof frame.name !== 'string') return;
    if (frame.name === state.me) {
      state.mutedUntil = null;
      addNotice('The host unmuted you: you can write again.', { kind: 'mode' });
    }
    if (state.amHost) {
      state.muted.delete(frame.name);
      if (frame.name !== state.me) addNotice(`${frame.name} is no longer muted.`, { kind: 'mode' });
      renderHostPanel();
      renderUsers();
    }
    renderModeLine();
  },

  // To hosts only.
  banned(frame) {
    if (typeof frame.name !== 'string') return;
    state.banned.add(frame.name);
    addNotice(`${frame.name} is banned.`, { kind: 'mode' });
    renderHostPanel();
    renderUsers();
  },

  unbanned(frame) {
    if (typeof frame.name !== 'string') return;
    state.banned.delete(frame.name);
    addNotice(`${frame.name} may log in again.`, { kind: 'mode' });
    renderHostPanel();
    renderUsers();
  },

  // A host emptied the room history: the room messages leave everyone's
  // view (private ones are not part of it and stay).
  cleared() {
    for (const node of timeline.querySelectorAll('.msg:not(.private)')) node.remove();
    state.lastGroup = null;
    addNotice('The host cleared the history.', { kind: 'mode' });
  },

  error(frame) {
    const text = frame.message || ERROR_TEXT[frame.code] || 'The server refused that.';
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
    addNotice(after.announce
      ? 'Announce-only: only the host writes to everyone now.'
      : 'Announce-only is over: everyone can write again.', { kind: 'mode' });
  }
  if (after.slow !== before.slow) {
    addNotice(after.slow > 0
      ? `Slow mode: one message every ${duration(after.slow)}.`
      : 'Slow mode is off.', { kind: 'mode' });
  }
  if (after.private !== before.private) {
    addNotice(after.private
      ? 'Private messages between students are allowed again.'
      : 'Private messages between students are off (writing to the host still works).', { kind: 'mode' });
  }
  if (after.uploads !== before.uploads) {
    addNotice(after.uploads ? 'File uploads are on again.' : 'File uploads are off.', { kind: 'mode' });
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
    header.append(whoNode(message.from, mine ? 'You' : message.from));
    header.append(el('span', 'arrow', ' → '));
    header.append(whoNode(message.to, message.to === state.me ? 'you' : message.to));
    header.append(el('span', 'private-label', ' · private'));
  } else {
    const who = whoNode(message.from, mine ? 'You' : message.from);
    if (!mine) who.style.setProperty('--hue', hue(message.from));
    header.append(who);
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
    const reply = el('button', 'msg-action reply', 'Reply privately');
    reply.type = 'button';
    reply.addEventListener('click', () => setPrivateTo(message.from));
    body.append(reply);
  }

  // A host's menu on everyone else's messages (CSS shows it only on a
  // host's page: body.is-host): delete a room message, act on its author.
  if (!mine) {
    const label = `Host actions for this message from ${message.from}`;
    const more = menuButton('msg-action msg-menu host-only', label);
    more.addEventListener('click', () => toggleMenu(more, label, () => messageItems(message)));
    body.append(more);
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

// A name in a message header, followed by a "host" badge when it is a host.
// `label` is what is shown ("You", "you", or the name).
function whoNode(name, label) {
  const who = el('span', 'who', label);
  who.dataset.name = name;
  if (state.hosts.has(name)) who.append(hostBadge());
  return who;
}

function hostBadge() {
  const badge = el('span', 'host-badge', 'host');
  badge.title = 'Connected with the host link';
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
      joined.push(frame.host === true ? `${frame.name} (host)` : frame.name);
    } else {
      online.delete(frame.name);
      state.hosts.delete(frame.name);
      left.push(frame.name);
    }
  }
  state.online = [...online].sort();
  if (newHost) markHosts();
  renderUsers();
  addPresenceNotice(joined, left, events[events.length - 1].ts);
}

// One notice for a frame's worth of presence: "alice and bob joined",
// "alice, bob and 12 others joined · carol left". Only the last
// PRESENCE_NOTICES_KEPT of them stay in the timeline.
function addPresenceNotice(joined, left, ts) {
  const parts = [];
  if (joined.length > 0) parts.push(`${namesInShort(joined)} joined`);
  if (left.length > 0) parts.push(`${namesInShort(left)} left`);
  const node = addNotice(parts.join(' · '), { ts: Number.isFinite(ts) ? ts : Date.now() });
  presence.notices.push(node);
  if (presence.notices.length > PRESENCE_NOTICES_KEPT) presence.notices.shift().remove();
}

function namesInShort(names) {
  const unique = [...new Set(names)];
  if (unique.length === 1) return unique[0];
  if (unique.length <= PRESENCE_NAMES_SHOWN) return `${unique.slice(0, -1).join(', ')} and ${unique[unique.length - 1]}`;
  const shown = unique.slice(0, PRESENCE_NAMES_SHOWN - 1).join(', ');
  return `${shown} and ${unique.length - PRESENCE_NAMES_SHOWN + 1} others`;
}

// Who is online, then the people I have talked with privately who are
// not: both lists offer a click to write to them privately.
function renderUsers() {
  const list = $('user-list');
  list.replaceChildren();
  for (const name of state.online) {
    const item = el('li', 'person');
    if (name === state.me) {
      const self = el('span', 'user self');
      self.append(avatarNode(name), el('span', 'user-name', name));
      if (state.hosts.has(name)) self.append(hostBadge());
      self.append(el('span', 'you-tag', 'you'));
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
  relinkMenu();
  renderPrivateChip();
  renderModeLine();
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
  if (online && state.hosts.has(name)) button.append(hostBadge());
  if (state.amHost && isMuted(name)) button.append(el('span', 'muted-tag', 'muted'));
  if (state.amHost && state.banned.has(name)) button.append(el('span', 'muted-tag', 'banned'));
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
  return Transport.isOpen();
}

function send() {
  const text = input.value.trim();
  if (text === '' && !Files.attached()) return;
  // The mode line already says why, and the text stays in the box.
  if (sendBlocked()) return;
  if (!isConnected()) {
    showError('Not connected right now. Your message is kept; send it again once connected.');
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
  Transport.send({ type: 'delete', id });
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
    return { text: `Class mode: ${active.join(' · ')}. As the host, you are not held back.`, blocked: false };
  }
  const to = state.privateTo;
  const toHost = to !== null && state.hosts.has(to);
  const hostOnline = state.hosts.size > 0;
  if (state.mutedUntil !== null && state.mutedUntil <= serverNow()) state.mutedUntil = null;
  if (state.mutedUntil !== null && !toHost) {
    const hint = hostOnline ? ' You can still write privately to the host.' : '';
    return { text: `The host muted you until ${formatTime(state.mutedUntil)}.${hint}`, blocked: true, timed: true };
  }
  if (to === null) {
    if (mode.announce) {
      const hint = hostOnline ? ' You can still write privately to the host.' : '';
      return { text: `Only the host can write to everyone right now.${hint}`, blocked: true };
    }
    if (mode.slow > 0) {
      const left = state.lastRoomSent === null ? 0 : state.lastRoomSent + mode.slow * 1000 - Date.now();
      if (left > 0) {
        return { text: `Slow mode: you can write again in ${Math.ceil(left / 1000)} s.`, blocked: true, timed: true };
      }
      return { text: `Slow mode: one message every ${duration(mode.slow)}.`, blocked: false };
    }
  } else if (!toHost && !mode.private) {
    const hint = hostOnline ? ' You can still write to the host.' : '';
    return { text: `Private messages between students are off right now.${hint}`, blocked: true };
  }
  return null;
}

function activeModes(mode) {
  const active = [];
  if (mode.announce) active.push('announce-only');
  if (mode.slow > 0) active.push(`slow mode (${duration(mode.slow)})`);
  if (!mode.private) active.push('no private messages between students');
  if (!mode.uploads) active.push('no uploads');
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
  return seconds >= 60 && seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;
}

/* ------------------------------------------------------------------ */
/* 6. Host tools                                                       */
/* ------------------------------------------------------------------ */

// Sends a host frame (or a delete). An error that comes back is about it,
// not about a message whose text should be given back.
function sendHost(frame) {
  if (!isConnected()) {
    showError('Not connected right now. Try again once connected.');
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
  button.title = 'Host actions';
  button.setAttribute('aria-label', label);
  button.setAttribute('aria-haspopup', 'menu');
  button.setAttribute('aria-expanded', 'false');
  button.setAttribute('aria-controls', 'host-menu');
  return button;
}

function personMenuButton(name) {
  const label = `Host actions for ${name}`;
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
      label: `Unmute (muted until ${formatTime(state.muted.get(name))})`,
      run: () => sendHost({ type: 'unmute', name }),
    });
  }
  for (const minutes of MUTE_MINUTES) {
    items.push({ label: `Mute for ${minutes} min`, run: () => sendHost({ type: 'mute', name, minutes }) });
  }
  items.push({
    label: 'Kick out of the chat',
    confirm: `Kick ${name}? Click again`,
    danger: true,
    run: () => sendHost({ type: 'kick', name }),
  });
  if (state.banned.has(name)) {
    items.push({ label: 'Unban', run: () => sendHost({ type: 'unban', name }) });
  } else {
    items.push({
      label: 'Ban (kick, and no login with this name)',
      confirm: `Ban ${name}? Click again`,
      danger: true,
      run: () => sendHost({ type: 'ban', name }),
    });
  }
  items.push({
    label: 'Release the name (forgets its password)',
    confirm: `Release ${name}? Click again`,
    danger: true,
    run: () => sendHost({ type: 'release', name }),
  });
  return items;
}

function messageItems(message) {
  const items = [];
  if (message.type === 'message') {
    items.push({
      label: 'Delete this message',
      confirm: 'Delete it for everyone? Click again',
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
    name, `until ${formatTime(until)}`, 'Unmute', `Unmute ${name}`, () => sendHost({ type: 'unmute', name }),
  )));
  if (muted.length === 0) mutedList.append(el('li', 'host-list-empty', 'Nobody'));

  const bannedList = $('banned-list');
  const banned = [...state.banned].sort();
  bannedList.replaceChildren(...banned.map((name) => hostListItem(
    name, '', 'Unban', `Unban ${name}`, () => sendHost({ type: 'unban', name }),
  )));
  if (banned.length === 0) bannedList.append(el('li', 'host-list-empty', 'Nobody'));
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
  $('mode-slow').append(new Option(seconds === 0 ? 'Off' : `one message every ${duration(seconds)}`, String(seconds)));
}
$('mode-announce').addEventListener('change', (event) => sendMode({ announce: event.target.checked }));
$('mode-private').addEventListener('change', (event) => sendMode({ private: event.target.checked }));
$('mode-uploads').addEventListener('change', (event) => sendMode({ uploads: event.target.checked }));
$('mode-slow').addEventListener('change', (event) => sendMode({ slow: Number(event.target.value) }));

$('clear-history').addEventListener('click', (event) => {
  if (confirmed(event.currentTarget, 'Clear for everyone? Click again')) sendHost({ type: 'clear' });
});

$('release-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('release-name').value.trim();
  if (name === '') return;
  if (!confirmed($('release-submit'), 'Sure? Click again')) return;
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
      addNotice(`Your password is set: the name ${state.me} stays yours, and the password logs you in on another device.`,
        { kind: 'mode' });
      return;
    }
    const reason = (await response.text()).trim();
    if (response.status === 401) {
      error.textContent = 'You are no longer logged in. Reload the page to log in again.';
    } else if (response.status === 403) {
      error.textContent = 'The current password is wrong. (If you never set one, leave it empty.)';
      $('current-password').focus();
    } else {
      error.textContent = reason || `The server refused it (${response.status}).`;
    }
  } catch {
    error.textContent = 'Could not reach the server. Try again in a moment.';
  } finally {
    save.disabled = false;
  }
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

connect();
// Start in the message box, except on touch screens, where focusing it
// would pop up the keyboard over the conversation.
if (window.matchMedia('(pointer: fine)').matches) input.focus();
