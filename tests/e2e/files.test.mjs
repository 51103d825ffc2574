// Files and photos in the page (www/files.js): a pasted screenshot is
// downscaled, uploaded and shown as a picture to someone else; a file over
// the server's limit is refused with a clear sentence; an uploaded HTML page
// is a download, never opened in the chat. Each test starts its own server
// (in-memory store, the default --max-upload of 10 MiB).
//
// A file of its own: node's --test-timeout (run.sh) also bounds each file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  WAIT_MS, chatFixture, logIn, messageWithText, say, screenshot, openConversation,
} from './helpers.mjs';

const chat = chatFixture();
const { person } = chat;

const attachment = (page) => page.locator('#attachment');

// Waits until the attachment above the box is uploaded.
async function waitAttached(page) {
  await page.locator('#attachment[data-state="ready"]').waitFor();
}

// Pastes a PNG screenshot (width x height, drawn in the page) into the
// message box, the way the browser does with a clipboard holding an image:
// a paste event whose clipboardData holds a File and no text.
function pasteScreenshot(page, width, height) {
  return page.evaluate(async ([w, h]) => {
    const canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = h;
    const g = canvas.getContext('2d');
    g.fillStyle = '#fdfcf7';
    g.fillRect(0, 0, w, h);
    g.fillStyle = '#4f46e5';
    g.fillRect(0, 0, w, h * 0.16);
    g.fillStyle = '#ffffff';
    g.font = `bold ${Math.round(h * 0.08)}px sans-serif`;
    g.fillText('Worksheet 12: fractions', w * 0.05, h * 0.11);
    g.fillStyle = '#1b1e25';
    g.font = `${Math.round(h * 0.055)}px sans-serif`;
    ['1.  3/4 + 1/8 =', '2.  2/3 of 27 =', '3.  Which is larger: 5/8 or 3/5?'].forEach((line, i) => {
      g.fillText(line, w * 0.06, h * (0.32 + i * 0.16));
    });
    g.strokeStyle = '#b7a3f3';
    g.lineWidth = h * 0.01;
    g.beginPath();
    g.arc(w * 0.8, h * 0.6, h * 0.2, 0, Math.PI * 1.5);
    g.stroke();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
    const data = new DataTransfer();
    data.items.add(new File([blob], 'image.png', { type: 'image/png' }));
    const box = document.getElementById('composer-input');
    box.focus();
    const event = new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true });
    box.dispatchEvent(event);
    return event.defaultPrevented;
  }, [width, height]);
}

test('a pasted screenshot is downscaled to a JPEG and shows as a picture to someone else', async () => {
  const alice = await person();
  const bob = await person();
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');
  await say(alice, 'Here is the worksheet for today');

  assert.equal(await pasteScreenshot(alice, 2400, 1500), true, 'the page took the paste');
  await waitAttached(alice);
  assert.match(await attachment(alice).textContent(), /image\.jpg/);
  await alice.fill('#composer-input', 'Questions 1 to 3, please');
  await alice.press('#composer-input', 'Enter');
  await attachment(alice).waitFor({ state: 'hidden' });

  // Bob sees it as a picture that loaded, with its text; 2400 x 1500 came
  // down to 1600 x 1000.
  const message = await messageWithText(bob, 'Questions 1 to 3, please');
  const image = message.locator('img.file-image');
  await image.waitFor();
  await bob.waitForFunction(() => {
    const img = document.querySelector('.msg img.file-image');
    return img !== null && img.complete && img.naturalWidth > 0;
  }, null, { timeout: WAIT_MS });
  const size = await image.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  assert.deepEqual(size, [1600, 1000]);
  assert.equal(await image.getAttribute('loading'), 'lazy');
  assert.equal(await image.getAttribute('alt'), 'image.jpg');

  // It links to the full picture, opened in a new tab; the server has it as
  // a JPEG, served inline.
  const link = message.locator('a.file-image-link');
  assert.equal(await link.getAttribute('target'), '_blank');
  const href = await link.getAttribute('href');
  assert.match(href, /^\/files\/[^/]+\/image(\.|%2E)jpg$/);
  const response = await bob.context().request.get(`${chat.server.url}${href}`);
  assert.equal(response.status(), 200);
  assert.equal(response.headers()['content-type'], 'image/jpeg');
  assert.equal(response.headers()['content-disposition'], undefined);

  // Any other file: its name, size and a download link.
  const [chooser] = await Promise.all([alice.waitForEvent('filechooser'), alice.click('#attach')]);
  await chooser.setFiles({ name: 'fractions-help.pdf', mimeType: 'application/pdf', buffer: Buffer.alloc(150 * 1024, 1) });
  await waitAttached(alice);
  await alice.press('#composer-input', 'Enter');
  const card = bob.locator('.msg a.file-card');
  await card.waitFor();
  assert.equal((await card.locator('.file-name').textContent()), 'fractions-help.pdf');
  assert.match(await card.locator('.file-size').textContent(), /^150 KB/);
  await say(bob, 'Thanks!');
  await messageWithText(bob, 'Thanks!');
  await screenshot(bob, 'files');
});

