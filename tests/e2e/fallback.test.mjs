// The page without WebSocket: behind a proxy that refuses WebSocket upgrades
// (as some school and office proxies do), the page falls back to long
// polling (GET /poll, POST /say), says so in the connection pill, and chats
// both ways with people on WebSocket; `?transport=poll` forces long polling,
// `?transport=ws` forbids it; across a switch between the two nothing is
// shown twice and nothing is missed.
//
// Playwright's page.route does not see WebSocket handshakes, so the broken
// proxy is a real one: a small node HTTP server on 127.0.0.1 that forwards
// plain requests to lanchat and answers every upgrade with 400 (or, when a
// test says so, holds it, or lets it through).
//
// A file of its own: node's --test-timeout (run.sh) also bounds each file.

import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import {
  DESKTOP, PHONE, WAIT_MS,
  afterParam, chatFixture, lastSeqShown, logIn, messageTexts, messageWithText, openConversation,
  say, screenshot, waitConnected,
} from './helpers.mjs';

const LONG_POLLING = 'Connected · long polling';

let proxy;

// Registered before the fixture's hooks, so it runs before them: the proxy
// is stopped before the server, and even when a page problem fails the test.
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
});

const chat = chatFixture();
const { person } = chat;

// Registered after the fixture's, so the test's server is up.
beforeEach(async () => {
  proxy = await startProxy(chat.server);
});

/* The broken proxy ----------------------------------------------------- */

