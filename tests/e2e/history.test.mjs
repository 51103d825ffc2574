// History you can trust, as the page shows it: every message has a seq; a
// reload shows the recent history and the private conversations again, a
// reconnect asks only for what it missed (`/ws?after=SEQ`) and says so when
// that was more than the server keeps, and authors can delete their room
// messages. Each test starts its own server (in-memory store); the restart
// with Redis is in restart.test.mjs.
//
// A file of its own: node's --test-timeout (run.sh) also bounds each file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  afterParam, chatFixture, gateWebSockets, lastSeqShown, logIn, messageTexts, messageWithText,
  openConversation, say, screenshot, timelineOutline, waitConnected,
} from './helpers.mjs';

const chat = chatFixture();
const { person } = chat;

test('a reload keeps the private conversations, and whom you talked with stays listed', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(DESKTOP);
  const bobSockets = await gateWebSockets(bob); // here only to see the URLs
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');

  await alice.click('#user-list button:has-text("bob")');
  await say(alice, 'just between us');
  await openConversation(bob, 'alice');
  const atBob = await messageWithText(bob, 'just between us');
  await atBob.locator('.reply').click();
  await say(bob, 'agreed, between us');
  await messageWithText(alice, 'agreed, between us');
  await alice.click('#private-cancel');
  await say(alice, 'hello room');
  await openConversation(bob, null);
  await messageWithText(bob, 'hello room');

  // alice closes the chat (her session stays): bob still lists her, offline.
  await alice.goto('about:blank');
  await bob.locator('.notice', { hasText: 'alice left' }).waitFor();
  await bob.locator('#user-list button', { hasText: 'alice' }).waitFor({ state: 'detached' });
  await bob.locator('#offline-list button', { hasText: 'alice' }).waitFor();

  // bob reloads: the conversation is back, in order, once (the room's
  // pane first, then the conversation with alice).
  const seqBefore = await lastSeqShown(bob);
  await bob.reload();
  await waitConnected(bob);
  await messageWithText(bob, 'hello room');
  assert.deepEqual(await timelineOutline(bob), ['hello room', '--', 'just between us', 'agreed, between us']);
  assert.match(await bob.locator('.msg', { hasText: 'just between us' }).locator('.msg-header').textContent(), /alice\s*→\s*you/);
  assert.match(await bob.locator('.msg', { hasText: 'agreed, between us' }).locator('.msg-header').textContent(), /You\s*→\s*alice/);
  assert.equal(afterParam(bobSockets.urls.at(-1)), null, 'a page load asks for the whole recent history');
  assert.equal(await lastSeqShown(bob), seqBefore);
  assert.equal(
    await bob.evaluate(() => localStorage.getItem('lanchat.lastSeq.bob')),
    String(seqBefore),
    'the last seq is kept per name',
  );

  // alice is offered, marked offline; bob writes to her, it waits for her.
  const offlineAlice = bob.locator('#offline-list button', { hasText: 'alice' });
  await offlineAlice.waitFor();
  assert.match(await offlineAlice.textContent(), /offline/);
  assert.equal(await bob.locator('#user-list button', { hasText: 'alice' }).count(), 0);
  await offlineAlice.click();
  await bob.locator('#private-chip', { hasText: 'offline' }).waitFor();
  await say(bob, 'see you tomorrow');
  await messageWithText(bob, 'see you tomorrow');
  await screenshot(bob, 'desktop-private-kept');

  // alice comes back: her conversation with bob, then what waited, once each.
  await alice.goto(`${chat.server.url}/`);
  await waitConnected(alice);
  await openConversation(alice, 'bob');
  await messageWithText(alice, 'see you tomorrow');
  assert.deepEqual(await messageTexts(alice), ['hello room', 'just between us', 'agreed, between us', 'see you tomorrow']);
  // Back online, alice moves to bob's online list.
  await bob.locator('#user-list button', { hasText: 'alice' }).waitFor();
  await bob.locator('#offline-list').waitFor({ state: 'hidden' });
});

test('coming back marks what is new since your last visit', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(DESKTOP);
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  await say(alice, 'one');
  await messageWithText(bob, 'one');

  await bob.goto('about:blank');
  await alice.locator('.notice', { hasText: 'bob left' }).waitFor();
  await say(alice, 'two');
  await say(alice, 'three');
  await messageWithText(alice, 'three');

  await bob.goto(`${chat.server.url}/`);
  await waitConnected(bob);
  await messageWithText(bob, 'three');
  assert.deepEqual(await timelineOutline(bob), ['one', '--', 'two', 'three']);
  assert.match(await bob.locator('.divider:not(.day)').textContent(), /new since your last visit/i);
});