test('a 20 MiB file is refused with a clear sentence, and nothing is sent', async () => {
  const alice = await person();
  const bob = await person();
  await logIn(alice, chat.server, 'alice');
  await logIn(bob, chat.server, 'bob');

  // From a file on disk: quicker than 20 MiB through the browser protocol.
  const dir = mkdtempSync(join(tmpdir(), 'lanchat-e2e-'));
  try {
    const big = join(dir, 'lecture-recording.bin');
    writeFileSync(big, Buffer.alloc(20 * 1024 * 1024, 7));
    const [chooser] = await Promise.all([alice.waitForEvent('filechooser'), alice.click('#attach')]);
    await chooser.setFiles(big);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const error = alice.locator('#composer-error');
  await alice.waitForFunction(
    () => document.getElementById('composer-error').textContent.includes('too big for this chat'),
    null,
    { timeout: WAIT_MS },
  );
  // With the limit when the server's 413 reached the page ("the file is
  // larger than 10 MiB"); the server may also cut the connection first.
  assert.match(await error.textContent(),
    /^That file is too big for this chat \(the limit is set by the server\)\.( Here it is 10 MB\.)?$/);
  await attachment(alice).waitFor({ state: 'hidden' });

  // Enter with the empty box sends nothing; a text afterwards goes alone.
  await alice.press('#composer-input', 'Enter');
  await say(alice, 'never mind, I will bring it on a stick');
  await messageWithText(bob, 'never mind, I will bring it on a stick');
  assert.equal(await bob.locator('.msg .file-card, .msg .file-image').count(), 0);
  assert.equal(await bob.locator('.msg').count(), 1);
});

test('an uploaded .html file, dropped into a private chat, downloads and does not open', async () => {
  const alice = await person();
  const bob = await person();
  await logIn(bob, chat.server, 'bob');
  await logIn(alice, chat.server, 'alice');
  await alice.click('#user-list button:has-text("bob")');

  // Dropped onto the page: the drop zone shows while dragging.
  const page = '<!doctype html><title>gotcha</title><script>alert(document.cookie)</script><p>hello</p>';
  await alice.evaluate((html) => {
    const data = new DataTransfer();
    data.items.add(new File([html], 'notes.html', { type: 'text/html' }));
    const target = document.getElementById('timeline');
    target.dispatchEvent(new DragEvent('dragenter', { dataTransfer: data, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
    window.lanchatDropData = data;
  }, page);
  await alice.locator('.drop-zone').waitFor({ state: 'visible' });
  assert.match(await alice.locator('.drop-zone').textContent(), /privately to bob/);
  await alice.evaluate(() => {
    document.getElementById('timeline').dispatchEvent(
      new DragEvent('drop', { dataTransfer: window.lanchatDropData, bubbles: true, cancelable: true }),
    );
  });
  await alice.locator('.drop-zone').waitFor({ state: 'hidden' });
  await waitAttached(alice);
  await alice.press('#composer-input', 'Enter'); // a file needs no text

  // Bob gets it privately, as a name, a size and a download link.
  await openConversation(bob, 'alice');
  const card = bob.locator('.msg.private a.file-card');
  await card.waitFor();
  assert.equal(await card.locator('.file-name').textContent(), 'notes.html');
  assert.equal(await card.getAttribute('download'), 'notes.html');
  const href = await card.getAttribute('href');

  // A click downloads it: the chat stays where it is, no tab opens, and
  // the bytes are the page's, untouched.
  const chatUrl = bob.url();
  const [download] = await Promise.all([bob.waitForEvent('download'), card.click()]);
  assert.equal(download.suggestedFilename(), 'notes.html');
  assert.equal(readFileSync(await download.path(), 'utf8'), page);
  assert.equal(bob.url(), chatUrl);
  assert.equal(bob.context().pages().length, 1);

  // The server never serves it as a page, even to a direct visit.
  const response = await bob.context().request.get(`${chat.server.url}${href}`);
  assert.equal(response.headers()['content-type'], 'application/octet-stream');
  assert.match(response.headers()['content-disposition'], /^attachment/);
  assert.equal(response.headers()['content-security-policy'], 'sandbox');
  assert.equal(response.headers()['x-content-type-options'], 'nosniff');
});
