// The chat page as people use it: two or three people, each in their own
// browser context, against a real lanchat server with the in-memory store.
// Each test starts its own server, so none sees another's messages.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, WAIT_MS,
  chatFixture, logIn, messageTexts, messageWithText, openConversation, say, screenshot, timelineOutline,
  waitConnected,
} from './helpers.mjs';

const chat = chatFixture();
const { person } = chat;

describe('login', () => {
  test('an invalid name is refused with 400 and its reason, and the form keeps it', async () => {
    const page = await person(DESKTOP);
    await page.goto(`${chat.server.url}/login`);
    const tooLong = 'x'.repeat(33);
    await page.fill('input[name="name"]', tooLong);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/login') && r.request().method() === 'POST'),
      page.click('button[type="submit"]'),
    ]);
    assert.equal(response.status(), 400);

    const error = page.locator('#login-error');
    await error.waitFor({ state: 'visible' });
    assert.notEqual((await error.textContent()).trim(), '', 'the reason is shown');
    assert.equal(await page.inputValue('input[name="name"]'), tooLong, 'the name is kept to be fixed');
    assert.equal(await page.getAttribute('input[name="name"]', 'aria-invalid'), 'true');
    await screenshot(page, 'desktop-login-invalid');
  });

  test('a name online in another session is refused with 409 and its reason', async () => {
    const alice = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');

    const impostor = await person(PHONE);
    await impostor.goto(`${chat.server.url}/login`);
    await impostor.fill('input[name="name"]', 'alice');
    const [response] = await Promise.all([
      impostor.waitForResponse((r) => r.url().endsWith('/login') && r.request().method() === 'POST'),
      impostor.click('button[type="submit"]'),
    ]);
    assert.equal(response.status(), 409);
    const error = impostor.locator('#login-error');
    await error.waitFor({ state: 'visible' });
    assert.notEqual((await error.textContent()).trim(), '');
    await screenshot(impostor, 'phone-login-taken');
  });

  test('the name is remembered for next time, and log out goes back to the form', async () => {
    const page = await person(DESKTOP);
    await logIn(page, chat.server, 'Zoë');
    await Promise.all([page.waitForURL(/\/login/), page.click('text=Log out')]);
    assert.equal(await page.inputValue('input[name="name"]'), 'Zoë');
    await screenshot(page, 'desktop-login');
  });
});

