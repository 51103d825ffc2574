/*
 * lanchat files and photos: everything the page does with files, loaded
 * before app.js, which calls it through the one global `Files`.
 *
 *   Attaching   The paperclip button (any file), the camera button (on
 *               touch screens: <input accept="image/*" capture>), a paste
 *               of a screenshot anywhere but another text field, and a
 *               drop anywhere on the page. One file per message: it waits
 *               above the message box (#attachment) while it uploads, with
 *               a progress bar and a ✕ to drop it.
 *   Photos      A JPEG, PNG or WebP is drawn again on a canvas, its longest
 *               side at most PHOTO_MAX_SIDE px, and re-encoded as JPEG: a
 *               phone's 5 MB photo becomes a few hundred KB, and what the
 *               camera wrote in it (location, device) is left behind. GIFs
 *               (they may move) and every other file go as they are.
 *   Upload      POST /files with the bytes as the body (docs/PROTOCOL.md,
 *               "Files"), by XMLHttpRequest for its upload progress. The
 *               server's refusals (413 too big, 403 uploads off, 429 too
 *               many) become a sentence under the box.
 *   Sending     app.js's send() asks Files.readyToSend() for the uploaded
 *               file and puts its id in the message frame (room or
 *               private). Sent while still uploading, the message goes once
 *               the upload is done. Refused by the server, the attachment
 *               comes back to the box, like the text.
 *   Showing     Files.node(file) draws a message's file: an image (by its
 *               type) as a thumbnail linking to the full picture in a new
 *               tab; anything else, or an image that does not load (gone,
 *               or not really an image), as its name and size, a download
 *               link. The name is user-controlled: it only ever goes in
 *               with textContent and attributes. The server serves
 *               non-images as attachments, sandboxed, so an uploaded page
 *               never runs in the chat's origin.
 */
'use strict';

