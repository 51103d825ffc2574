// The README's pictures of the page: a morning in a class chat, on a
// desktop and on a phone, in English and in Chinese (the browser's
// language). Written to target/e2e/ like every screenshot of the tests;
// docs/screenshots/ holds the copies the README shows (desktop.png,
// phone.png, desktop-zh.png, phone-zh.png).

import { after, afterEach, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, launchBrowser, logIn, messageWithText, newPerson, openConversation, say, screenshot, startServer,
} from './helpers.mjs';

// Who says what, per language.
const SCENES = {
  'en-US': {
    suffix: '',
    viewer: 'alice',
    others: ['bob', 'carol', 'dave'],
    lines: {
      away: 'Thanks for the notes yesterday!',
      awayAnswer: 'Any time.',
      morning: 'Morning! The slides for today are on the shared drive.',
      mention: '@alice can you share the link again?',
      answer: 'Sure: http://192.168.1.23:8000/files/slides.pdf',
      private: 'Lunch at noon?',
      typing: 'Got it, tha',
    },
  },
  'zh-CN': {
    suffix: '-zh',
    viewer: '小李',
    others: ['小王', '小张', '老陈'],
    lines: {
      away: '谢谢你昨天的笔记！',
      awayAnswer: '不客气。',
      morning: '早上好！今天的课件在共享盘上。',
      mention: '@小李 能再发一下链接吗？',
      answer: '好的：http://192.168.1.23:8000/files/slides.pdf',
      private: '中午一起吃饭吗？',
      typing: '收到，谢',
    },
  },
};

let browser;
let server;
let pages;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// A server of its own for each language: nobody of the other scene online.
beforeEach(async () => {
  pages = [];
  server = await startServer();
});

afterEach(async () => {
  const problems = pages.flatMap((page) => page.problems);
  await Promise.all(pages.map((page) => page.context().close()));
  await server.stop();
  assert.deepEqual(problems, []);
});

async function person(viewport, locale) {
  const page = await newPerson(browser, viewport, { locale });
  pages.push(page);
  return page;
}

for (const [locale, scene] of Object.entries(SCENES)) {
  test(`the page in ${locale}, on a desktop and on a phone`, async () => {
    const [first, second, third] = scene.others;
    const viewer = await person(DESKTOP, locale);
    const phone = await person(PHONE, locale); // the second person, on a phone
    const carol = await person(DESKTOP, locale);
    const dave = await person(DESKTOP, locale);
    await logIn(viewer, server, scene.viewer);
    await logIn(phone, server, first);
    await logIn(carol, server, second);
    await logIn(dave, server, third);

    // An earlier private conversation with someone who has left since.
    await openConversation(dave, scene.viewer);
    await say(dave, scene.lines.away);
    await openConversation(viewer, third);
    await say(viewer, scene.lines.awayAnswer);
    await messageWithText(dave, scene.lines.awayAnswer);
    await dave.goto('about:blank');
    await openConversation(viewer, null);

    // The room this morning, a mention of the viewer, a private question.
    await say(phone, scene.lines.morning);
    await say(carol, scene.lines.mention);
    await messageWithText(viewer, scene.lines.mention);
    await say(viewer, scene.lines.answer);
    await messageWithText(phone, scene.lines.answer);
    await openConversation(phone, scene.viewer);
    await say(phone, scene.lines.private);
    await viewer.locator('#people .unread-badge:not([hidden])').first().waitFor();
    await openConversation(phone, null);
    await carol.locator('#composer-input').pressSequentially(scene.lines.typing);
    await viewer.locator('#typing:not(:empty)').waitFor();
    await phone.locator('#typing:not(:empty)').waitFor();
    assert.equal(await viewer.locator('.msg.mentions-me').count(), 1);

    await screenshot(viewer, `desktop${scene.suffix}`);
    await screenshot(phone, `phone${scene.suffix}`);
  });
}
