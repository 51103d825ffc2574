/*
 * lanchat transport: how the page talks to the server, loaded before app.js,
 * which uses it through the one global `Transport`. Whichever way the frames
 * travel, app.js sees the same three things:
 *
 *   Transport.open({ onFrame, setStatus, resumeAfter })
 *                  connects; every server frame (welcome, history, message,
 *                  private, join, leave, mode, error, ...) goes to
 *                  onFrame(frame); the connection pill is set through
 *                  setStatus(kind, text); resumeAfter() is the seq to resume
 *                  after (null: ask for the recent history).
 *   Transport.send(frame)   a client frame; false when not connected.
 *   Transport.isOpen()      whether send() would go out now.
 *
 * Two ways to follow the chat (docs/PROTOCOL.md):
 *
 *   WebSocket      /ws, one connection both ways: the normal case. A socket
 *                  that closes is opened again with exponential backoff;
 *                  one that could not even open first asks the server
 *                  whether we are still logged in. Closed by a host (4001
 *                  kicked, 4002 released): no retry, the login form says
 *                  what happened.
 *   Long polling   GET /poll?after=SEQ&wait=25 (the server holds it until a
 *                  message is delivered) and POST /say for what we send.
 *                  Its answers are turned into the frames the WebSocket
 *                  would have sent: the first answer into a welcome (the
 *                  name from the lanchat_user cookie) and a history; the
 *                  next ones into message and private frames, join and
 *                  leave (the online list compared with the last one), a
 *                  mode frame when the mode changed, and the gap notice. A
 *                  message's answer to POST /say is the sender's copy: it
 *                  is shown at once, and skipped when the poll brings it
 *                  again. Errors from /say come back as error frames.
 *
 * Fallback. Some school and office proxies break WebSocket upgrades. When
 * the WebSocket failed FALLBACK_AFTER times in a row without ever opening,
 * the page tries long polling; if GET /poll answers, it stays with it, says
 * "Connected · long polling" in the pill, and tries the WebSocket again
 * every WS_RETRY_MS (and at once when the browser says it is back online or
 * the tab is shown again), switching back when one opens. A page whose
 * WebSocket did open before is more likely facing a server restart or a
 * Wi-Fi blip than a proxy: it falls back only once the WebSocket has kept
 * failing for FALLBACK_AFTER_WORKED_MS.
 * /poll answering 401 sends the reader to the login form.
 *
 * Nothing twice, nothing missed across a switch: both transports resume
 * after the same seq, the highest of the last seq shown (app.js) and the
 * last poll's `next` (nothing at or below it can still arrive). A switch
 * back to the WebSocket opens it with ?after= that seq while the poll still
 * runs; whatever both bring is shown once (app.js skips ids on screen).
 *
 * `?transport=poll` or `?transport=ws` in the page's address forces one
 * of them (no fallback), for teaching and for tests.
 *
 * Limits of long polling here (the poll answer carries messages, people and
 * the mode, not events): someone else's deletion, clear, mute or ban
 * reaches a polling page only with its next reload (its own are shown when
 * /say accepts them); a mode change, with the next poll answer; a host's
 * page learns the muted and banned lists from the WebSocket only; and a
 * kicked or released poller is sent to the login form without the reason.
 */
'use strict';

