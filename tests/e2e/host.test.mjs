// The host in charge, as the page shows it: the teacher opens the host link
// (`/host?key=...`; the server is started with `--host-key`) in their
// browser context, then logs in: their page gets the host menus and panel,
// and everyone sees them marked "host". Students are other contexts. Here:
// mute, delete, clear, kick and release; the class modes are in
// modes.test.mjs. Each test starts its own server (in-memory store).
//
// A file of its own: node's --test-timeout (run.sh) also bounds each file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP,
  logIn, logInAsHost, messageTexts, messageWithText, say, screenshot, hostedChat,
  openConversation,
} from './helpers.mjs';

// Long enough for --host-key (16 or more letters, digits, - or _).
const HOST_KEY = 'e2e-host-key-0123456789abcdefABCDEF';

const chat = hostedChat(HOST_KEY);
const { person, host } = chat;

// The host menu next to `name` in the people list, opened.
async function openPersonMenu(page, name) {
  await page.locator(`#people .person-menu[aria-label="Host actions for ${name}"]`).click();
  const menu = page.locator('#host-menu');
  await menu.waitFor({ state: 'visible' });
  return menu;
}

const modeLine = (page) => page.locator('#composer-mode');
const sendButton = (page) => page.locator('#composer .send');

test('a host mutes a student: the student\'s line says until when, and the student cannot send', async () => {
  const teacher = await host();
  const bob = await person();
  await logIn(bob, chat.server, 'bob');

  // Everyone sees who the host is; only the host has the tools.
  await bob.locator('#user-list li', { hasText: 'Teacher' }).locator('.host-badge').waitFor();
  assert.equal(await bob.locator('#user-list li', { hasText: 'bob' }).locator('.host-badge').count(), 0);
  assert.equal(await bob.locator('#host-panel').isVisible(), false);
  assert.equal(await bob.locator('.person-menu').count(), 0);
  await teacher.locator('#me-host').waitFor({ state: 'visible' });

  const menu = await openPersonMenu(teacher, 'bob');
  await screenshot(teacher, 'host-person-menu');
  await menu.locator('.menu-item', { hasText: 'Mute for 5 min' }).click();
  await menu.waitFor({ state: 'hidden' });

  // bob's line: muted until the end, said as a local time (now + 5 min, or
  // a minute off when the clock turned meanwhile).
  await modeLine(bob).filter({ hasText: /muted you until/ }).waitFor();
  const ends = await bob.evaluate(() => [-1, 0, 1].map((m) => formatTime(Date.now() + (5 + m) * 60_000)));
  const line = await modeLine(bob).textContent();
  assert.ok(ends.some((end) => line.includes(`until ${end}`)), `"${line}" names the end of the mute (${ends})`);
  assert.equal(await sendButton(bob).isDisabled(), true, 'Send is disabled');
  await bob.locator('.notice', { hasText: 'The host muted you until' }).waitFor();

  // Enter does not send: the text stays in the box.
  await say(bob, 'can I still talk?');
  assert.equal(await bob.inputValue('#composer-input'), 'can I still talk?');

  // The host sees the mute in the list and in the panel.
  await teacher.locator('#user-list li', { hasText: 'bob' }).locator('.muted-tag').waitFor();
  await teacher.locator('#muted-list li', { hasText: 'bob' }).waitFor();
  await screenshot(bob, 'muted');

  // A muted student may still write privately to the host.
  await bob.click('#user-list button:has-text("Teacher")');
  await modeLine(bob).waitFor({ state: 'hidden' });
  assert.equal(await sendButton(bob).isDisabled(), false);
  await bob.press('#composer-input', 'Enter');
  await openConversation(teacher, 'bob');
  await messageWithText(teacher, 'can I still talk?');

  // Back to everyone: muted again; the host unmutes from the panel.
  await bob.click('#private-cancel');
  await modeLine(bob).filter({ hasText: /muted you until/ }).waitFor();
  await teacher.locator('#muted-list li', { hasText: 'bob' }).getByRole('button', { name: 'Unmute bob' }).click();
  await modeLine(bob).waitFor({ state: 'hidden' });
  await bob.locator('.notice', { hasText: 'unmuted you' }).waitFor();
  assert.equal(await sendButton(bob).isDisabled(), false);
  await say(bob, 'thank you');
  await openConversation(teacher, null);
  await messageWithText(teacher, 'thank you');
  await teacher.locator('#muted-list li', { hasText: 'Nobody' }).waitFor();
});

