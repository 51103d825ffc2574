// Shared pieces of the end-to-end tests: start and stop a lanchat server (and
// a Redis for it), launch headless Chromium, log a user in through the real
// form, and wait for things on the page.
//
// Rules these helpers keep for every test:
// - Only loopback addresses: servers bind 127.0.0.1 on a port the OS picks.
// - No sleeps: every wait is a Playwright wait on a condition, with a
//   generous deadline (WAIT_MS) so a loaded 2-core machine does not flake,
//   while a real hang still fails instead of stalling.

import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach } from 'node:test';
import { createServer } from 'node:net';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '..', '..');
export const WWW = join(REPO, 'www');
export const SHOTS = join(REPO, 'target', 'e2e');

// How long any single wait may take before the test fails.
export const WAIT_MS = 20_000;
// How long a process may take to print its "ready" line.
const START_MS = 15_000;
// How long a stopped server may take to exit before it is killed; the
// protocol promises an exit within 5 s of SIGTERM.
const STOP_MS = 7_000;

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', // we run as root in CI, where the sandbox cannot start
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/* Processes ----------------------------------------------------------- */

// Starts `command args` and resolves once a line of its stdout matches
// `ready`, with the match. Rejects with the process's output if it exits or
// stays silent for too long.
function startProcess(command, args, ready, label) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${label} ${why}\n--- its output ---\n${output}`));
    };
    const timer = setTimeout(() => fail(`printed no ready line within ${START_MS} ms`), START_MS);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = output.match(ready);
      if (match && !settled) {
        settled = true;
        clearTimeout(timer);
        resolvePromise({ child, match });
      }
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    child.on('error', (error) => fail(`could not start: ${error.message}`));
    child.on('exit', (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
  });
}

// Sends SIGTERM and waits for the exit; SIGKILL if that takes too long.
function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolvePromise();
    });
    child.kill('SIGTERM');
  });
}

// Starts the lanchat server under test (LANCHAT_BIN) serving this repo's
// www/. `port` 0 lets the OS pick; the restart test passes the old port to
// come back where the pages expect it. `hostKey` fixes the secret of the
// host link (`--host-key`, at least 16 letters, digits, - or _); the
// returned `hostLink` is then the link a teacher opens. `args`: more flags
// (e.g. `['--max-per-address', '0']` for many clients from 127.0.0.1).
export async function startServer({ port = 0, redis = null, hostKey = null, args: extra = [] } = {}) {
  const bin = process.env.LANCHAT_BIN;
  if (!bin) throw new Error('set LANCHAT_BIN to the lanchat binary (tests/e2e/run.sh does)');
  const args = ['--host', '127.0.0.1', '--port', String(port), '--www', WWW, '--log-level', 'warn'];
  if (redis) args.push('--redis', redis);
  if (hostKey) args.push('--host-key', hostKey);
  args.push(...extra);
  const { child, match } = await startProcess(bin, args, /listening on (http:\/\/[^\s]+)/, 'lanchat');
  const url = match[1].replace(/\/$/, '');
  // Keep draining its output so a chatty server never blocks on a full pipe.
  child.stdout.resume();
  child.stderr.resume();
  return {
    url,
    port: Number(new URL(url).port),
    hostLink: hostKey ? `${url}/host?key=${hostKey}` : null,
    stop: () => stopProcess(child),
  };
}

// A throwaway redis-server on a free loopback port, persisting nothing.
export async function startRedis() {
  const port = await freePort();
  const { child } = await startProcess(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    /Ready to accept connections/,
    'redis-server',
  );
  child.stdout.resume();
  return { url: `redis://127.0.0.1:${port}`, stop: () => stopProcess(child) };
}

function freePort() {
  return new Promise((resolvePromise, reject) => {
    const probe = createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePromise(port));
    });
  });
}

/* Clients without a browser ----------------------------------------- */

// Logs `name` in with POST /login, as the form would, and returns the
// Cookie header that carries the session.
export async function logInCookies(server, name) {
  const response = await fetch(`${server.url}/login`, {
    method: 'POST',
    body: new URLSearchParams({ name }),
    redirect: 'manual',
  });
  if (response.status !== 303) throw new Error(`login of ${name}: ${response.status}`);
  return response.headers.getSetCookie().map((cookie) => cookie.split(';')[0]).join('; ');
}

