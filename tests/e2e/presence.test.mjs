// A presence storm: 40 throw-away names connect and disconnect for five
// seconds while a page is open. The page must stay responsive (it batches
// join and leave notices per animation frame) and its people list must end
// equal to who is really online.
//
// The storm is driven from Node with plain WebSocket clients (helpers.mjs:
// logInCookies, openSocket), not browsers: 40 browser contexts would load a
// 2-core machine more than the page under test.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, WAIT_MS, closeSocket, launchBrowser, logIn, logInCookies, newPerson, openSocket, startServer,
} from './helpers.mjs';

const NAMES = 40;
const STORM_MS = 5000;
// The page must draw a frame (so answer input) at least this often, all
// through the storm. (Measured in the page: a round trip from Node would
// also count the delays of Node's own event loop, busy with the storm.)
const LONGEST_GAP_MS = 1000;

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
  // Every client comes from 127.0.0.1: no limit per address.
  server = await startServer({ args: ['--max-per-address', '0'] });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// Records, in the page, the longest time between two animation frames from
// now on: a page busy with presence notices skips frames.
function startHeartbeat(page) {
  return page.evaluate(() => {
    window.longestGap = 0;
    let last = performance.now();
    const beat = (now) => {
      window.longestGap = Math.max(window.longestGap, now - last);
      last = now;
      if (!window.stopHeartbeat) requestAnimationFrame(beat);
    };
    requestAnimationFrame(beat);
  });
}

// One name's part of the storm: connect, disconnect, again, until `end`.
// Names that `stay` end connected, and their socket is returned.
async function churn(cookies, end, stay) {
  for (;;) {
    const socket = await openSocket(server, cookies);
    if (Date.now() >= end && stay) return socket;
    await closeSocket(socket);
    if (Date.now() >= end && !stay) return null;
  }
}

test('the page stays responsive under a presence storm, and its people list ends right', async () => {
  const page = await newPerson(browser, DESKTOP);
  await logIn(page, server, 'alice');

  const names = Array.from({ length: NAMES }, (_, i) => `storm${String(i).padStart(2, '0')}`);
  const cookies = await Promise.all(names.map((name) => logInCookies(server, name)));

  await startHeartbeat(page);
  const end = Date.now() + STORM_MS;
  // The first half of the names ends online, the others offline.
  const sockets = await Promise.all(cookies.map((cookie, i) => churn(cookie, end, i < NAMES / 2)));
  const longestGap = await page.evaluate(() => {
    window.stopHeartbeat = true;
    return window.longestGap;
  });
  console.log(`longest gap between two frames during the storm: ${Math.round(longestGap)} ms`);

  // Who is online: alice and the first half of the storm, nobody else.
  const expected = ['alice', ...names.slice(0, NAMES / 2)].sort();
  await page.waitForFunction((want) => {
    const shown = Array.from(document.querySelectorAll('#user-list .user-name'), (node) => node.textContent);
    return JSON.stringify(shown.sort()) === JSON.stringify(want);
  }, expected, { timeout: WAIT_MS }).catch(async (error) => {
    const shown = await page.$$eval('#user-list .user-name', (nodes) => nodes.map((node) => node.textContent));
    throw new Error(`the people list shows ${JSON.stringify(shown.sort())}, not ${JSON.stringify(expected)}`, { cause: error });
  });
  assert.equal(await page.locator('#online-count').textContent(), String(expected.length));

  await Promise.all(sockets.filter(Boolean).map(closeSocket));
  assert.ok(longestGap < LONGEST_GAP_MS, `the page skipped frames for ${Math.round(longestGap)} ms`);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