const Transport = (() => {
  const t = I18n.t; // the page's words (i18n.js)

  // Reconnect backoff: the first retry is quick (a blip is usually short),
  // each failure doubles the wait, capped so a restarted LAN server is
  // found again within seconds. A random ±25% keeps many pages from
  // retrying in lockstep after a restart.
  const RECONNECT_FIRST_MS = 500;
  const RECONNECT_MAX_MS = 8000;
  const RECONNECT_JITTER = 0.25;

  // WebSocket attempts in a row that never opened before trying polling.
  const FALLBACK_AFTER = 3;
  // After a WebSocket worked on this page: how long it must keep failing.
  const FALLBACK_AFTER_WORKED_MS = 60 * 1000;
  // While polling (fallback), how often to try the WebSocket again.
  const WS_RETRY_MS = 60 * 1000;
  // How long the server may hold a poll (it allows up to 60 s; well under
  // the idle timeout of most proxies).
  const POLL_WAIT_S = 25;

  // Close codes a host's action ends a connection with, and the reason the
  // login form then shows (login.html holds the sentences).
  const CLOSE_GOODBYES = new Map([[4001, 'kicked'], [4002, 'released']]);

  const CONNECTED = { ws: t('status.connected'), poll: t('status.polling') };

  // 'auto' (WebSocket, long polling when it cannot get through), or forced.
  const forced = new URLSearchParams(location.search).get('transport');
  const mode = forced === 'poll' || forced === 'ws' ? forced : 'auto';

  let app = null;           // what open() was given
  let socket = null;        // the WebSocket in use (open or opening), or null
  let probe = null;         // a WebSocket tried while polling, or null
  let polling = null;       // the running poll loop (see startPolling), or null
  let retryDelay = RECONNECT_FIRST_MS;
  let retryTimer = null;
  let probeTimer = null;
  let failures = 0;         // WebSocket attempts in a row that never opened
  let failingSince = 0;     // when the first of them failed (ms)
  let wsWorked = false;     // a WebSocket opened on this page
  let lastNext = null;      // the last poll's `next`
  const echoed = new Set(); // ids of sender's copies from /say, not yet polled
  let sayQueue = Promise.resolve(); // /say requests go one at a time, in order

  function open(options) {
    app = options;
    if (mode === 'poll') {
      startPolling(false);
    } else {
      connectWebSocket();
    }
  }

  function deliver(frame) {
    if (frame.type === 'welcome') retryDelay = RECONNECT_FIRST_MS;
    app.onFrame(frame);
    if (frame.type === 'welcome') app.setStatus('online', socket ? CONNECTED.ws : CONNECTED.poll);
  }

  // The seq to resume after, or null for the recent history.
  function resumeSeq() {
    const seq = app.resumeAfter();
    if (seq === null) return lastNext;
    return lastNext === null ? seq : Math.max(seq, lastNext);
  }

  function goToLogin(reason) {
    location.assign(reason ? `/login?next=/&reason=${reason}` : '/login?next=/');
  }

  function scheduleRetry(run) {
    clearTimeout(retryTimer);
    const jitter = 1 + RECONNECT_JITTER * (2 * Math.random() - 1);
    const delay = Math.round(retryDelay * jitter);
    retryDelay = Math.min(retryDelay * 2, RECONNECT_MAX_MS);
    app.setStatus('offline', t('status.reconnecting'));
    retryTimer = setTimeout(() => {
      retryTimer = null;
      run();
    }, delay);
  }

  /* WebSocket --------------------------------------------------------- */

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const after = resumeSeq();
    return `${scheme}//${location.host}/ws${after === null ? '' : `?after=${after}`}`;
  }

  function connectWebSocket() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (socket) return; // already open or opening
    app.setStatus('connecting', t('status.connecting'));
    useWebSocket(new WebSocket(wsUrl()), false);
  }

  // Makes `ws` the connection: its frames go to app.js from now on.
  function useWebSocket(ws, alreadyOpen) {
    let opened = false;
    const opens = () => {
      opened = true;
      failures = 0;
      wsWorked = true;
    };
    socket = ws;
    // For the browser console: `ws.send("hi")` says hi to the room.
    window.ws = ws;
    if (alreadyOpen) opens();
    ws.onopen = opens;
    ws.onmessage = (event) => {
      if (socket !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // the server only sends JSON; ignore anything else
      }
      deliver(frame);
    };
    // Every way a socket ends (server restart, network loss, refused
    // upgrade) arrives here; onerror carries no detail a page can use, the
    // close code does: a host kicked us or released our name.
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      const goodbye = CLOSE_GOODBYES.get(event.code);
      if (goodbye) {
        app.setStatus('offline', t('status.kicked'));
        goToLogin(goodbye);
      } else if (opened) {
        scheduleRetry(connectWebSocket);
      } else {
        webSocketFailed();
      }
    };
  }

  // A WebSocket never opened: a proxy that refuses upgrades, the server
  // down, or we are logged out. Polling answers the first (it also tells
  // the last); the login check and the retry, the others.
  function webSocketFailed() {
    failures += 1;
    if (failures === 1) failingSince = Date.now();
    const longEnough = !wsWorked || Date.now() - failingSince >= FALLBACK_AFTER_WORKED_MS;
    if (mode === 'auto' && failures >= FALLBACK_AFTER && longEnough) {
      startPolling(true);
    } else {
      retryOrLogin();
    }
  }

  // A browser cannot see the HTTP status of a refused upgrade, so ask the
  // page itself: when we are logged out, GET / answers with a redirect to
  // the login form.
  async function retryOrLogin() {
    try {
      const response = await fetch('/', { redirect: 'manual', cache: 'no-store' });
      if (response.type === 'opaqueredirect') {
        goToLogin();
        return;
      }
    } catch {
      // The server is unreachable: that is what the retry is for.
    }
    scheduleRetry(connectWebSocket);
  }

  // While polling: try a WebSocket; when it opens, it takes over.
  function probeWebSocket() {
    clearTimeout(probeTimer);
    probeTimer = null;
    if (!polling || probe || mode !== 'auto') return;
    const ws = new WebSocket(wsUrl());
    probe = ws;
    ws.onopen = () => {
      if (probe !== ws) return;
      probe = null;
      if (!polling) {
        ws.close();
        return;
      }
      stopPolling();
      useWebSocket(ws, true);
    };
    ws.onclose = () => {
      if (probe !== ws) return;
      probe = null;
      if (polling) probeTimer = setTimeout(probeWebSocket, WS_RETRY_MS);
    };
  }

  /* Long polling ------------------------------------------------------ */

  // The name this browser is logged in as: the lanchat_user cookie holds
  // it in base64 (of UTF-8). The server only answers a poll when it matches
  // the session, so after a 200 it is there.
  function myName() {
    const cookie = document.cookie.split(';').map((part) => part.trim())
      .find((part) => part.startsWith('lanchat_user='));
    if (!cookie) return null;
    try {
      const binary = atob(decodeURIComponent(cookie.slice('lanchat_user='.length)));
      return new TextDecoder().decode(Uint8Array.from(binary, (char) => char.charCodeAt(0)));
    } catch {
      return null;
    }
  }

  // One poll loop. `fallback`: the WebSocket did not get through; if the
  // first poll fails too, go back to trying the WebSocket.
  function startPolling(fallback) {
    const run = {
      fallback,
      fresh: true,        // the next answer opens (or reopens) the session: welcome, history
      answered: false,    // some poll of this run answered
      after: resumeSeq(),
      users: [],
      mode: null,
      controller: new AbortController(),
    };
    polling = run;
    window.ws = {
      // The console's `ws.send("hi")` while polling: a text that is not a
      // JSON object is a room message, as on the WebSocket.
      send(data) {
        let frame = null;
        try {
          frame = JSON.parse(data);
        } catch {
          // plain text
        }
        send(frame && typeof frame === 'object' && !Array.isArray(frame) ? frame : { type: 'message', text: String(data) });
      },
    };
    if (run.fallback === false) app.setStatus('connecting', t('status.connecting'));
    pollLoop(run);
  }

  function stopPolling() {
    if (!polling) return;
    polling.controller.abort();
    polling = null;
    clearTimeout(probeTimer);
    probeTimer = null;
  }

  async function pollLoop(run) {
    while (polling === run) {
      const query = new URLSearchParams();
      if (run.after !== null) query.set('after', String(run.after));
      // The first poll answers at once (it opens the session); the next
      // ones wait for news.
      query.set('wait', String(run.fresh ? 0 : POLL_WAIT_S));
      let answer;
      try {
        const response = await fetch(`/poll?${query}`, { cache: 'no-store', signal: run.controller.signal });
        if (polling !== run) return;
        if (response.status === 401) {
          stopPolling();
          app.setStatus('offline', t('status.loggedOut'));
          goToLogin();
          return;
        }
        if (!response.ok) throw new Error(`poll: ${response.status}`);
        answer = await response.json();
      } catch {
        if (polling !== run) return; // stopped meanwhile: the abort lands here
        pollFailed(run);
        return;
      }
      if (polling !== run) return;
      takeAnswer(run, answer);
    }
  }

  function pollFailed(run) {
    if (run.fallback && !run.answered) {
      // Polling does not get through either (the server is down?): back
      // to the WebSocket and its backoff; the next failure tries again.
      stopPolling();
      scheduleRetry(connectWebSocket);
      return;
    }
    run.fresh = true; // the next answer reopens: welcome, and what was missed
    scheduleRetry(() => {
      if (polling === run) pollLoop(run);
    });
  }

  // One poll answer, as the frames the WebSocket would have sent.
  function takeAnswer(run, answer) {
    const messages = Array.isArray(answer.messages) ? answer.messages : [];
    const users = Array.isArray(answer.users) ? answer.users : [];
    const hosts = Array.isArray(answer.hosts) ? answer.hosts : [];
    if (run.fresh) {
      run.fresh = false;
      run.answered = true;
      const name = myName();
      if (name === null) {
        // Logged in, yet no name cookie (edited away?): log in again.
        stopPolling();
        goToLogin();
        return;
      }
      deliver({ type: 'welcome', name, users, hosts, host: hosts.includes(name), mode: answer.mode });
      deliver({
        type: 'history',
        messages: messages.filter((message) => message.type !== 'private'),
        private: messages.filter((message) => message.type === 'private'),
        gap: answer.gap === true,
      });
      echoed.clear(); // app.js skips what it already shows
      if (run.fallback && mode === 'auto' && !probeTimer) probeTimer = setTimeout(probeWebSocket, WS_RETRY_MS);
    } else {
      if (answer.gap === true) deliver({ type: 'history', messages: [], private: [], gap: true });
      for (const name of users) {
        if (!run.users.includes(name)) deliver({ type: 'join', name, host: hosts.includes(name) });
      }
      for (const name of run.users) {
        if (!users.includes(name)) deliver({ type: 'leave', name });
      }
      if (answer.mode && JSON.stringify(answer.mode) !== JSON.stringify(run.mode)) {
        deliver({ ...answer.mode, type: 'mode' });
      }
      for (const message of messages) {
        if (echoed.delete(message.id)) continue; // shown from the /say answer
        deliver(message.type === 'private' ? message : { ...message, type: 'message' });
      }
    }
    run.users = users;
    run.mode = answer.mode || null;
    if (Number.isInteger(answer.next)) {
      run.after = run.after === null ? answer.next : Math.max(run.after, answer.next);
      lastNext = run.after;
    }
  }

  // POST /say: one frame; the answer is the sender's copy (a message), an
  // error object, or nothing (204).
  async function say(frame) {
    let response;
    try {
      response = await fetch('/say', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(frame),
        cache: 'no-store',
      });
    } catch {
      // Not sent (or not known to be). For a delete, the code that gives
      // its button back; for a message, app.js gives the text back.
      deliver({
        type: 'error',
        code: frame.type === 'delete' ? 'not_found' : 'unreachable',
        message: 'Could not reach the server: that was not sent. Try again in a moment.',
      });
      return;
    }
    if (response.status === 204) {
      const echo = acceptedEcho(frame);
      if (echo) deliver(echo);
      return;
    }
    if (response.status === 401) {
      goToLogin();
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // 413 and a few others are plain text
    }
    if (response.ok && body && (body.type === 'message' || body.type === 'private')) {
      if (echoed.size > 1000) echoed.clear();
      echoed.add(body.id);
      deliver(body);
    } else if (body && body.type === 'error') {
      deliver(body);
    } else if (response.status === 413) {
      deliver({ type: 'error', code: 'too_long', message: 'That is too large to send.' });
    } else if (!response.ok) {
      deliver({ type: 'error', code: 'bad_request', message: `The server refused that (${response.status}).` });
    }
  }

  // What the WebSocket would have sent back to this page for a frame that
  // POST /say accepted with 204: a poll answer carries messages, not
  // events, so without this a polling page would wait for them forever
  // (its Delete button saying "Deleting…"). A mute's end is in this
  // browser's time, close to the server's.
  function acceptedEcho(frame) {
    switch (frame.type) {
      case 'delete': return { type: 'deleted', id: frame.id };
      case 'mode': return { ...frame };
      case 'mute': return { type: 'muted', name: frame.name, until: Date.now() + frame.minutes * 60 * 1000 };
      case 'unmute': return { type: 'unmuted', name: frame.name };
      case 'ban': return { type: 'banned', name: frame.name };
      case 'unban': return { type: 'unbanned', name: frame.name };
      case 'clear': return { type: 'cleared' };
      default: return null; // typing, kick, release: nothing comes back
    }
  }

  /* What app.js calls -------------------------------------------------- */

  function isOpen() {
    if (socket) return socket.readyState === WebSocket.OPEN;
    return polling !== null && polling.answered && !polling.fresh;
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    if (!isOpen()) return false;
    // A handler that throws must not stop the queue: it is reported as usual.
    sayQueue = sayQueue.then(() => say(frame)).catch((error) => setTimeout(() => { throw error; }));
    return true;
  }

  // Skip the wait when there is a good reason to believe it would work now
  // (the browser is back online, the tab is visible again).
  function reconnectNow() {
    if (!app) return;
    if (polling) {
      if (polling.fresh && retryTimer) {
        // A failed poll waiting for its retry: poll now.
        clearTimeout(retryTimer);
        retryTimer = null;
        const run = polling;
        pollLoop(run);
      }
      if (!polling.fresh && mode === 'auto') probeWebSocket();
      return;
    }
    if (!socket) connectWebSocket();
  }

  return { open, send, isOpen, reconnectNow };
})();