// Opens /ws with those cookies (the `ws` package: Node 20 has no WebSocket
// of its own) and resolves once it is open; frames are ignored.
export function openSocket(server, cookies) {
  return new Promise((resolvePromise, reject) => {
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/ws`, { headers: { Cookie: cookies } });
    socket.once('open', () => resolvePromise(socket));
    socket.once('error', reject);
  });
}

// Closes a socket and resolves once the close handshake is over.
export function closeSocket(socket) {
  if (socket.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolvePromise) => {
    socket.once('close', () => resolvePromise());
    socket.close();
  });
}

/* Browser ------------------------------------------------------------- */

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

// A fresh browser context (its own cookies and storage: one "person") with
// one page. Fails the test on any error thrown by the page's scripts or any
// alert(), which is what an XSS would trigger.
// Animations are turned off (reducedMotion) so screenshots never catch one
// halfway.
// `locale` is the browser's language (e.g. 'zh-CN').
export async function newPerson(browser, viewport = DESKTOP, { colorScheme = 'light', locale = 'en-US' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, locale, reducedMotion: 'reduce' });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  page.on('dialog', (dialog) => {
    page.problems.push(`dialog: ${dialog.type()} ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  return page;
}

// Logs `name` in through the login form (as a person would: open the chat,
// get sent to the form, type, submit) and waits until the chat is connected.
export async function logIn(page, server, name) {
  await page.goto(`${server.url}/`);
  await page.waitForURL(/\/login/);
  await page.fill('input[name="name"]', name);
  await Promise.all([page.waitForURL(`${server.url}/`), page.click('button[type="submit"]')]);
  await waitConnected(page);
}

// The teacher: opens the host link first (it sets the host cookie, then
// sends the browser on to the login form), logs in as anyone would, and
// waits for the host panel.
export async function logInAsHost(page, server, name) {
  if (!server.hostLink) throw new Error('start the server with a hostKey to get a host link');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes('/host?key=')),
    page.goto(server.hostLink),
  ]);
  if (response.status() !== 303) throw new Error(`the host link got ${response.status()}, not 303`);
  await logIn(page, server, name);
  await page.locator('#host-panel').waitFor({ state: 'visible' });
}

// Submits the login form with `name` (and `password`) and returns the
// status and the reason the form shows ('' when it let the name in).
export async function tryLogIn(page, server, name, password = '') {
  await page.goto(`${server.url}/login`);
  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', password);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/login') && r.request().method() === 'POST'),
    page.click('button[type="submit"]'),
  ]);
  if (response.status() === 303) return { status: 303, reason: '' };
  const error = page.locator('#login-error');
  await error.waitFor({ state: 'visible' });
  return { status: response.status(), reason: (await error.textContent()).trim() };
}

export async function waitConnected(page) {
  await page.locator('#status[data-state="online"]').waitFor();
}

// Opens a conversation from the people list, as a person would: the
// private one with `name`, or the room when `name` is null. On a phone the
// list is a drawer, opened first.
export async function openConversation(page, name = null) {
  const drawer = page.locator('#people-toggle');
  if (await drawer.isVisible() && await page.locator('body.people-open').count() === 0) await drawer.click();
  const button = name === null
    ? page.locator('#room-button')
    : page.locator('#people button.user').filter({ has: page.locator('.user-name', { hasText: name }) });
  await button.first().click();
  await page.locator(`.pane[data-conversation="${name ?? ''}"]`).waitFor();
}