describe('chat', () => {
  test('two people exchange room messages both ways, and see each other online', async () => {
    const alice = await person(DESKTOP);
    const bob = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await logIn(bob, chat.server, 'bob');

    // alice is told bob joined, and both lists show both names.
    await alice.locator('.notice', { hasText: 'bob joined' }).waitFor();
    for (const page of [alice, bob]) {
      await page.locator('#user-list', { hasText: 'alice' }).waitFor();
      await page.locator('#user-list', { hasText: 'bob' }).waitFor();
    }

    await say(alice, 'Hi bob, lunch at noon?');
    const atBob = await messageWithText(bob, 'Hi bob, lunch at noon?');
    assert.equal(await atBob.getAttribute('data-from'), 'alice');
    assert.equal(await atBob.evaluate((node) => node.classList.contains('mine')), false);
    const atAlice = await messageWithText(alice, 'Hi bob, lunch at noon?');
    assert.equal(await atAlice.evaluate((node) => node.classList.contains('mine')), true, 'own messages are marked');
    assert.match(await atBob.locator('time').textContent(), /\d/, 'a local time is shown');

    // Shift+Enter breaks the line, Enter sends.
    await bob.fill('#composer-input', 'Sure!');
    await bob.press('#composer-input', 'Shift+Enter');
    await bob.locator('#composer-input').pressSequentially('See you there');
    await bob.press('#composer-input', 'Enter');
    await messageWithText(alice, 'See you there');
    assert.deepEqual(await messageTexts(alice), ['Hi bob, lunch at noon?', 'Sure!\nSee you there']);
    assert.equal(await bob.inputValue('#composer-input'), '', 'the box is emptied after sending');

    // bob leaves: alice is told, and the list follows.
    await bob.context().close();
    await alice.locator('.notice', { hasText: 'bob left' }).waitFor();
    await alice.locator('#user-list button', { hasText: 'bob' }).waitFor({ state: 'detached' });
  });

  test('a private message reaches only its recipient', async () => {
    const alice = await person(DESKTOP);
    const bob = await person(DESKTOP);
    const carol = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await logIn(bob, chat.server, 'bob');
    await logIn(carol, chat.server, 'carol');

    // alice clicks bob's name: the composer switches to private mode.
    await alice.click('#user-list button:has-text("bob")');
    await alice.locator('#private-chip', { hasText: 'bob' }).waitFor();
    await say(alice, 'psst, just for you');

    // bob opens his conversation with alice.
    await openConversation(bob, 'alice');
    const atBob = await messageWithText(bob, 'psst, just for you');
    assert.equal(await atBob.evaluate((node) => node.classList.contains('private')), true);
    assert.match(await atBob.locator('.msg-header').textContent(), /alice\s*→\s*you/);
    const atAlice = await messageWithText(alice, 'psst, just for you');
    assert.match(await atAlice.locator('.msg-header').textContent(), /You\s*→\s*bob/);

    // Back to the room; carol gets that room message, sent after the private
    // one on the same connection, so had the private one been sent to her
    // too it would be on her screen by now.
    await alice.click('#private-cancel');
    await alice.locator('#private-chip').waitFor({ state: 'hidden' });
    await say(alice, 'hello everyone');
    await messageWithText(carol, 'hello everyone');
    assert.deepEqual(await messageTexts(carol), ['hello everyone']);

    // bob answers with the reply button on the private message.
    await atBob.locator('.reply').click();
    await say(bob, 'thanks!');
    await openConversation(alice, 'bob');
    const answer = await messageWithText(alice, 'thanks!');
    assert.match(await answer.locator('.msg-header').textContent(), /bob\s*→\s*you/);
    await screenshot(bob, 'desktop-private');
  });

  test('private messages sent while away wait in the inbox and are shown on arrival', async () => {
    const alice = await person(DESKTOP);
    const bob = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await logIn(bob, chat.server, 'bob');
    await alice.click('#user-list button:has-text("bob")');

    // bob closes the chat; alice is still writing to him, and is told he is
    // offline. (He comes back in the same browser: his session, and so his
    // name, is still his; contract v2 refuses the name to a new session.)
    await bob.goto('about:blank');
    await alice.locator('.notice', { hasText: 'bob went offline' }).waitFor();
    await alice.locator('#private-chip', { hasText: 'offline' }).waitFor();
    await say(alice, 'call me when you are back');
    await messageWithText(alice, 'call me when you are back');

    const bobAgain = bob;
    await bobAgain.goto(`${chat.server.url}/`);
    await waitConnected(bobAgain);
    await bobAgain.locator('.notice-inbox').waitFor();
    await openConversation(bobAgain, 'alice');
    const waiting = await messageWithText(bobAgain, 'call me when you are back');
    assert.equal(await waiting.evaluate((node) => node.classList.contains('from-inbox')), true);
    assert.match(await waiting.locator('.msg-header').textContent(), /alice\s*→\s*you/);
    await screenshot(bobAgain, 'desktop-inbox');
  });

  test('user text is shown literally, never as HTML', async () => {
    const alice = await person(DESKTOP);
    const bob = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await logIn(bob, chat.server, '<b>bob</b>');

    const attack = '<img src=x onerror=alert(1)>';
    await say(bob, attack);
    await say(bob, '<script>alert(2)</script> & <i>not italic</i>');
    await messageWithText(alice, 'not italic');

    assert.deepEqual(await messageTexts(alice), [attack, '<script>alert(2)</script> & <i>not italic</i>']);
    assert.equal(await alice.locator('#timeline img, #timeline script, #timeline i, #timeline b').count(), 0);
    assert.equal(await alice.locator('#user-list img, #user-list b').count(), 0);
    await alice.locator('#user-list', { hasText: '<b>bob</b>' }).waitFor();
    // afterEach fails the test if an alert() ran.
  });

  test('a reload keeps the history, shows it once, then a divider', async () => {
    const alice = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await say(alice, 'first');
    await say(alice, 'second');
    await messageWithText(alice, 'second');

    await alice.reload();
    await waitConnected(alice);
    await messageWithText(alice, 'second');
    assert.deepEqual(await messageTexts(alice), ['first', 'second']);
    assert.equal(await alice.locator('.divider:not(.day)').count(), 1);

    // New messages go below the divider.
    await say(alice, 'third');
    await messageWithText(alice, 'third');
    assert.deepEqual(await timelineOutline(alice), ['first', 'second', '--', 'third']);
  });

  test('server errors are shown next to the input, and the text is kept', async () => {
    const alice = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    const tooLong = 'a'.repeat(4001);
    await say(alice, tooLong);

    const error = alice.locator('#composer-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.textContent(), /too long/i);
    assert.equal(await alice.inputValue('#composer-input'), tooLong, 'the refused text is given back');

    // Typing again clears the error.
    await alice.fill('#composer-input', 'short');
    await error.waitFor({ state: 'hidden' });
  });

  test('the tab title counts unread messages while the tab is hidden', async () => {
    const alice = await person(DESKTOP);
    const bob = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await logIn(bob, chat.server, 'bob');

    // Headless tabs are never hidden; pretend, the way a browser reports it.
    const setHidden = (page, hidden) => page.evaluate((value) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => value });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);

    await setHidden(alice, true);
    await say(bob, 'one');
    await say(bob, 'two');
    await alice.waitForFunction(() => document.title === '(2) lanchat', null, { timeout: WAIT_MS });
    await setHidden(alice, false);
    await alice.waitForFunction(() => document.title === 'lanchat', null, { timeout: WAIT_MS });
  });

  test('the view follows new messages unless the reader scrolled up', async () => {
    const alice = await person(PHONE);
    const bob = await person(DESKTOP);
    await logIn(alice, chat.server, 'alice');
    await logIn(bob, chat.server, 'bob');
    for (let i = 1; i <= 30; i += 1) await say(bob, `line ${i}`);
    await messageWithText(alice, 'line 30');
    const atBottom = () => alice.$eval('#timeline', (t) => t.scrollHeight - t.scrollTop - t.clientHeight < 64);
    assert.equal(await atBottom(), true, 'followed while at the bottom');

    await alice.$eval('#timeline', (t) => { t.scrollTop = 0; });
    await say(bob, 'while you were reading');
    await messageWithText(alice, 'while you were reading');
    assert.equal(await atBottom(), false, 'did not jump while scrolled up');
    await alice.locator('#jump').click();
    await alice.waitForFunction(() => {
      const t = document.getElementById('timeline');
      return t.scrollHeight - t.scrollTop - t.clientHeight < 64;
    }, null, { timeout: WAIT_MS });
  });
});

