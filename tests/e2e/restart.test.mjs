// The connection heals itself: when the server process goes away and comes
// back on the same port, open pages reconnect on their own.
//
// Sessions survive a restart only in Redis, so the main test runs the server
// with `--redis` against a throwaway redis-server. With the in-memory store
// the sessions are gone after a restart, and the page must send its reader
// back to the login form instead of retrying forever.

import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE,
  launchBrowser, logIn, messageWithText, newPerson, say, screenshot, startRedis, startServer,
  timelineOutline, waitConnected,
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