// Types into the message box and presses Enter, like a person.
export async function say(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

// The message whose text is exactly `text` (waits for it to be on screen:
// in the open conversation; `{ state: 'attached' }` waits for it to be on
// the page, in whichever conversation).
export async function messageWithText(page, text, { state = 'visible' } = {}) {
  const message = page.locator('.msg').filter({ has: page.locator('.bubble', { hasText: text }) });
  await message.first().waitFor({ state });
  return message;
}

// The texts of all messages on the page, in order, conversation by
// conversation (the room's first, then each private one; the page shows
// one at a time). The time is left out.
export function messageTexts(page) {
  return page.$$eval('.msg .bubble', (bubbles) =>
    bubbles.map((bubble) => Array.from(bubble.childNodes)
      .filter((node) => !(node.nodeType === 1 && node.tagName === 'TIME'))
      .map((node) => node.textContent)
      .join('')));
}

// The highest seq among the messages on screen (the page keeps it in
// data-seq), or null when none has one.
export function lastSeqShown(page) {
  return page.$$eval('.msg[data-seq]', (nodes) =>
    (nodes.length === 0 ? null : Math.max(...nodes.map((node) => Number(node.dataset.seq)))));
}

// Puts a gate on the page's WebSockets to /ws, installed before the page
// opens one. Open (the default), every socket goes through to the server
// untouched. `close()` cuts the page's current socket (the server sees it
// go) and turns away every new one, so the page stays disconnected and keeps
// retrying; `open()` lets it through again and tells the page it is online,
// so it retries at once. `urls` lists every socket the page asked for, so a
// test can check which ones asked for `?after=`.
export async function gateWebSockets(page) {
  const gate = {
    urls: [],
    blocked: false,
    current: null,
    async close() {
      gate.blocked = true;
      const current = gate.current;
      gate.current = null;
      if (current) await current.close();
    },
    async open() {
      gate.blocked = false;
      await page.evaluate(() => window.dispatchEvent(new Event('online')));
    },
  };
  await page.routeWebSocket((url) => url.pathname === '/ws', (route) => {
    gate.urls.push(route.url());
    if (gate.blocked) {
      route.close().catch(() => {});
      return;
    }
    gate.current = route;
    route.connectToServer();
  });
  return gate;
}

// The `after` a socket URL asked for, or null without one.
export function afterParam(url) {
  return new URL(url).searchParams.get('after');
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

// The timeline in short: each message's text, and '--' for the divider that
// follows the history. Notices and day dividers are left out. Conversation
// by conversation, as messageTexts.
export function timelineOutline(page) {
  return page.$$eval('#timeline .msg, #timeline .divider:not(.day)', (nodes) =>
    nodes.map((node) => {
      if (node.classList.contains('divider')) return '--';
      const bubble = node.querySelector('.bubble');
      return Array.from(bubble.childNodes)
        .filter((child) => !(child.nodeType === 1 && child.tagName === 'TIME'))
        .map((child) => child.textContent)
        .join('');
    }));
}

// The set-up every test file with browsers shares: one browser for the
// file; for each test a fresh server, started with `serverOptions` (those
// of startServer), so no test sees another's messages; and the pages of its
// people closed after it. Scripts that threw, or an alert() or confirm()
// (what an XSS would do), fail the test that caused them. Call it at the
// top of the file, before any hook of the file's own (hooks run in the
// order they are registered); use the returned `person()` and
// `chat.server` (a new one for each test, so read it inside the test).
export function chatFixture(serverOptions = {}) {
  const chat = { browser: null, server: null, pages: [] };
  before(async () => {
    chat.browser = await launchBrowser();
  });
  after(async () => {
    await chat.browser?.close();
  });
  beforeEach(async () => {
    chat.pages = [];
    chat.server = await startServer(serverOptions);
  });
  afterEach(async () => {
    const problems = chat.pages.flatMap((page) => page.problems);
    await Promise.all(chat.pages.map((page) => page.context().close()));
    await chat.server.stop();
    assert.deepEqual(problems, []);
  });
  // A new person (browser context) whose page is closed after the test;
  // `options` as newPerson's (colorScheme, locale).
  chat.person = async (viewport = DESKTOP, options = {}) => {
    const page = await newPerson(chat.browser, viewport, options);
    chat.pages.push(page);
    return page;
  };
  return chat;
}

// The set-up of a test file whose tests need a host: chatFixture with each
// server started with `hostKey`, and `host()` for the teacher's page.
export function hostedChat(hostKey) {
  const chat = chatFixture({ hostKey });
  // The teacher's page: the host link, then the login form.
  chat.host = async (name = 'Teacher', viewport = DESKTOP) => {
    const page = await chat.person(viewport);
    await logInAsHost(page, chat.server, name);
    return page;
  };
  return chat;
}
