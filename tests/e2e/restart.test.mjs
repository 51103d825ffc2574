// The connection heals itself: when the server process goes away and comes
// back on the same port, open pages reconnect on their own.
//
// Sessions survive a restart only in Redis, so the main test runs the server
// with `--redis` against a throwaway redis-server. With the in-memory store
// the sessions are gone after a restart, and the page must send its reader
// back to the login form instead of retrying forever.
//
// A page that was away across the restart comes back asking only for what
// it missed (`/ws?after=SEQ`): what was sent meanwhile appears once.

import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE,
  afterParam, gateWebSockets, lastSeqShown, launchBrowser, logIn, messageTexts, messageWithText,
  newPerson, say, screenshot, startRedis, startServer, timelineOutline, waitConnected,
} from './helpers.mjs';

let browser;
let pages;
let servers; // every server started by the test, stopped at its end
let redis;

async function person(viewport) {
  const page = await newPerson(browser, viewport);
  pages.push(page);
  return page;
}

async function server(options) {
  const started = await startServer(options);
  servers.push(started);
  return started;
}

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

beforeEach(() => {
  pages = [];
  servers = [];
  redis = null;
});

afterEach(async () => {
  const problems = pages.flatMap((page) => page.problems);
  await Promise.all(pages.map((page) => page.context().close()));
  await Promise.all(servers.map((s) => s.stop()));
  await redis?.stop();
  assert.deepEqual(problems, []);
});

test('after a server restart (Redis store) the page reconnects and shows no duplicates', async () => {
  redis = await startRedis();
  const first = await server({ redis: redis.url });

  const alice = await person(DESKTOP);
  const bob = await person(PHONE);
  await logIn(alice, first, 'alice');
  await say(alice, 'early');
  await messageWithText(alice, 'early');
  await logIn(bob, first, 'bob'); // bob sees 'early' as history, then a divider
  await say(alice, 'before the restart');
  await messageWithText(bob, 'before the restart');

  // Stop the server: both pages notice and start retrying.
  await first.stop();
  for (const page of [alice, bob]) await page.locator('#status[data-state="offline"]').waitFor();
  await screenshot(bob, 'phone-reconnecting');

  // Start it again where the pages expect it; they come back by themselves.
  const second = await server({ port: first.port, redis: redis.url });
  assert.equal(second.url, first.url);
  await waitConnected(alice);
  await waitConnected(bob);

  await say(bob, 'after the restart');
  await messageWithText(alice, 'after the restart');
  await messageWithText(bob, 'after the restart');

  // The history replayed on reconnect added nothing already on screen.
  assert.deepEqual(await timelineOutline(alice), ['early', 'before the restart', 'after the restart']);
  assert.deepEqual(await timelineOutline(bob), ['early', '--', 'before the restart', 'after the restart']);
  const ids = await alice.$$eval('.msg', (nodes) => nodes.map((node) => node.dataset.id));
  assert.equal(new Set(ids).size, ids.length, 'no message id twice');
  await screenshot(alice, 'desktop-after-restart');
});

test('a restart (Redis store) loses nothing and shows nothing twice, what was sent while a page was away included', async () => {
  redis = await startRedis();
  const first = await server({ redis: redis.url });

  const alice = await person(DESKTOP);
  const bob = await person(PHONE);
  const bobSockets = await gateWebSockets(bob);
  await logIn(alice, first, 'alice');
  await logIn(bob, first, 'bob');
  await say(alice, 'before the restart');
  await messageWithText(bob, 'before the restart');
  await alice.click('#user-list button:has-text("bob")');
  await say(alice, 'a private word before');
  await messageWithText(bob, 'a private word before', { state: 'attached' }); // in bob's conversation with alice
  const seenByBob = await lastSeqShown(bob);

  // bob's connection drops, and he stays away while the server restarts
  // and alice goes on writing, to the room and to him.
  await bobSockets.close();
  await alice.locator('.notice', { hasText: 'bob went offline' }).waitFor(); // said in their conversation
  await first.stop();
  await alice.locator('#status[data-state="offline"]').waitFor();
  const second = await server({ port: first.port, redis: redis.url });
  assert.equal(second.url, first.url);
  await waitConnected(alice);
  await say(alice, 'a private word while away');
  await alice.click('#private-cancel');
  await say(alice, 'while you were away 1');
  await say(alice, 'while you were away 2');
  await messageWithText(alice, 'while you were away 2');

  // bob is back: he asks for what came after his last seq, and gets it once.
  await bobSockets.open();
  await waitConnected(bob);
  await messageWithText(bob, 'while you were away 2');
  await messageWithText(bob, 'a private word while away', { state: 'attached' });
  assert.equal(afterParam(bobSockets.urls.at(-1)), String(seenByBob));
  const expected = [
    'before the restart', 'a private word before',
    'a private word while away', 'while you were away 1', 'while you were away 2',
  ];
  // Room messages in their order; the private one that waited in the inbox
  // comes with the `offline` frame, after the replayed history.
  const atBob = await messageTexts(bob);
  assert.deepEqual([...atBob].sort(), [...expected].sort(), 'everything once, nothing else');
  assert.deepEqual(atBob.filter((text) => text.startsWith('while') || text === 'before the restart'),
    ['before the restart', 'while you were away 1', 'while you were away 2']);
  // alice reconnected on her own (after her last seq too): each message once.
  assert.deepEqual([...await messageTexts(alice)].sort(), [...expected].sort());
  for (const page of [alice, bob]) {
    const ids = await page.$$eval('.msg', (nodes) => nodes.map((node) => node.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'no message id twice');
  }

  // A reload after the restart still shows it all, the private ones included.
  await bob.reload();
  await waitConnected(bob);
  await messageWithText(bob, 'while you were away 2');
  await messageWithText(bob, 'a private word while away', { state: 'attached' });
  assert.deepEqual([...await messageTexts(bob)].sort(), [...expected].sort());
});

test('after a restart that lost the session (memory store) the page goes to the login form', async () => {
  const first = await server();
  const alice = await person(DESKTOP);
  await logIn(alice, first, 'alice');

  await first.stop();
  await alice.locator('#status[data-state="offline"]').waitFor();
  await server({ port: first.port });

  await alice.waitForURL(/\/login\?next=\//);
  await alice.locator('input[name="name"]').waitFor();
  // The name is still offered, from the cookie or from localStorage.
  assert.equal(await alice.inputValue('input[name="name"]'), 'alice');

  // Logging in again from that form lands back in a working chat.
  await Promise.all([alice.waitForURL(`${first.url}/`), alice.click('button[type="submit"]')]);
  await waitConnected(alice);
});