// A proxy in front of `target` on a free loopback port. Plain HTTP requests
// are forwarded with their Host header as it is (the proxy's own
// 127.0.0.1:PORT, which lanchat answers). WebSocket upgrades, by `mode`:
// 'refuse' (the default) answers 400 and closes, like a broken proxy;
// 'hold' keeps them waiting (`held`) until `release()`, which lets them
// and every later one through to lanchat ('pass').
async function startProxy(target) {
  const upstream = new URL(target.url);
  const sockets = new Set(); // every socket, to end them all at stop()
  const track = (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  const waiters = []; // [{ check, resolve }], re-checked on every upgrade

  const state = {
    url: null,
    mode: 'refuse',
    refused: 0,   // upgrades answered 400
    upgrades: [], // the path of every upgrade asked for
    held: [],     // upgrades waiting for release()
    hold() {
      state.mode = 'hold';
    },
    release() {
      state.mode = 'pass';
      for (const held of state.held.splice(0)) pass(held);
    },
    // Resolves once `check()` holds (checked after every upgrade); fails
    // after WAIT_MS like any other wait of these tests.
    until(check, what) {
      if (check()) return Promise.resolve();
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(() => reject(new Error(`proxy: no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
        waiters.push({ check, resolve: () => { clearTimeout(timer); resolvePromise(); } });
      });
    },
    stop: null,
  };

  const settle = () => {
    for (const waiter of waiters.splice(0)) {
      if (waiter.check()) waiter.resolve(); else waiters.push(waiter);
    }
  };

  const pass = ({ request, socket, head }) => {
    const onward = net.connect(Number(upstream.port), upstream.hostname, () => {
      const lines = [`${request.method} ${request.url} HTTP/${request.httpVersion}`];
      for (let i = 0; i < request.rawHeaders.length; i += 2) {
        lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      }
      onward.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) onward.write(head);
      socket.pipe(onward).pipe(socket);
    });
    track(onward);
    onward.on('error', () => socket.destroy());
    socket.on('error', () => onward.destroy());
  };

  const proxyServer = http.createServer((request, response) => {
    const onward = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: request.method,
      path: request.url,
      headers: request.headers,
    }, (answer) => {
      const headers = { ...answer.headers };
      delete headers.connection;
      delete headers['keep-alive'];
      response.writeHead(answer.statusCode, answer.statusMessage, headers);
      answer.pipe(response);
    });
    onward.on('error', () => response.destroy());
    request.on('aborted', () => onward.destroy());
    request.pipe(onward);
  });
  proxyServer.on('connection', track);
  proxyServer.on('upgrade', (request, socket, head) => {
    track(socket);
    socket.on('error', () => {});
    state.upgrades.push(request.url);
    if (state.mode === 'refuse') {
      const body = 'This proxy does not do WebSocket.\n';
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      state.refused += 1;
    } else if (state.mode === 'hold') {
      state.held.push({ request, socket, head });
    } else {
      pass({ request, socket, head });
    }
    settle();
  });

  await new Promise((resolvePromise, reject) => {
    proxyServer.once('error', reject);
    proxyServer.listen(0, '127.0.0.1', resolvePromise);
  });
  state.url = `http://127.0.0.1:${proxyServer.address().port}`;
  state.stop = () => new Promise((resolvePromise) => {
    for (const socket of sockets) socket.destroy();
    proxyServer.close(() => resolvePromise());
  });
  return state;
}

/* Small helpers ---------------------------------------------------------- */

function statusText(page) {
  return page.locator('#status-text').textContent();
}

async function waitStatus(page, text) {
  await page.locator('#status[data-state="online"] #status-text', { hasText: new RegExp(`^${text}$`) }).waitFor();
}

// Every /poll and /say request the page makes, and every WebSocket it opens.
function watchTraffic(page) {
  const traffic = { polls: [], says: [], sockets: [] };
  page.on('request', (request) => {
    const { pathname } = new URL(request.url());
    if (pathname === '/poll') traffic.polls.push(request.url());
    if (pathname === '/say') traffic.says.push(request.url());
  });
  page.on('websocket', (socket) => traffic.sockets.push(socket.url()));
  return traffic;
}

async function assertEachOnce(page) {
  const ids = await page.$$eval('.msg', (nodes) => nodes.map((node) => node.dataset.id));
  assert.equal(new Set(ids).size, ids.length, 'no message id twice');
}

/* The tests -------------------------------------------------------------- */

test('behind a proxy that refuses WebSocket, the page falls back to long polling and chats both ways', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(DESKTOP);
  await logIn(alice, chat.server, 'alice');
  await say(alice, 'before bob came');
  await messageWithText(alice, 'before bob came');

  // bob's network only lets plain HTTP through.
  const bobTraffic = watchTraffic(bob);
  await logIn(bob, { url: proxy.url }, 'bob');
  await waitStatus(bob, LONG_POLLING);
  assert.ok(proxy.refused >= 3, `the page tried the WebSocket first (${proxy.refused} refused)`);
  assert.ok(bobTraffic.polls.length >= 1, 'and then polled');
  // The history, and who is online, as over a WebSocket.
  await messageWithText(bob, 'before bob came');
  await bob.locator('#user-list button', { hasText: 'alice' }).waitFor();
  await alice.locator('#user-list button', { hasText: 'bob' }).waitFor();
  await alice.locator('.notice', { hasText: 'bob joined' }).waitFor();

  // WebSocket to long polling: the held poll answers with the message.
  await say(alice, 'hello from a websocket');
  await messageWithText(bob, 'hello from a websocket');
  // Long polling to WebSocket: POST /say.
  await say(bob, 'hello from long polling');
  await messageWithText(alice, 'hello from long polling');
  await messageWithText(bob, 'hello from long polling');
  assert.ok(bobTraffic.says.length >= 1, 'bob sent with POST /say');

  // Private, both ways.
  await bob.click('#user-list button:has-text("alice")');
  await say(bob, 'a private word over polling');
  await openConversation(alice, 'bob');
  const atAlice = await messageWithText(alice, 'a private word over polling');
  assert.equal(await atAlice.first().evaluate((node) => node.classList.contains('private')), true);
  await atAlice.locator('.reply').click();
  await say(alice, 'a private answer over websocket');
  const atBob = await messageWithText(bob, 'a private answer over websocket');
  assert.equal(await atBob.first().evaluate((node) => node.classList.contains('private')), true);
  await bob.click('#private-cancel');

  // A refusal comes back as an error frame would: said under the box, and
  // the text goes back into it.
  const tooLong = 'x'.repeat(4001);
  await say(bob, tooLong);
  await bob.locator('#composer-error').waitFor({ state: 'visible' });
  assert.match(await bob.locator('#composer-error').textContent(), /too long|4000/i);
  assert.equal(await bob.inputValue('#composer-input'), tooLong);
  await bob.fill('#composer-input', '');

  // Someone new: bob learns it with his next poll answer.
  const carol = await person(PHONE);
  await logIn(carol, chat.server, 'carol');
  await say(carol, 'hi from carol');
  await messageWithText(bob, 'hi from carol');
  await bob.locator('.notice', { hasText: 'carol joined' }).waitFor();
  await bob.locator('#user-list button', { hasText: 'carol' }).waitFor();

  // Everything once, on both sides.
  const room = ['before bob came', 'hello from a websocket', 'hello from long polling'];
  // The room's conversation, then the private one.
  const expected = [...room, 'hi from carol', 'a private word over polling', 'a private answer over websocket'];
  assert.deepEqual(await messageTexts(bob), expected);
  assert.deepEqual(await messageTexts(alice), expected);
  await assertEachOnce(bob);
  assert.equal(await statusText(bob), LONG_POLLING);
  assert.equal(bobTraffic.sockets.every((url) => url.startsWith(proxy.url.replace('http', 'ws'))), true);
  await screenshot(bob, 'desktop-long-polling');
});

test('?transport=poll forces long polling, ?transport=ws never falls back, and a poll answering 401 goes to the login form', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(DESKTOP);
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  await say(alice, 'said over websockets');
  await messageWithText(bob, 'said over websockets');

  // No proxy: the WebSocket would work, yet the page only polls.
  const bobTraffic = watchTraffic(bob);
  await bob.goto(`${chat.server.url}/?transport=poll`);
  await waitStatus(bob, LONG_POLLING);
  await messageWithText(bob, 'said over websockets');
  await say(alice, 'to a forced poller');
  await messageWithText(bob, 'to a forced poller');
  await say(bob, 'from a forced poller');
  await messageWithText(alice, 'from a forced poller');
  await say(bob, 'oops, deleted over polling');
  const oopsAtAlice = await messageWithText(alice, 'oops, deleted over polling');
  // Deleting over POST /say: gone from both views (the poll answer carries
  // no `deleted`; the page takes the 204 as it).
  const oops = await messageWithText(bob, 'oops, deleted over polling');
  await oops.locator('.delete').click();
  await oops.locator('.delete[data-armed="true"]').waitFor();
  await oops.locator('.delete').click();
  await oops.waitFor({ state: 'detached' });
  await oopsAtAlice.waitFor({ state: 'detached' });
  // The 'online' event makes an automatic page try the WebSocket again; a
  // forced one stays with polling.
  await bob.evaluate(() => window.dispatchEvent(new Event('online')));
  await say(alice, 'still polling');
  await messageWithText(bob, 'still polling');
  assert.deepEqual(bobTraffic.sockets, [], 'no WebSocket at all');
  assert.equal(await statusText(bob), LONG_POLLING);
  assert.deepEqual(await messageTexts(bob), ['said over websockets', 'to a forced poller', 'from a forced poller', 'still polling']);
  await screenshot(bob, 'desktop-forced-polling');

  // ?transport=ws behind the broken proxy: it keeps trying the WebSocket,
  // and never polls.
  const carol = await person(PHONE);
  const carolTraffic = watchTraffic(carol);
  await carol.goto(`${proxy.url}/login?next=${encodeURIComponent('/?transport=ws')}`);
  await carol.fill('input[name="name"]', 'carol');
  await Promise.all([carol.waitForURL(`${proxy.url}/?transport=ws`), carol.click('button[type="submit"]')]);
  await proxy.until(() => proxy.refused >= 4, 'fourth refused upgrade');
  assert.deepEqual(carolTraffic.polls, [], 'a page forced to WebSocket does not poll');
  assert.notEqual(await carol.locator('#status').getAttribute('data-state'), 'online');

  // bob logs out (in another tab, say): his next poll gets 401, and the
  // page goes to the login form. alice's message ends the held poll.
  await bob.evaluate(() => fetch('/logout', { method: 'POST' }));
  await say(alice, 'wakes the held poll');
  await bob.waitForURL(/\/login\?next=\//);
  await bob.locator('input[name="name"]').waitFor();
});

test('nothing is shown twice or missed across a switch, either way', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(PHONE);
  await logIn(alice, chat.server, 'alice');
  await say(alice, 'before bob came');
  await messageWithText(alice, 'before bob came');

  // WebSocket to long polling: alice writes while bob's page is still
  // trying the WebSocket (refused at least once, not connected yet).
  await bob.goto(`${proxy.url}/`);
  await bob.waitForURL(/\/login/);
  await bob.fill('input[name="name"]', 'bob');
  await Promise.all([bob.waitForURL(`${proxy.url}/`), bob.click('button[type="submit"]')]);
  await proxy.until(() => proxy.refused >= 1, 'refused upgrade');
  await say(alice, 'while bob connects');
  await waitConnected(bob);
  await waitStatus(bob, LONG_POLLING);
  await messageWithText(bob, 'while bob connects');
  assert.deepEqual(await messageTexts(bob), ['before bob came', 'while bob connects']);

  // Long polling to WebSocket: the proxy lets upgrades through now, but
  // holds the next one, while messages go both ways over polling.
  await say(alice, 'before the switch');
  await messageWithText(bob, 'before the switch');
  const seqBefore = await lastSeqShown(bob);
  proxy.hold();
  const asked = proxy.upgrades.length;
  // The browser says it is back online: the page tries the WebSocket now
  // (rather than within a minute).
  await bob.evaluate(() => window.dispatchEvent(new Event('online')));
  await proxy.until(() => proxy.held.length === 1, 'held upgrade');
  assert.equal(afterParam(`ws://x${proxy.upgrades[asked]}`), String(seqBefore), 'it resumes after the last seq');
  await say(alice, 'while switching 1');
  await messageWithText(bob, 'while switching 1'); // over the poll still
  await say(bob, 'while switching 2');
  await messageWithText(alice, 'while switching 2');
  await messageWithText(bob, 'while switching 2');
  assert.equal(await statusText(bob), LONG_POLLING);

  // The WebSocket opens: it replays what came after seqBefore, which bob
  // already shows; nothing appears twice.
  proxy.release();
  await waitStatus(bob, 'Connected');
  await say(alice, 'after the switch');
  await messageWithText(bob, 'after the switch');
  await say(bob, 'from bob after the switch');
  await messageWithText(alice, 'from bob after the switch');
  await messageWithText(bob, 'from bob after the switch');

  const expected = [
    'before bob came', 'while bob connects', 'before the switch',
    'while switching 1', 'while switching 2', 'after the switch', 'from bob after the switch',
  ];
  assert.deepEqual(await messageTexts(bob), expected);
  assert.deepEqual(await messageTexts(alice), expected);
  await assertEachOnce(bob);
  await assertEachOnce(alice);
  // bob's messages now travel over the WebSocket (its console handle too).
  assert.equal(await bob.evaluate(() => window.ws instanceof WebSocket && window.ws.readyState === WebSocket.OPEN), true);
  await screenshot(bob, 'phone-after-switch');
});
