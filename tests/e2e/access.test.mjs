// The page for everyone: in the browser's language (English or Simplified
// Chinese, the login form included), usable with the keyboard alone, and
// without serious or critical accessibility violations as axe-core finds
// them (on the login form, the chat page, the @ list, the settings).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import {
  DESKTOP, PHONE,
  chatFixture, logIn, messageWithText, openConversation, say, screenshot, waitConnected,
} from './helpers.mjs';

// axe-core, a devDependency, injected into the page under test.
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const chat = chatFixture();
const { person } = chat;

test('with Chinese as the browser language, the login form and the page are in Chinese', async () => {
  const li = await person(PHONE, { locale: 'zh-CN' });
  await li.goto(`${chat.server.url}/`);
  await li.waitForURL(/\/login/);
  assert.equal(await li.locator('html').getAttribute('lang'), 'zh-CN');
  assert.equal(await li.locator('label[for="name"]').textContent(), '你的名字');
  assert.equal(await li.locator('button[type="submit"]').textContent(), '加入聊天');
  await screenshot(li, 'phone-login-zh');
  await li.fill('input[name="name"]', '小李');
  await Promise.all([li.waitForURL(`${chat.server.url}/`), li.click('button[type="submit"]')]);
  await waitConnected(li);
  assert.equal(await li.locator('#status-text').textContent(), '已连接');
  assert.equal(await li.locator('#composer .send').textContent(), '发送');
  assert.equal(await li.locator('#composer-input').getAttribute('placeholder'), '发给所有人');

  // A server error, said in Chinese by its code.
  await say(li, 'x'.repeat(4001));
  await li.locator('#composer-error', { hasText: '消息太长了' }).waitFor();

  // The language can be switched in the page; the choice is remembered.
  await li.click('#settings-open');
  await Promise.all([li.waitForEvent('load'), li.selectOption('#language', 'en')]);
  await waitConnected(li);
  assert.equal(await li.locator('#composer .send').textContent(), 'Send');
});

// axe-core's findings on the page now that are serious or critical.
async function seriousViolations(page) {
  if (await page.evaluate(() => !window.axe)) await page.addScriptTag({ path: AXE });
  const results = await page.evaluate(() => window.axe.run(document));
  return results.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map((violation) => `${violation.id}: ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`);
}

test('no serious or critical accessibility violation on the login form and the chat page (axe-core)', async () => {
  for (const locale of ['en-US', 'zh-CN']) {
    const alice = await person(DESKTOP, { locale });
    await alice.goto(`${chat.server.url}/login`);
    assert.deepEqual(await seriousViolations(alice), [], `login form, ${locale}`);
    await logIn(alice, chat.server, `alice-${locale}`);
    const bob = await person();
    await logIn(bob, chat.server, `bob-${locale}`);
    await say(bob, `hello @alice-${locale}`);
    await openConversation(bob, `alice-${locale}`);
    await say(bob, 'a private word');
    await alice.locator('#user-list .unread-badge:not([hidden])').waitFor();
    await messageWithText(alice, `hello @alice-${locale}`);
    assert.deepEqual(await seriousViolations(alice), [], `chat page, ${locale}`);

    // The @ list open, then the settings dialog.
    await alice.locator('#composer-input').pressSequentially('@b');
    await alice.locator('#mention-list').waitFor();
    assert.deepEqual(await seriousViolations(alice), [], `the @ list, ${locale}`);
    await alice.keyboard.press('Escape');
    await alice.click('#settings-open');
    await alice.locator('#settings-dialog').waitFor();
    assert.deepEqual(await seriousViolations(alice), [], `settings, ${locale}`);
    await alice.keyboard.press('Escape');
  }
});

test('the keyboard alone opens a conversation and sends', async () => {
  const alice = await person();
  const bob = await person();
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  // From the message box, Shift+Tab back to bob's name in the people list.
  const bobButton = alice.locator('#user-list button.user', { hasText: 'bob' });
  await bobButton.waitFor();
  await alice.locator('#composer-input').focus();
  for (let i = 0; i < 30 && !(await bobButton.evaluate((node) => node === document.activeElement)); i += 1) {
    await alice.keyboard.press('Shift+Tab');
  }
  assert.equal(await bobButton.evaluate((node) => node === document.activeElement), true, 'bob\'s name is reachable');
  // A visible focus ring.
  assert.notEqual(await bobButton.evaluate((node) => getComputedStyle(node).outlineStyle), 'none');
  await alice.keyboard.press('Enter');
  await alice.locator('#private-chip', { hasText: 'bob' }).waitFor();
  assert.equal(await alice.evaluate(() => document.activeElement.id), 'composer-input');
  await alice.keyboard.type('typed with the keyboard only');
  await alice.keyboard.press('Enter');
  await openConversation(bob, 'alice');
  await messageWithText(bob, 'typed with the keyboard only');
});
