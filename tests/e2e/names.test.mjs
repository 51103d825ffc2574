// Names are yours: look-alike names are one name (case, full-width,
// Cyrillic letters) and invisible characters are refused, each with a
// reason the form shows; a password, set from the chat page, keeps the name
// and logs it in on another device. Each test starts its own server
// (in-memory store).
//
// A file of its own: node's --test-timeout (run.sh) also bounds each file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PHONE,
  chatFixture, logIn, screenshot, tryLogIn,
} from './helpers.mjs';

const chat = chatFixture();
const { person } = chat;

test('look-alike names are refused at login with a clear reason', async () => {
  const alice = await person();
  await logIn(alice, chat.server, 'alice');

  const other = await person(PHONE);
  for (const name of ['ALICE', '\u0430lice' /* Cyrillic а */, 'ａｌｉｃｅ' /* full-width */]) {
    const { status, reason } = await tryLogIn(other, chat.server, name);
    assert.equal(status, 409, `${name} is alice's name`);
    assert.match(reason, /in use/i);
    assert.equal(await other.getAttribute('input[name="name"]', 'aria-invalid'), 'true');
  }
  const { status, reason } = await tryLogIn(other, chat.server, 'al\u200bice');
  assert.equal(status, 400);
  assert.match(reason, /invisible characters/i);
  await screenshot(other, 'phone-login-lookalike');
});

test('a password keeps the name: set it in the chat, then log in with it on another device', async () => {
  const bob = await person();
  await bob.goto(`${chat.server.url}/login`);
  await bob.getByText('Give a password to keep this name for you').waitFor();
  await logIn(bob, chat.server, 'bob');

  await bob.click('#password-open');
  const dialog = bob.locator('#password-dialog');
  await dialog.waitFor({ state: 'visible' });
  await bob.fill('#new-password', 'correct horse');
  await screenshot(bob, 'desktop-password');
  await bob.click('#password-save');
  await dialog.waitFor({ state: 'hidden' });
  await bob.locator('.notice', { hasText: 'Your password is set' }).waitFor();

  // Changing it needs the current one.
  await bob.click('#password-open');
  await bob.fill('#new-password', 'battery staple');
  await bob.fill('#current-password', 'wrong');
  await bob.click('#password-save');
  await bob.locator('#password-error', { hasText: 'current password is wrong' }).waitFor();
  await bob.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });

  // Another device: without the password the name is refused, and the
  // form points at the password field; with it, it is bob's chat.
  const phone = await person(PHONE);
  const refused = await tryLogIn(phone, chat.server, 'Bob');
  assert.equal(refused.status, 409);
  assert.match(refused.reason, /password/i);
  assert.equal(await phone.evaluate(() => document.activeElement.id), 'password');
  const wrong = await tryLogIn(phone, chat.server, 'Bob', 'not it');
  assert.equal(wrong.status, 403);
  assert.match(wrong.reason, /wrong password/i);

  await phone.fill('input[name="name"]', 'Bob');
  await phone.fill('input[name="password"]', 'correct horse');
  await Promise.all([phone.waitForURL(`${chat.server.url}/`), phone.click('button[type="submit"]')]);
  await phone.locator('#status[data-state="online"]').waitFor();
  assert.equal(await phone.textContent('#me-name'), 'bob', 'the name as its owner typed it');
});