test('a page that missed more than the server keeps is told so, and shows the latest', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(DESKTOP);
  const bobSockets = await gateWebSockets(bob);
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  await say(alice, 'seen by bob');
  await messageWithText(bob, 'seen by bob');
  const seen = await lastSeqShown(bob);
  assert.equal(Number.isInteger(seen), true, 'messages carry a seq');

  // bob's connection drops and stays down while alice sends 150 messages.
  await bobSockets.close();
  await alice.locator('.notice', { hasText: 'bob left' }).waitFor();
  const missed = Array.from({ length: 150 }, (_, i) => `missed ${String(i + 1).padStart(3, '0')}`);
  // From alice's console socket, paced under the rate limit (20 a second,
  // bursts of 40); the wait that matters is for the last one to arrive.
  await alice.evaluate(async (texts) => {
    for (const text of texts) {
      window.ws.send(JSON.stringify({ type: 'message', text }));
      await new Promise((resolve) => { setTimeout(resolve, 55); });
    }
  }, missed);
  await messageWithText(alice, 'missed 150');
  assert.equal(await alice.locator('.msg').count(), 151, 'the server took all 150');

  // bob is back: he asks for what came after his last seq, is told he
  // missed more than is kept, and gets the latest 100.
  await bobSockets.open();
  await waitConnected(bob);
  const notice = bob.locator('.notice-gap');
  await notice.waitFor();
  assert.match(await notice.textContent(), /You missed more messages than the server keeps; showing the latest\./);
  await messageWithText(bob, 'missed 150');
  assert.deepEqual(await messageTexts(bob), ['seen by bob', ...missed.slice(50)]);
  assert.equal(afterParam(bobSockets.urls[0]), null, 'the first connect asks for the history');
  assert.equal(afterParam(bobSockets.urls.at(-1)), String(seen), 'the reconnect resumes after the last seq');
  // The notice sits between what bob had seen and what was replayed.
  const order = await bob.$$eval('#timeline .msg, #timeline .notice-gap', (nodes) =>
    nodes.map((node) => (node.classList.contains('notice-gap') ? 'gap' : node.querySelector('.bubble').firstChild.textContent)));
  assert.deepEqual(order.slice(0, 3), ['seen by bob', 'gap', 'missed 051']);
  await screenshot(bob, 'desktop-gap');
});

test('an author deletes a room message, and it leaves everyone\'s view', async () => {
  const alice = await person(DESKTOP);
  const bob = await person(DESKTOP);
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  await say(alice, 'oops, wrong room');
  await say(alice, 'this one stays');
  const atBob = await messageWithText(bob, 'oops, wrong room');
  const keptAtBob = await messageWithText(bob, 'this one stays');
  assert.equal(await keptAtBob.evaluate((node) => node.classList.contains('continued')), true);
  assert.equal(await bob.locator('.msg .delete').count(), 0, 'no delete button on other people\'s messages');

  // alice: a first click asks, a second deletes.
  const atAlice = await messageWithText(alice, 'oops, wrong room');
  const button = atAlice.locator('.delete');
  await button.click();
  await atAlice.locator('.delete[data-armed="true"]').waitFor();
  assert.equal(await alice.locator('.msg').count(), 2, 'one click deletes nothing');
  await screenshot(alice, 'desktop-delete-armed');
  await button.click();

  await atBob.waitFor({ state: 'detached' });
  await atAlice.waitFor({ state: 'detached' });
  assert.deepEqual(await messageTexts(bob), ['this one stays']);
  assert.deepEqual(await messageTexts(alice), ['this one stays']);
  // The message below it heads its group now: it shows who wrote it.
  assert.equal(await keptAtBob.evaluate((node) => node.classList.contains('continued')), false);

  // Someone else's message: forbidden, shown like any error (and bob's
  // last message is not put back in his box, as a refused one would be).
  await say(bob, 'bob was here');
  await messageWithText(bob, 'bob was here');
  const keptId = await keptAtBob.getAttribute('data-id');
  await bob.evaluate((id) => window.ws.send(JSON.stringify({ type: 'delete', id })), keptId);
  const error = bob.locator('#composer-error');
  await error.waitFor({ state: 'visible' });
  assert.notEqual((await error.textContent()).trim(), '');
  assert.equal(await bob.inputValue('#composer-input'), '', 'no text is given back for a refused delete');
  await bob.fill('#composer-input', 'x');
  await error.waitFor({ state: 'hidden' });

  // A message that is gone: not_found, shown the same way.
  const goneId = await alice.evaluate(() => {
    const node = document.querySelector('.msg');
    return `${node.dataset.id.slice(0, -1)}${node.dataset.id.endsWith('0') ? '1' : '0'}`;
  });
  await alice.evaluate((id) => window.ws.send(JSON.stringify({ type: 'delete', id })), goneId);
  await alice.locator('#composer-error').waitFor({ state: 'visible' });

  // A reload does not bring it back.
  await bob.reload();
  await waitConnected(bob);
  await messageWithText(bob, 'bob was here');
  assert.deepEqual(await messageTexts(bob), ['this one stays', 'bob was here']);
});
