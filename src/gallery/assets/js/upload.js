// Uploads: several files at once from the picker or dropped on the page, one after the
// other, each with its own progress bar and outcome. The server is the judge of what is an
// image (its problem+json `detail` is shown as it is); only the size limit is checked here
// first, so a file that is too large is not sent in vain.

import { upload } from './api.js';
import { $, h, formatBytes } from './dom.js';
import * as grid from './grid.js';

let cfg = {};
const queue = [];
let running = false;

function row(file) {
  const progress = h('progress', { max: '100', value: '0', 'aria-label': `Upload of ${file.name}` });
  const status = h('span', { class: 'upload-status' }, 'Waiting…');
  const li = h(
    'li',
    { class: 'upload', dataset: { state: 'waiting', name: file.name } },
    h('span', { class: 'upload-name' }, file.name),
    progress,
    status,
  );
  $('uploads').prepend(li);
  return { li, progress, status };
}

function finish(r, state, text) {
  r.li.dataset.state = state;
  r.status.textContent = text;
  $('uploads-clear').hidden = false;
}

function clearFinished() {
  for (const li of [...$('uploads').children]) {
    if (li.dataset.state === 'done' || li.dataset.state === 'failed') li.remove();
  }
  $('uploads-clear').hidden = true;
  $('file-input').focus();
}

async function runQueue() {
  if (running) return;
  running = true;
  while (queue.length) {
    const { file, level, r } = queue.shift();
    if (cfg.max_upload_bytes && file.size > cfg.max_upload_bytes) {
      finish(
        r,
        'failed',
        `Too large: ${formatBytes(file.size)}; the limit is ${formatBytes(cfg.max_upload_bytes)}.`,
      );
      continue;
    }
    r.li.dataset.state = 'sending';
    r.status.textContent = 'Uploading…';
    try {
      const rec = await upload(file, level, (f) => {
        r.progress.value = Math.round(f * 100);
        r.li.dataset.progress = String(r.progress.value);
        if (f >= 1) r.status.textContent = 'Checking…';
      });
      r.progress.value = 100;
      finish(r, 'done', 'Uploaded.');
      grid.prepend(rec);
    } catch (e) {
      finish(r, 'failed', e.message);
    }
  }
  running = false;
}

function add(files) {
  const level = $('upload-level').value;
  for (const file of files) queue.push({ file, level, r: row(file) });
  runQueue();
}

export function init(config) {
  cfg = config;
  $('uploads-clear').addEventListener('click', clearFinished);
  const input = $('file-input');
  input.addEventListener('change', () => {
    add([...input.files]);
    input.value = '';
  });
  const zone = $('dropzone');
  // Files dropped anywhere on the page while signed in; the zone shows where.
  const signedIn = () => !$('upload').hidden;
  document.addEventListener('dragover', (e) => {
    if (!signedIn() || !e.dataTransfer || ![...e.dataTransfer.types].includes('Files')) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    zone.classList.add('over');
  });
  document.addEventListener('dragleave', (e) => {
    if (e.relatedTarget === null) zone.classList.remove('over');
  });
  document.addEventListener('drop', (e) => {
    zone.classList.remove('over');
    if (!signedIn() || !e.dataTransfer || !e.dataTransfer.files.length) return;
    e.preventDefault();
    add([...e.dataTransfer.files]);
  });
}

/** Clears finished rows (sign-out). */
export function reset() {
  queue.length = 0;
  const list = $('uploads');
  while (list.firstChild) list.firstChild.remove();
  $('uploads-clear').hidden = true;
}