describe('screenshots', () => {
  test('a conversation on a desktop and on a phone', async () => {
    const alice = await person(DESKTOP);
    const bob = await person(PHONE);
    const carol = await person(DESKTOP);
    await logIn(carol, chat.server, 'carol');
    await logIn(alice, chat.server, 'alice');
    await say(carol, 'Morning! Is the printer on the 2nd floor working again?');
    await say(alice, 'Yes, fixed it yesterday.');
    await say(alice, 'Drivers are on http://printer.lan/drivers if you need them.');
    await messageWithText(carol, 'Drivers are on');
    await logIn(bob, chat.server, 'bob');
    await say(bob, 'Hi all! Who is up for lunch at 12:30?');
    await say(carol, 'Me!\nI will book a table.');
    await messageWithText(alice, 'I will book a table');
    await alice.click('#user-list button:has-text("bob")');
    await say(alice, 'Count me in, can you save me a seat?');
    await messageWithText(bob, 'save me a seat', { state: 'attached' }); // unread in bob's list
    await alice.fill('#composer-input', 'Also bring the slides');
    await screenshot(alice, 'desktop-chat');

    await say(bob, 'Sure, see you there');
    await openConversation(alice, null);
    await messageWithText(alice, 'see you there');
    await screenshot(bob, 'phone-chat');
    await bob.click('#people-toggle');
    await bob.locator('#people').waitFor({ state: 'visible' });
    await screenshot(bob, 'phone-people');

    const dave = await person(DESKTOP, { colorScheme: 'dark' });
    await logIn(dave, chat.server, 'dave');
    await messageWithText(dave, 'I will book a table');
    await screenshot(dave, 'desktop-dark');
  });
});
