// One photo in a modal <dialog> (focus stays inside; Escape closes; arrow keys go to the
// previous/next photo): the picture, its facts (GPS only when the API gives it, i.e. to
// the owner), and for the owner: edit, share links, delete.

import { api } from './api.js';
import { current } from './auth.js';
import { $, h, clear, formatBytes, formatDate, say } from './dom.js';
import * as grid from './grid.js';
import { displaySize, placeholder, release, show, title } from './images.js';

let cfg = {};
let rec = null;
let opener = null; // the tile focused again on close

const EXPIRIES = [
  [3600, '1 hour'],
  [86400, '1 day'],
  [7 * 86400, '7 days'],
  [30 * 86400, '30 days'],
];

const LEVELS = [
  ['private', 'Only me'],
  ['protected', 'Signed-in users'],
  ['public', 'Everyone (public)'],
];

function isOwner(r) {
  const s = current();
  return Boolean(s && r.owner && r.owner === s.identity);
}

function fact(dl, name, value) {
  if (value === undefined || value === null || value === '') return;
  dl.append(h('dt', {}, name), h('dd', {}, value));
}

function renderFacts(r) {
  const dl = $('facts');
  clear(dl);
  const { w, h: ht } = displaySize(r);
  fact(dl, 'Size', `${w} × ${ht} px`);
  const type = r.format || (r.content_type || '').replace(/^image\//, '');
  fact(dl, 'Type', type.toUpperCase());
  fact(dl, 'File', formatBytes(r.bytes));
  fact(dl, 'Taken', r.taken_at ? formatDate(r.taken_at) : null);
  if (r.camera && (r.camera.make || r.camera.model)) {
    fact(dl, 'Camera', [r.camera.make, r.camera.model].filter(Boolean).join(' '));
  }
  // The API gives `gps` only to the owner (SPEC §10); others get null.
  if (r.gps && typeof r.gps.lat === 'number' && typeof r.gps.lon === 'number') {
    fact(dl, 'Location', `${r.gps.lat.toFixed(5)}, ${r.gps.lon.toFixed(5)}`);
  }
  if (r.animated) fact(dl, 'Animated', `${r.frames || '?'} frames`);
  fact(dl, 'Uploaded', formatDate(r.created_at));
  fact(dl, 'Owner', r.owner);
  fact(dl, 'Visible to', (LEVELS.find(([v]) => v === r.level) || [null, r.level])[1]);
  fact(dl, 'Tags', r.tags && r.tags.length ? r.tags.join(', ') : null);
  fact(dl, 'Description', r.description);
}

function renderEdit(r) {
  const form = $('edit-form');
  form.hidden = !isOwner(r);
  $('delete-zone').hidden = !isOwner(r);
  if (form.hidden) return;
  $('edit-filename').value = r.filename || '';
  $('edit-description').value = r.description || '';
  $('edit-tags').value = (r.tags || []).join(', ');
  $('edit-level').value = r.level;
  say($('edit-status'), '');
}

async function renderShares(r) {
  const section = $('share');
  section.hidden = !isOwner(r);
  if (section.hidden) return;
  const list = $('share-list');
  clear(list);
  const status = $('share-status');
  if (!cfg.shares) {
    $('share-form').hidden = true;
    say(status, 'Share links are not set up on this server (cloudfront.signing_key_file, docs/gallery.md).');
    return;
  }
  $('share-form').hidden = false;
  say(status, '');
  let page;
  try {
    page = await api('GET', `/images/${encodeURIComponent(r.id)}/shares`);
  } catch (e) {
    say(status, `Could not list the links: ${e.message}`, 'error');
    return;
  }
  if (rec !== r) return;
  const now = Date.now();
  for (const s of page.items) {
    const expired = Date.parse(s.expires_at) <= now;
    const state = s.revoked ? 'revoked' : expired ? 'expired' : 'active';
    const input = h('input', {
      type: 'text',
      readonly: true,
      value: s.url || '',
      'aria-label': 'Share link',
      class: 'share-url',
    });
    const copy = h('button', { type: 'button' }, 'Copy');
    copy.addEventListener('click', () => copyLink(input, status));
    const revoke = h('button', { type: 'button', class: 'danger' }, 'Revoke');
    revoke.addEventListener('click', async () => {
      revoke.disabled = true;
      try {
        await api('DELETE', `/shares/${encodeURIComponent(s.id)}`);
        say(status, 'Link revoked: it no longer opens the photo.');
        await renderShares(r);
      } catch (e) {
        revoke.disabled = false;
        say(status, `Could not revoke: ${e.message}`, 'error');
      }
    });
    const when =
      state === 'active'
        ? `expires ${formatDate(s.expires_at)}`
        : state === 'revoked'
          ? 'revoked'
          : `expired ${formatDate(s.expires_at)}`;
    list.append(
      h(
        'li',
        { class: `share ${state}`, dataset: { id: s.id, state } },
        state === 'active' && s.url ? input : null,
        h('span', { class: 'share-when' }, when),
        state === 'active' && s.url ? copy : null,
        state === 'active' ? revoke : null,
      ),
    );
  }
}

async function copyLink(input, status) {
  try {
    await navigator.clipboard.writeText(input.value);
    say(status, 'Link copied.');
  } catch {
    // No clipboard permission (or an insecure origin): select it for Ctrl+C.
    input.focus();
    input.select();
    say(status, 'Press Ctrl+C (⌘C) to copy the selected link.');
  }
}

function render(r) {
  rec = r;
  $('detail-title').textContent = title(r);
  const pic = $('detail-pic');
  const img = $('detail-img');
  release(img);
  for (const c of [...pic.querySelectorAll('canvas')]) c.remove();
  pic.classList.remove('loaded', 'failed');
  pic.style.backgroundColor = '';
  pic.style.setProperty('--ar', displaySize(r).ratio.toFixed(4));
  placeholder(pic, r);
  show(img, r, '(min-width: 900px) 65vw, 100vw', true);
  const list = grid.records();
  const i = list.findIndex((x) => x.id === r.id);
  $('detail-prev').disabled = i <= 0;
  $('detail-next').disabled = i < 0 || i >= list.length - 1;
  renderFacts(r);
  renderEdit(r);
  renderShares(r);
}

/** Opens the photo with this id (from the grid). */
export async function open(id) {
  const r = grid.find(id);
  if (!r) return;
  opener = id;
  const dialog = $('detail');
  render(r);
  if (!dialog.open) dialog.showModal();
  $('detail-close').focus();
  // The list may be older than the record (another tab edited it): refresh quietly.
  try {
    const fresh = await api('GET', `/images/${encodeURIComponent(id)}`);
    if (rec && rec.id === id && fresh.updated_at !== rec.updated_at) {
      grid.replace(fresh);
      rec = fresh;
      renderFacts(fresh);
      renderEdit(fresh);
    }
  } catch {
    // Shown as listed.
  }
}

function step(delta) {
  if (!rec) return;
  const list = grid.records();
  const i = list.findIndex((x) => x.id === rec.id) + delta;
  if (i >= 0 && i < list.length) {
    opener = list[i].id;
    render(list[i]);
  }
}

function close() {
  const dialog = $('detail');
  if (dialog.open) dialog.close();
}

async function save(e) {
  e.preventDefault();
  const r = rec;
  const status = $('edit-status');
  const tags = $('edit-tags')
    .value.split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const filename = $('edit-filename').value.trim();
  const description = $('edit-description').value.trim();
  const body = {
    filename: filename || null,
    description: description || null,
    tags,
  };
  if ($('edit-level').value !== r.level) body.level = $('edit-level').value;
  say(status, 'Saving…');
  try {
    const updated = await api('PATCH', `/images/${encodeURIComponent(r.id)}`, body);
    grid.replace(updated);
    if (rec && rec.id === updated.id) {
      const moved = updated.key !== r.key;
      rec = updated;
      renderFacts(updated);
      if (moved) render(updated);
    }
    say(status, 'Saved.', 'ok');
  } catch (err) {
    say(status, `Not saved: ${err.message}`, 'error');
  }
}

function confirmDelete() {
  const r = rec;
  const dialog = $('confirm');
  $('confirm-text').textContent = `Delete “${title(r)}”? Its share links stop working. This cannot be undone.`;
  dialog.showModal();
  $('confirm-cancel').focus();
}

async function doDelete() {
  const r = rec;
  $('confirm').close();
  const status = $('edit-status');
  try {
    await api('DELETE', `/images/${encodeURIComponent(r.id)}`);
  } catch (e) {
    say(status, `Not deleted: ${e.message}`, 'error');
    return;
  }
  const list = grid.records();
  const i = list.findIndex((x) => x.id === r.id);
  const neighbour = list[i + 1] || list[i - 1] || null;
  opener = neighbour ? neighbour.id : null;
  grid.remove(r.id);
  close();
  say($('grid-status'), `Deleted “${title(r)}”.`);
}

export function init(config) {
  cfg = config;
  const select = $('share-expiry');
  for (const [secs, label] of EXPIRIES) {
    if (secs <= (cfg.max_share_ttl_s || 604800)) select.append(h('option', { value: secs }, label));
  }
  const level = $('edit-level');
  for (const [v, label] of LEVELS) level.append(h('option', { value: v }, label));
  $('detail-close').addEventListener('click', close);
  $('detail-prev').addEventListener('click', () => step(-1));
  $('detail-next').addEventListener('click', () => step(1));
  $('edit-form').addEventListener('submit', save);
  $('share-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = rec;
    const status = $('share-status');
    say(status, 'Creating a link…');
    try {
      await api('POST', `/images/${encodeURIComponent(r.id)}/shares`, {
        expires_in: Number(select.value),
      });
      say(status, 'Link created.', 'ok');
      await renderShares(r);
    } catch (err) {
      say(status, `No link: ${err.message}`, 'error');
    }
  });
  $('delete').addEventListener('click', confirmDelete);
  $('confirm-cancel').addEventListener('click', () => $('confirm').close());
  $('confirm-ok').addEventListener('click', doDelete);
  const dialog = $('detail');
  dialog.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (e.key === 'ArrowLeft') step(-1);
    else if (e.key === 'ArrowRight') step(1);
  });
  dialog.addEventListener('close', () => {
    release($('detail-img'));
    rec = null;
    if (opener) grid.focusTile(opener);
  });
  // A click on the backdrop (outside the panel) closes.
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) close();
  });
}

/** Closes the view (sign-out). */
export function reset() {
  opener = null;
  close();
}
