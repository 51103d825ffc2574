// A page people live in all day: conversations with unread counts (in the
// list, the tab title and the favicon), mentions, "is typing…", people
// offline now who can still be written to. Two or three people, each in
// their own browser context. (The page's language, the keyboard and the
// accessibility check: access.test.mjs.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  WAIT_MS,
  chatFixture, logIn, messageWithText, openConversation, say, screenshot, waitConnected,
} from './helpers.mjs';

const chat = chatFixture();
const { person } = chat;

// The unread badge of a conversation in the people list ('' for none).
function badge(page, name) {
  const badgeNode = name === null
    ? page.locator('#room-unread')
    : page.locator('#people button.user').filter({ has: page.locator('.user-name', { hasText: name }) })
      .locator('.unread-badge');
  return badgeNode.evaluate((node) => (node.hidden ? '' : node.querySelector('[aria-hidden]').textContent));
}

// Waits until the badge of a conversation reads `text` ('' for none).
async function waitBadge(page, name, text) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const shown = await badge(page, name).catch(() => null);
    if (shown === text) return;
    if (Date.now() > deadline) assert.fail(`the badge of ${name ?? 'the room'} reads ${JSON.stringify(shown)}, not ${JSON.stringify(text)}`);
    await page.waitForTimeout(50); // polling a condition, with the deadline above
  }
}

// A page per name, each logged in, in that order.
async function loggedIn(...names) {
  const pages = [];
  for (const name of names) {
    const page = await person();
    await logIn(page, chat.server, name);
    pages.push(page);
  }
  return pages;
}

function waitTitle(page, title) {
  return page.waitForFunction((want) => document.title === want, title, { timeout: WAIT_MS });
}

test('unread counts move in the other conversations, reset when one is opened, and survive a reload', async () => {
  const [alice, bob, carol] = await loggedIn('alice', 'bob', 'carol');

  // alice is in her conversation with bob; the room and carol write to her.
  await openConversation(alice, 'bob');
  await say(alice, 'hi bob');
  await say(carol, 'news for the room');
  await waitBadge(alice, null, '1');
  await waitTitle(alice, '(1) lanchat');
  await openConversation(carol, 'alice');
  await say(carol, 'and one just for you');
  await waitBadge(alice, 'carol', '1');
  await waitTitle(alice, '(2) lanchat');
  assert.match(await alice.locator('link[rel="icon"]').getAttribute('href'), /^data:image\/svg\+xml,/);
  await screenshot(alice, 'desktop-unread');

  // Opening a conversation reads it: its badge goes, the total drops.
  await openConversation(alice, null);
  await messageWithText(alice, 'news for the room');
  await waitBadge(alice, null, '');
  await waitTitle(alice, '(1) lanchat');
  await openConversation(alice, 'carol');
  await messageWithText(alice, 'and one just for you');
  await waitBadge(alice, 'carol', '');
  await waitTitle(alice, 'lanchat');
  assert.equal(await alice.locator('link[rel="icon"]').getAttribute('href'), '/favicon.svg');

  // bob writes while alice looks at carol; alice reloads: still unread, and
  // bob's conversation marks where the new messages start.
  await openConversation(bob, 'alice');
  await say(bob, 'are you there?');
  await say(bob, 'hello?');
  await waitBadge(alice, 'bob', '2');
  await alice.reload();
  await waitConnected(alice);
  await waitBadge(alice, 'bob', '2');
  await waitTitle(alice, '(2) lanchat');
  await openConversation(alice, 'bob');
  await messageWithText(alice, 'hello?');
  const outline = await alice.$$eval('.pane[data-conversation="bob"] > .msg, .pane[data-conversation="bob"] > .divider:not(.day)',
    (nodes) => nodes.map((node) => (node.classList.contains('divider') ? node.textContent : node.querySelector('.bubble').firstChild.textContent)));
  assert.deepEqual(outline, ['hi bob', 'New since your last visit', 'are you there?', 'hello?']);
  await waitTitle(alice, 'lanchat');
});