test('a host deletes a student\'s message with the keyboard, and it disappears for everyone; then clears the history', async () => {
  const teacher = await host();
  const alice = await person();
  const bob = await person();
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  await say(alice, 'something rude');
  await say(alice, 'something fine');
  await messageWithText(bob, 'something fine');
  const atTeacher = await messageWithText(teacher, 'something rude');

  // Students have no host menu (it is not shown on their pages).
  assert.equal(await bob.locator('.msg-menu:visible').count(), 0);

  // The menu with the keyboard: Enter opens it on its first item, arrows
  // move, Escape closes it and gives the focus back.
  const trigger = atTeacher.locator('.msg-menu');
  await trigger.focus();
  await teacher.keyboard.press('Enter');
  const menu = teacher.locator('#host-menu');
  await menu.waitFor({ state: 'visible' });
  const focused = () => teacher.evaluate(() => document.activeElement.textContent);
  assert.equal(await focused(), 'Delete this message');
  await screenshot(teacher, 'host');
  await teacher.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'Mute for 5 min');
  await teacher.keyboard.press('Escape');
  await menu.waitFor({ state: 'hidden' });
  assert.equal(await trigger.evaluate((node) => node === document.activeElement), true);

  // Delete takes two presses (no confirm() dialog): the first only asks.
  await teacher.keyboard.press('Enter');
  await menu.waitFor({ state: 'visible' });
  await teacher.keyboard.press('Enter');
  await menu.locator('.menu-item[data-armed="true"]', { hasText: 'Click again' }).waitFor();
  assert.equal(await bob.locator('.msg').count(), 2, 'one press deletes nothing');
  await teacher.keyboard.press('Enter');
  await menu.waitFor({ state: 'hidden' });

  for (const page of [bob, alice, teacher]) {
    await page.locator('.msg', { hasText: 'something rude' }).waitFor({ state: 'detached' });
  }
  assert.deepEqual(await messageTexts(bob), ['something fine']);

  // Clear history: two clicks in the panel; everyone's room view empties.
  const clear = teacher.locator('#clear-history');
  await clear.click();
  await teacher.locator('#clear-history[data-armed="true"]').waitFor();
  assert.equal(await bob.locator('.msg').count(), 1, 'one click clears nothing');
  await clear.click();
  for (const page of [bob, alice]) {
    await page.locator('.notice', { hasText: 'The host cleared the history' }).waitFor();
    assert.equal(await page.locator('.msg').count(), 0);
  }
});

test('kicked, banned or released, a student lands on the login form, which says why', async () => {
  const teacher = await host();
  const bob = await person();
  const carol = await person();
  const dave = await person();
  await logIn(bob, chat.server, 'bob');
  await logIn(carol, chat.server, 'carol');
  await logIn(dave, chat.server, 'dave');

  // Two clicks: the first arms the item, which then says what it will do.
  let menu = await openPersonMenu(teacher, 'bob');
  await menu.locator('.menu-item', { hasText: 'Kick out of the chat' }).click();
  const armed = menu.locator('.menu-item[data-armed="true"]');
  await armed.filter({ hasText: 'Kick bob? Click again' }).click();
  await bob.waitForURL(/\/login/);
  await bob.locator('#login-error', { hasText: 'The host removed you from the chat' }).waitFor();
  assert.doesNotMatch(bob.url(), /reason=/, 'a reload would not say it again');

  menu = await openPersonMenu(teacher, 'carol');
  await menu.locator('.menu-item', { hasText: 'Release the name' }).click();
  await armed.filter({ hasText: 'Release carol? Click again' }).click();
  await carol.waitForURL(/\/login/);
  await carol.locator('#login-error', { hasText: 'The host released your name' }).waitFor();
  await teacher.locator('#user-list button', { hasText: 'carol' }).waitFor({ state: 'detached' });

  // A ban is a kick that lasts: the panel lists it, with Unban.
  menu = await openPersonMenu(teacher, 'dave');
  await menu.locator('.menu-item', { hasText: 'Ban' }).click();
  await armed.filter({ hasText: 'Ban dave? Click again' }).click();
  await dave.locator('#login-error', { hasText: 'The host removed you from the chat' }).waitFor();
  await teacher.locator('#banned-list li', { hasText: 'dave' }).waitFor();
  await dave.click('button[type="submit"]'); // the form kept the name
  await dave.locator('#login-error', { hasText: /banned/i }).waitFor();
  await teacher.getByRole('button', { name: 'Unban dave' }).click();
  await teacher.locator('#banned-list li', { hasText: 'Nobody' }).waitFor();
  await Promise.all([dave.waitForURL(`${chat.server.url}/`), dave.click('button[type="submit"]')]);
  await dave.locator('#status[data-state="online"]').waitFor();
});