const Files = (() => {
  // Photos are downscaled so that their longest side is at most this.
  const PHOTO_MAX_SIDE = 1600;
  const PHOTO_QUALITY = 0.85;
  // Re-encoded as JPEG before upload (not GIF: it may be animated).
  const PHOTO_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);
  // Shown as a picture in the conversation (the server serves these inline
  // when their bytes say so).
  const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
  // The view follows a picture that loads at the bottom, give or take this.
  const FOLLOW_SLACK_PX = 64;

  const t = I18n.t; // the page's words (i18n.js)
  const TEXT = {
    tooBig: t('files.tooBig'),
    off: t('files.off'),
    tooMany: t('files.tooMany'),
    loggedOut: t('files.loggedOut'),
    slow: t('files.slow'),
    lost: t('files.lost'),
  };
  // An upload that breaks off while the server is up is taken to be over
  // its limit when it is larger than this (see `brokenOff`).
  const LARGE_BYTES = 1024 * 1024;

  // What app.js gives at init: send() (the composer's), showError(text),
  // clearError(), canUpload() (uploads on, or I am a host).
  let app = null;
  // The file waiting in the composer, or null:
  // { name, size, state: 'preparing'|'uploading'|'ready', xhr, ref, preview, sendWhenDone }
  let pending = null;
  // The file of the last message sent, given back if the server refuses it.
  let lastSent = null;
  // The server's upload limit in bytes, once a 413 said it; null: unknown.
  let knownLimit = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* Attaching --------------------------------------------------------- */

  function init(hooks) {
    app = hooks;
    const fileInput = $('file-input');
    const cameraInput = $('camera-input');
    // Uploads off: say so rather than open a picker for nothing.
    const pick = (input) => () => (app.canUpload() ? input.click() : app.showError(TEXT.off));
    $('attach').addEventListener('click', pick(fileInput));
    $('camera').addEventListener('click', pick(cameraInput));
    for (const input of [fileInput, cameraInput]) {
      input.addEventListener('change', () => {
        if (input.files.length > 0) attach(input.files, 'picked');
        input.value = ''; // the same file may be picked again
      });
    }
    document.addEventListener('paste', onPaste);
    setUpDrop();
  }

  // A paste with files and no text (a screenshot, "Copy image") attaches
  // the file; text pastes as usual. Other text fields keep their paste.
  function onPaste(event) {
    const target = event.target;
    const field = target instanceof Element && target.closest('input, textarea, [contenteditable]');
    if (field && field.id !== 'composer-input') return;
    const data = event.clipboardData;
    if (!data || data.files.length === 0 || data.getData('text/plain') !== '') return;
    event.preventDefault();
    attach(data.files, 'pasted');
  }

  // Dragging files over the page shows where they go; a drop anywhere
  // attaches. Without preventDefault the browser would open the file in
  // place of the chat.
  function setUpDrop() {
    const zone = el('div', 'drop-zone');
    zone.hidden = true;
    zone.setAttribute('aria-hidden', 'true');
    const label = el('p', 'drop-zone-label');
    zone.append(label);
    document.body.append(zone);
    let depth = 0; // dragenter/dragleave pairs: children fire them too

    const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes('Files');
    const hide = () => {
      depth = 0;
      zone.hidden = true;
    };
    document.addEventListener('dragenter', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth += 1;
      const to = document.getElementById('private-name');
      const privately = !$('private-chip').hidden && to && to.textContent;
      label.textContent = privately ? t('files.dropPrivate', { name: to.textContent }) : t('files.drop');
      zone.hidden = false;
    });
    document.addEventListener('dragover', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
    });
    document.addEventListener('dragleave', (event) => {
      if (!hasFiles(event)) return;
      depth -= 1;
      if (depth <= 0) hide();
    });
    document.addEventListener('drop', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      hide();
      if (event.dataTransfer.files.length > 0) attach(event.dataTransfer.files, 'dropped');
    });
  }

  // Takes the first of `files` as the message's attachment (replacing one
  // already there) and uploads it.
  async function attach(files, how) {
    if (!app) return;
    const file = files[0];
    if (!app.canUpload()) {
      app.showError(TEXT.off);
      return;
    }
    drop();
    app.clearError();
    const item = {
      name: file.name || 'file',
      size: file.size,
      state: 'preparing',
      xhr: null,
      ref: null,
      preview: null,
      sendWhenDone: false,
      note: files.length > 1 ? t('files.onlyOne', { count: files.length }) : '',
    };
    pending = item;
    let body = file;
    if (PHOTO_TYPES.has(file.type)) {
      render();
      try {
        body = await shrink(file);
        item.name = jpegName(item.name);
        item.size = body.size;
      } catch {
        body = file; // a photo the browser cannot decode goes as it is
      }
      if (pending !== item) return; // dropped or replaced meanwhile
    }
    if (knownLimit !== null && body.size > knownLimit) {
      fail(tooBig());
      return;
    }
    if (IMAGE_TYPES.has(body.type)) item.preview = URL.createObjectURL(body);
    upload(item, body);
  }

  // The photo, its longest side at most PHOTO_MAX_SIDE, as a JPEG. An <img>
  // decodes it upright (browsers apply the EXIF orientation), and the canvas
  // keeps only pixels: no location, no camera data.
  async function shrink(file) {
    const url = URL.createObjectURL(file);
    try {
      const image = new Image();
      image.src = url;
      await image.decode();
      const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(image.naturalWidth, image.naturalHeight));
      const canvas = document.createElement('canvas');
      canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
      const context = canvas.getContext('2d');
      context.fillStyle = '#ffffff'; // JPEG has no transparency: white, not black
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      return await new Promise((resolve, reject) => {
        canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('not encoded'))), 'image/jpeg', PHOTO_QUALITY);
      });
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  // "IMG_0042.HEIC.png" -> "IMG_0042.HEIC.jpg"; "image" -> "image.jpg".
  function jpegName(name) {
    const dot = name.lastIndexOf('.');
    return `${dot > 0 ? name.slice(0, dot) : name}.jpg`;
  }

  /* Upload ------------------------------------------------------------ */

  function upload(item, body) {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    item.state = 'uploading';
    item.progress = 0;
    xhr.open('POST', '/files');
    xhr.setRequestHeader('Content-Type', body.type || 'application/octet-stream');
    xhr.setRequestHeader('X-Filename', encodeURIComponent(item.name));
    xhr.upload.onprogress = (event) => {
      if (pending !== item || !event.lengthComputable) return;
      item.progress = event.loaded / event.total;
      const bar = document.querySelector('#attachment progress');
      if (bar) bar.value = item.progress;
    };
    xhr.onload = () => {
      if (pending !== item) return;
      if (xhr.status === 201) {
        let ref = null;
        try {
          ref = JSON.parse(xhr.responseText);
        } catch {
          // handled below
        }
        if (ref && typeof ref.id === 'string') {
          item.ref = ref;
          item.state = 'ready';
          item.xhr = null;
          render();
          if (item.sendWhenDone) app.send();
          return;
        }
      }
      fail(refusal(xhr.status, xhr.responseText));
    };
    xhr.onerror = async () => {
      if (pending !== item) return;
      const text = await brokenOff(body.size);
      if (pending === item) fail(text);
    };
    render();
    xhr.send(body);
  }

  // What to tell the person about an upload the server answered with
  // `status`, `reason` its text.
  function refusal(status, reason) {
    switch (status) {
      case 413: {
        // "the file is larger than 10 MiB": remembered, so the next file
        // that is too big is refused before it is sent.
        const limit = /(\d+)\s*MiB/.exec(reason || '');
        if (limit) knownLimit = Number(limit[1]) * 1024 * 1024;
        return tooBig();
      }
      case 403: return TEXT.off;
      case 429: return TEXT.tooMany;
      case 401: return TEXT.loggedOut;
      case 408: return TEXT.slow;
      default: {
        const why = (reason || '').trim().slice(0, 200);
        return `${t('files.refused', { status })}${why ? ` ${why}` : ''}`;
      }
    }
  }

  function tooBig() {
    return knownLimit === null ? TEXT.tooBig : `${TEXT.tooBig} ${t('files.limit', { size: humanSize(knownLimit) })}`;
  }

  // The upload broke off without an answer. A server refusing a large body
  // answers 413 at once, but stops reading it soon after and closes the
  // connection, which may destroy its answer before the browser reads it.
  // So: if the server is up and the file is large, it was too big.
  async function brokenOff(size) {
    if (size <= LARGE_BYTES) return TEXT.lost;
    try {
      const response = await fetch('/healthz', { cache: 'no-store' });
      return response.ok ? tooBig() : TEXT.lost;
    } catch {
      return TEXT.lost;
    }
  }

  function fail(text) {
    drop();
    app.showError(text);
  }

  // Forgets the attachment in the composer (stopping its upload).
  function drop() {
    if (!pending) return;
    const item = pending;
    pending = null;
    if (item.xhr) item.xhr.abort();
    if (item.preview) URL.revokeObjectURL(item.preview);
    render();
  }

  // The attachment above the message box: a preview or a file icon, the
  // name, where the upload is, and ✕.
  function render() {
    const box = $('attachment');
    box.replaceChildren();
    box.hidden = pending === null;
    if (pending === null) {
      delete box.dataset.state;
      return;
    }
    const item = pending;
    box.dataset.state = item.state;
    if (item.preview) {
      const preview = el('img', 'attachment-preview');
      preview.src = item.preview;
      preview.alt = '';
      box.append(preview);
    } else {
      box.append(fileIcon());
    }
    const info = el('div', 'attachment-info');
    info.append(el('span', 'attachment-name', item.name));
    let status;
    if (item.state === 'preparing') status = t('files.preparing');
    else if (item.state === 'uploading') status = item.sendWhenDone ? t('files.uploadingSend') : t('files.uploading');
    else status = t('files.ready', { size: humanSize(item.size) });
    const line = el('span', 'attachment-status', status);
    info.append(line);
    if (item.state !== 'ready') {
      const bar = el('progress', 'attachment-progress');
      bar.max = 1;
      if (item.state === 'uploading') bar.value = item.progress || 0;
      bar.setAttribute('aria-label', t('files.uploadingName', { name: item.name }));
      info.append(bar);
    }
    if (item.note) info.append(el('span', 'attachment-note', item.note));
    box.append(info);
    const remove = el('button', 'chip-close attachment-remove', '✕');
    remove.type = 'button';
    remove.setAttribute('aria-label', t('files.remove', { name: item.name }));
    remove.title = t('files.removeTitle');
    remove.addEventListener('click', () => {
      drop();
      $('composer-input').focus();
    });
    box.append(remove);
  }

  /* Sending (called by app.js) ---------------------------------------- */

  // Whether a file waits in the composer (uploaded or not).
  function attached() {
    return pending !== null;
  }

  // For send(): null when no file is attached, the file ({id, ...}) once
  // uploaded, or false while it uploads (send() is then called again when
  // it is done).
  function readyToSend() {
    if (pending === null) return null;
    if (pending.ref) return pending.ref;
    pending.sendWhenDone = true;
    render();
    return false;
  }

  // The message with the attachment went out: the box is empty again.
  function sent() {
    if (!pending) return;
    lastSent = pending.ref;
    if (pending.preview) URL.revokeObjectURL(pending.preview);
    pending = null;
    render();
  }

  // The server refused (`code`) the last message sent, which carried the
  // file `id` (or none): the file comes back to the box, unless it is gone
  // or another one is attached.
  function refused(code, id) {
    const ref = lastSent;
    lastSent = null;
    if (!ref || ref.id !== id || pending !== null || code === 'unknown_file') return;
    pending = { name: ref.name, size: ref.size, state: 'ready', xhr: null, ref, preview: null, sendWhenDone: false, note: '' };
    render();
  }

  /* Showing ----------------------------------------------------------- */

  // The element for a message's `file`, or null for a malformed one.
  function node(file) {
    if (!file || typeof file !== 'object' || typeof file.id !== 'string') return null;
    if (lastSent && lastSent.id === file.id) lastSent = null; // it was accepted
    const name = typeof file.name === 'string' && file.name !== '' ? file.name : 'file';
    // The server's own address for it; never anything else (a
    // "javascript:" href would run in the page).
    const url = typeof file.url === 'string' && file.url.startsWith('/files/')
      ? file.url
      : `/files/${encodeURIComponent(file.id)}`;
    if (!IMAGE_TYPES.has(file.type)) return card(name, file.size, url);

    const link = el('a', 'file-image-link');
    link.href = url;
    link.target = '_blank';
    link.rel = 'noopener';
    link.title = t('files.open', { name });
    const image = el('img', 'file-image');
    image.alt = name;
    image.loading = 'lazy';
    image.decoding = 'async';
    image.addEventListener('load', () => keepFollowing(image));
    // Gone from the server, or not really an image: its name stays.
    image.addEventListener('error', () => link.replaceWith(card(name, file.size, url)));
    image.src = url;
    link.append(image);
    return link;
  }

  // Name, size and a download link. The server sends it as an attachment.
  function card(name, size, url) {
    const link = el('a', 'file-card');
    link.href = url;
    link.download = name;
    link.title = t('files.downloadName', { name });
    link.append(fileIcon());
    const info = el('span', 'file-info');
    info.append(el('span', 'file-name', name));
    const details = Number.isFinite(size) ? `${humanSize(size)} · ${t('files.download')}` : t('files.download');
    info.append(el('span', 'file-size', details));
    link.append(info);
    return link;
  }

  function fileIcon() {
    const icon = el('span', 'file-icon');
    icon.setAttribute('aria-hidden', 'true');
    return icon;
  }

  // A picture that loads grows the timeline: a reader who was at the bottom
  // stays there (its height is what was added below them).
  function keepFollowing(image) {
    const timeline = image.closest('.timeline');
    if (!timeline) return;
    const below = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight;
    if (below - image.offsetHeight < FOLLOW_SLACK_PX) timeline.scrollTop = timeline.scrollHeight;
  }

  // 532 -> "532 bytes", 1536 -> "1.5 KB", 20971520 -> "20 MB".
  function humanSize(bytes) {
    if (!Number.isFinite(bytes) || bytes < 0) return '';
    if (bytes < 1024) return bytes === 1 ? t('files.byte') : t('files.bytes', { n: bytes });
    const units = ['KB', 'MB', 'GB'];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const shown = value < 10 ? value.toFixed(1).replace(/\.0$/, '') : String(Math.round(value));
    return `${shown} ${units[unit]}`;
  }

  return { init, attached, readyToSend, sent, refused, node, humanSize };
})();