test('typing @ offers the people online; a mention is highlighted and counted as one', async () => {
  const [alice, bob] = await loggedIn('alice', 'bob');
  await openConversation(alice, 'bob'); // away from the room

  // bob types "@a", picks alice with the keyboard, and sends.
  await bob.locator('#composer-input').pressSequentially('look @a');
  const option = bob.locator('#mention-list [role="option"]', { hasText: 'alice' });
  await option.waitFor();
  assert.equal(await option.getAttribute('aria-selected'), 'true');
  await screenshot(bob, 'desktop-mention-list');
  await bob.keyboard.press('Enter');
  assert.equal(await bob.inputValue('#composer-input'), 'look @alice ');
  await bob.locator('#composer-input').pressSequentially('here');
  await bob.keyboard.press('Enter');

  // alice: the room's badge says it mentions her; the message is highlighted.
  await waitBadge(alice, null, '@1');
  assert.equal(await alice.locator('#room-unread').evaluate((node) => node.classList.contains('is-mention')), true);
  await openConversation(alice, null);
  const message = await messageWithText(alice, 'look @alice here');
  assert.equal(await message.evaluate((node) => node.classList.contains('mentions-me')), true);
  // Not for bob, who wrote it, and "@al" mentions nobody.
  assert.equal(await (await messageWithText(bob, 'look @alice here')).evaluate((node) => node.classList.contains('mentions-me')), false);
  await bob.fill('#composer-input', 'hi @al');
  await bob.locator('#mention-list').waitFor(); // "al" could be alice…
  await bob.keyboard.press('Escape'); // …but bob means no one
  await bob.keyboard.press('Enter');
  assert.equal(await (await messageWithText(alice, 'hi @al')).evaluate((node) => node.classList.contains('mentions-me')), false);
});

test('typing shows for the partner, in the room and privately, and goes away', async () => {
  const [alice, bob, carol] = await loggedIn('alice', 'bob', 'carol');

  // In the room: everyone else sees it, then it goes a few seconds later.
  await bob.locator('#composer-input').pressSequentially('thinking');
  await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
  await carol.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
  assert.equal(await bob.locator('#typing').textContent(), '', 'not to oneself');
  await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor({ state: 'detached' });
  await bob.fill('#composer-input', '');

  // Privately: alice sees it in her conversation with bob; carol, nothing.
  await openConversation(alice, 'bob');
  await openConversation(bob, 'alice');
  await bob.locator('#composer-input').pressSequentially('a secret');
  await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
  await screenshot(alice, 'desktop-typing');
  assert.equal(await carol.locator('#typing').textContent(), '');
  // The message itself ends it.
  await bob.keyboard.press('Enter');
  await messageWithText(alice, 'a secret');
  await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor({ state: 'detached' });
});

test('someone offline now, with an earlier conversation, is listed and can be written to', async () => {
  const [alice, bob] = await loggedIn('alice', 'bob');
  await openConversation(alice, 'bob');
  await say(alice, 'see you later');
  await openConversation(bob, 'alice');
  await messageWithText(bob, 'see you later');

  // bob goes; alice reloads: bob is listed offline, from history.private.
  await bob.goto('about:blank');
  await alice.reload();
  await waitConnected(alice);
  const offlineBob = alice.locator('#offline-list button.user', { hasText: 'bob' });
  await offlineBob.waitFor();
  await offlineBob.click();
  await alice.locator('#private-chip', { hasText: 'offline' }).waitFor();
  await say(alice, 'this waits for you');
  await messageWithText(alice, 'this waits for you');

  // bob comes back: it waited in his inbox, and counts as unread.
  await bob.goto(`${chat.server.url}/`);
  await waitConnected(bob);
  await waitBadge(bob, 'alice', '1');
  await openConversation(bob, 'alice');
  await messageWithText(bob, 'this waits for you');
});
