// The README's pictures of the page: a morning in a class chat, on a
// desktop and on a phone, in English and in Chinese (the browser's
// language). Written to target/e2e/ like every screenshot of the tests;
// docs/screenshots/ holds the copies the README shows (desktop.png,
// phone.png, desktop-zh.png, phone-zh.png).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, chatFixture, logIn, messageWithText, openConversation, say, screenshot,
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

// A server of its own for each language: nobody of the other scene online.
const chat = chatFixture();

// A person whose browser speaks `locale`.
const person = (viewport, locale) => chat.person(viewport, { locale });

for (const [locale, scene] of Object.entries(SCENES)) {
  test(`the page in ${locale}, on a desktop and on a phone`, async () => {
    const [first, second, third] = scene.others;
    const viewer = await person(DESKTOP, locale);
    const phone = await person(PHONE, locale); // the second person, on a phone
    const carol = await person(DESKTOP, locale);
    const dave = await person(DESKTOP, locale);
    await logIn(viewer, chat.server, scene.viewer);
    await logIn(phone, chat.server, first);
    await logIn(carol, chat.server, second);
    await logIn(dave, chat.server, third);

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
