// The class modes, as everyone sees them: the host sets them in the host
// panel, and a student's page says under the message box why it cannot
// send, and for how long (announce-only; slow mode counting down; private
// messages between students off), with Send disabled meanwhile. The host is
// never held back. Each test starts its own server (in-memory store).
//
// A file of its own: node's --test-timeout (run.sh) also bounds each file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, WAIT_MS,
  logIn, logInAsHost, messageWithText, say, screenshot, hostedChat,
  openConversation,
} from './helpers.mjs';

// Long enough for --host-key (16 or more letters, digits, - or _).
const HOST_KEY = 'e2e-host-key-0123456789abcdefABCDEF';

const chat = hostedChat(HOST_KEY);
const { person, host } = chat;

const modeLine = (page) => page.locator('#composer-mode');
const sendButton = (page) => page.locator('#composer .send');

test('a host turns announce-only on and off: the student sees why it cannot send, then can again', async () => {
  const teacher = await host();
  const bob = await person();
  await logIn(bob, chat.server, 'bob');

  await teacher.locator('#mode-announce').check();
  await modeLine(bob).filter({ hasText: 'Only the host can write to everyone' }).waitFor();
  assert.equal(await sendButton(bob).isDisabled(), true);
  await bob.locator('.notice', { hasText: 'Announce-only' }).waitFor();
  assert.match(await modeLine(teacher).textContent(), /announce-only.*not held back/i, 'the host is told it does not apply');

  // The host still writes, and the message is marked as the host's.
  await say(teacher, 'Listen up: test starts now');
  const announcement = await messageWithText(bob, 'Listen up: test starts now');
  await announcement.locator('.msg-header .host-badge').waitFor();

  await teacher.locator('#mode-announce').uncheck();
  await modeLine(bob).waitFor({ state: 'hidden' });
  assert.equal(await sendButton(bob).isDisabled(), false);
  await bob.locator('.notice', { hasText: 'everyone can write again' }).waitFor();
  await say(bob, 'ready');
  await messageWithText(teacher, 'ready');
});

test('slow mode counts down, and private messages off leave the host reachable', async () => {
  const teacher = await host();
  const alice = await person();
  const bob = await person(PHONE);
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');

  await teacher.locator('#mode-slow').selectOption('5');
  await modeLine(bob).filter({ hasText: 'one message every 5 s' }).waitFor();
  await say(bob, 'first');
  await messageWithText(teacher, 'first');
  await modeLine(bob).filter({ hasText: /you can write again in \d s/ }).waitFor();
  assert.equal(await sendButton(bob).isDisabled(), true);
  await screenshot(bob, 'phone-slow-mode');
  // The countdown ends by itself (within the 5 s, well inside the deadline).
  await modeLine(bob).filter({ hasText: 'one message every 5 s' }).waitFor({ timeout: WAIT_MS });
  assert.equal(await sendButton(bob).isDisabled(), false);
  await say(bob, 'second');
  await messageWithText(teacher, 'second');

  await teacher.locator('#mode-slow').selectOption('0');
  await teacher.locator('#mode-private').uncheck();
  await bob.locator('.notice', { hasText: 'Private messages between students are off' }).waitFor();
  await bob.click('#people-toggle');
  await bob.click('#user-list button:has-text("alice")');
  await modeLine(bob).filter({ hasText: 'Private messages between students are off' }).waitFor();
  assert.equal(await sendButton(bob).isDisabled(), true);
  await bob.click('#people-toggle');
  await bob.click('#user-list button:has-text("Teacher")');
  await modeLine(bob).waitFor({ state: 'hidden' });
  await say(bob, 'a question for you');
  await openConversation(teacher, 'bob');
  await messageWithText(teacher, 'a question for you');
});
