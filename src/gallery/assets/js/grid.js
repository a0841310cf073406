// The grid: pages of /api/v1/images (newest first, the API's cursor), tiles in justified
// rows whose widths follow each photo's aspect ratio, more pages when the end of the list
// comes near (IntersectionObserver; a "Load more" button does the same by keyboard).
// Arrow keys move between tiles; Enter opens one.

import { api } from './api.js';
import { $, h, clear, say } from './dom.js';
import { displaySize, placeholder, release, show, title } from './images.js';

const PAGE = 30;

const state = {
  records: [], // in grid order
  cursor: null,
  done: false,
  loading: null,
  generation: 0,
  scope: '', // '' (everything the caller may read) or 'me'
  onOpen: () => {},
};

const grid = () => $('grid');

function levelLabel(level) {
  return { public: 'Public', protected: 'Signed-in users', private: 'Only me' }[level] || level;
}

function tile(rec) {
  const { ratio } = displaySize(rec);
  const img = h('img', { alt: '' });
  const pic = h('span', { class: 'pic' }, img);
  placeholder(pic, rec);
  const badge = rec.level === 'public' ? null : h('span', { class: 'badge' }, levelLabel(rec.level));
  const button = h(
    'button',
    { type: 'button', class: 'tile', dataset: { id: rec.id }, title: title(rec) },
    pic,
    badge,
  );
  button.addEventListener('click', () => state.onOpen(rec.id));
  const li = h('li', { dataset: { id: rec.id } }, button);
  // Flex basis and growth proportional to the aspect ratio: rows of equal height.
  li.style.setProperty('--ar', ratio.toFixed(4));
  // About the width a tile gets (--row in app.css, rows stretch a little), for srcset.
  show(img, rec, `(max-width: 720px) min(100vw, ${Math.round(ratio * 160)}px), ${Math.round(ratio * 280)}px`);
  return li;
}

function renderEmpty() {
  $('grid-empty').hidden = state.records.length > 0 || !state.done;
}

async function loadMore() {
  if (state.done) return;
  if (state.loading) return state.loading;
  const gen = state.generation;
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (state.cursor) q.set('cursor', state.cursor);
  if (state.scope) q.set('owner', state.scope);
  const status = $('grid-status');
  say(status, 'Loading…');
  state.loading = api('GET', `/images?${q}`)
    .then((page) => {
      if (gen !== state.generation) return;
      for (const rec of page.items) {
        if (state.records.some((r) => r.id === rec.id)) continue;
        state.records.push(rec);
        grid().append(tile(rec));
      }
      state.cursor = page.next_cursor || null;
      state.done = !state.cursor;
      say(status, '');
      $('more').hidden = state.done;
      renderEmpty();
    })
    .catch((e) => {
      if (gen === state.generation) say(status, `Could not load photos: ${e.message}`, 'error');
    })
    .finally(() => {
      if (gen === state.generation) state.loading = null;
    });
  await state.loading;
  // A tall screen may show the whole page: keep going while the end is visible.
  if (gen === state.generation && !state.done && endVisible()) await loadMore();
}

function endVisible() {
  const r = $('sentinel').getBoundingClientRect();
  return r.top < window.innerHeight + 400;
}

/** Starts over (after sign-in or sign-out, or a scope change). */
export async function reload() {
  state.generation += 1;
  state.loading = null;
  state.records = [];
  state.cursor = null;
  state.done = false;
  for (const img of grid().querySelectorAll('img')) release(img);
  clear(grid());
  $('grid-empty').hidden = true;
  await loadMore();
}

export function setScope(scope) {
  state.scope = scope;
  return reload();
}

export function records() {
  return state.records;
}

export function find(id) {
  return state.records.find((r) => r.id === id) || null;
}

/** A new upload goes first. */
export function prepend(rec) {
  if (find(rec.id)) return;
  state.records.unshift(rec);
  grid().prepend(tile(rec));
  renderEmpty();
}

/** Redraws one tile after an edit. */
export function replace(rec) {
  const i = state.records.findIndex((r) => r.id === rec.id);
  if (i < 0) return;
  state.records[i] = rec;
  const old = grid().querySelector(`li[data-id="${CSS.escape(rec.id)}"]`);
  if (old) {
    for (const img of old.querySelectorAll('img')) release(img);
    old.replaceWith(tile(rec));
  }
}

export function remove(id) {
  state.records = state.records.filter((r) => r.id !== id);
  const li = grid().querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (li) {
    for (const img of li.querySelectorAll('img')) release(img);
    li.remove();
  }
  renderEmpty();
}

export function focusTile(id) {
  grid().querySelector(`button.tile[data-id="${CSS.escape(id)}"]`)?.focus();
}

/** Arrow keys: left/right to the neighbour, up/down to the nearest tile of the next row. */
function onKey(e) {
  const tiles = [...grid().querySelectorAll('button.tile')];
  const i = tiles.indexOf(document.activeElement);
  if (i < 0) return;
  let next = -1;
  if (e.key === 'ArrowRight') next = Math.min(i + 1, tiles.length - 1);
  else if (e.key === 'ArrowLeft') next = Math.max(i - 1, 0);
  else if (e.key === 'Home') next = 0;
  else if (e.key === 'End') next = tiles.length - 1;
  else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    const here = tiles[i].getBoundingClientRect();
    const cx = here.left + here.width / 2;
    const down = e.key === 'ArrowDown';
    let best = null;
    for (const [j, t] of tiles.entries()) {
      const r = t.getBoundingClientRect();
      const rowOk = down ? r.top >= here.bottom - 1 : r.bottom <= here.top + 1;
      if (!rowOk) continue;
      const dy = Math.abs(r.top - here.top);
      const dx = Math.abs(r.left + r.width / 2 - cx);
      if (!best || dy < best.dy - 1 || (Math.abs(dy - best.dy) <= 1 && dx < best.dx)) {
        best = { j, dx, dy };
      }
    }
    if (best) next = best.j;
  } else {
    return;
  }
  e.preventDefault();
  if (next >= 0) {
    tiles[next].focus();
    tiles[next].scrollIntoView({ block: 'nearest' });
    if (next >= tiles.length - 3) loadMore();
  }
}

export function init(onOpen) {
  state.onOpen = onOpen;
  grid().addEventListener('keydown', onKey);
  $('more').addEventListener('click', () => loadMore());
  new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    },
    { rootMargin: '400px 0px' },
  ).observe($('sentinel'));
}
