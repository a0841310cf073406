// Pictures of records: delivery URLs, placeholders, and how each <img> gets its pixels.
//
// Public images are plain <img srcset sizes loading=lazy> URLs with fm=auto: the browser
// picks the width and negotiates the format, and the CDN can cache them for everyone.
// Protected and private images need the bearer token, which an <img> request cannot carry
// (and which never goes into a URL or a cookie): those are fetched with
// `Authorization: Bearer` when they come near the viewport, at the one width the tile
// needs for this screen, and shown from a blob: URL that is revoked when the tile goes.

import { decode as decodeBlurhash } from '../vendor/blurhash.js';
import { token } from './auth.js';

/** `/{key}` with each segment percent-encoded. */
export function keyPath(key) {
  return `/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** Display size: after EXIF orientation when the record has it (SPEC §10 facts). */
export function displaySize(rec) {
  const w = rec.display_width || rec.width || 1;
  const h = rec.display_height || rec.height || 1;
  return { w, h, ratio: w / h };
}

/** Alt text from the description or the file name. */
export function altText(rec) {
  return (rec.description && rec.description.trim()) || rec.filename || 'Untitled photo';
}

export function title(rec) {
  return rec.filename || 'Untitled photo';
}

let widths = [160, 320, 640, 960, 1280, 1920];
export function setWidths(list) {
  if (Array.isArray(list) && list.length) widths = [...list].sort((a, b) => a - b);
}

/** The widths worth asking for: the ladder up to the image's own width. */
function ladder(rec) {
  const { w } = displaySize(rec);
  const out = widths.filter((x) => x < w);
  const top = widths.find((x) => x >= w);
  // The source width itself (or the allowed width it rounds up to) ends the ladder.
  out.push(top !== undefined ? top : widths[widths.length - 1]);
  return out;
}

function variant(rec, w) {
  return `${keyPath(rec.key)}?w=${w}&fm=auto`;
}

// --- Formats the browser decodes, for the Accept header of fetched images. ---
const SAMPLES = {
  'image/avif':
    'AAAAIGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZk1BMUEAAADybWV0YQAAAAAAAAAoaGRscgAAAAAAAAAAcGljdAAAAAAAAAAAAAAAAGxpYmF2aWYAAAAADnBpdG0AAAAAAAEAAAAeaWxvYwAAAABEAAABAAEAAAABAAABGgAAABsAAAAoaWluZgAAAAAAAQAAABppbmZlAgAAAAABAABhdjAxQ29sb3IAAAAAamlwcnAAAABLaXBjbwAAABRpc3BlAAAAAAAAAAEAAAABAAAAEHBpeGkAAAAAAwgICAAAAAxhdjFDgSAAAAAAABNjb2xybmNseAABAA0ABoAAAAAXaXBtYQAAAAAAAAABAAEEAQKDBAAAACNtZGF0EgAKBzgABhAQ0GkyDhjADTTTRAAAcoRpbdrW',
  'image/webp': 'UklGRjgAAABXRUJQVlA4ICwAAACwAQCdASoBAAEAAsBMJaACdLoAAAAAAOyPwrFP8W0joUyH/xDnEFtR1iAAAA==',
};

async function decodes(type, b64) {
  try {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type }));
    bmp.close();
    return true;
  } catch {
    return false;
  }
}

let acceptHeader = null;
async function accept() {
  if (acceptHeader === null) {
    const types = [];
    for (const [type, b64] of Object.entries(SAMPLES)) {
      if (await decodes(type, b64)) types.push(type);
    }
    acceptHeader = [...types, 'image/*;q=0.8'].join(',');
  }
  return acceptHeader;
}

// --- Placeholders ---

/** A BlurHash (or the dominant colour) behind `box` until its image has loaded. */
export function placeholder(box, rec) {
  if (rec.dominant_color && /^#[0-9a-f]{6}$/i.test(rec.dominant_color)) {
    box.style.backgroundColor = rec.dominant_color;
  }
  if (typeof rec.blurhash === 'string' && rec.blurhash.length >= 6) {
    try {
      const { ratio } = displaySize(rec);
      const w = ratio >= 1 ? 32 : Math.max(4, Math.round(32 * ratio));
      const h = ratio >= 1 ? Math.max(4, Math.round(32 / ratio)) : 32;
      const pixels = decodeBlurhash(rec.blurhash, w, h);
      const canvas = document.createElement('canvas');
      canvas.width = w;
      canvas.height = h;
      canvas.className = 'ph';
      canvas.setAttribute('aria-hidden', 'true');
      const ctx = canvas.getContext('2d');
      const data = ctx.createImageData(w, h);
      data.data.set(pixels);
      ctx.putImageData(data, 0, 0);
      box.prepend(canvas);
    } catch {
      // A malformed hash only costs the placeholder.
    }
  }
}

// --- Loading ---

const blobUrls = new WeakMap(); // img -> object URL
let observer = null;

function observe(img) {
  if (!observer) {
    observer = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (e.isIntersecting) {
            observer.unobserve(e.target);
            fetchInto(e.target);
          }
        }
      },
      { rootMargin: '400px 0px' },
    );
  }
  observer.observe(img);
}

/** The smallest ladder width covering `cssWidth` on this screen. */
function widthFor(rec, cssWidth) {
  const need = Math.ceil(Math.max(cssWidth, 64) * (window.devicePixelRatio || 1));
  const l = ladder(rec);
  return l.find((x) => x >= need) || l[l.length - 1];
}

async function fetchInto(img) {
  const rec = img._record;
  const t = token();
  if (!rec || !t) return;
  const cssWidth = img.getBoundingClientRect().width || img.parentElement.getBoundingClientRect().width;
  const url = variant(rec, widthFor(rec, cssWidth));
  try {
    const resp = await fetch(url, {
      headers: { Authorization: `Bearer ${t}`, Accept: await accept() },
      credentials: 'omit',
    });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const blob = await resp.blob();
    if (!img.isConnected || img._record !== rec) return;
    const obj = URL.createObjectURL(blob);
    release(img);
    blobUrls.set(img, obj);
    img.src = obj;
  } catch {
    img.dataset.failed = 'true';
    img.closest('.pic')?.classList.add('failed');
  }
}

/** Frees the blob behind `img`, if any. */
export function release(img) {
  const old = blobUrls.get(img);
  if (old) {
    URL.revokeObjectURL(old);
    blobUrls.delete(img);
  }
  if (observer) observer.unobserve(img);
}

/**
 * Points `img` at `rec`'s pixels. `sizes` is the CSS `sizes` of a public image;
 * `eager` loads at once (the detail view) instead of near the viewport.
 */
export function show(img, rec, sizes, eager = false) {
  release(img);
  img._record = rec;
  img.alt = altText(rec);
  const { w, h } = displaySize(rec);
  img.width = w;
  img.height = h;
  img.decoding = 'async';
  img.addEventListener(
    'load',
    () => img.closest('.pic')?.classList.add('loaded'),
    { once: true },
  );
  if (rec.level === 'public') {
    img.loading = eager ? 'eager' : 'lazy';
    img.sizes = sizes;
    img.srcset = ladder(rec)
      .map((x) => `${variant(rec, x)} ${Math.min(x, w)}w`)
      .join(', ');
    img.src = variant(rec, ladder(rec)[0]);
  } else {
    img.removeAttribute('srcset');
    img.removeAttribute('src');
    if (eager) {
      // After layout, so the width is known.
      requestAnimationFrame(() => fetchInto(img));
    } else {
      observe(img);
    }
  }
}
