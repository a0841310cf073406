// The gallery's journeys (SPEC §15) in a real headless Chromium against the real server
// with local accounts: a wrong password, sign-in, uploads with progress, decoded tiles,
// keyboard, detail, edit (tag, level), share and revoke, delete, a guest's view, phone
// width. Every page records console errors and CSP violations; there must be none.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import {
  assertClean,
  decodedTiles,
  detailShown,
  expectFailure,
  fixture,
  get,
  launchBrowser,
  near,
  newPage,
  screenshot,
  startServer,
  until,
  watcher,
} from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
// Centre colours of the fixtures (tests/browser/fixtures/make.py).
const CENTRE = {
  'harbour.jpg': [52, 120, 210],
  'meadow.jpg': [40, 140, 50],
  'poster.png': [214, 48, 49],
};

let server;
let browser;
const watch = watcher();

before(async () => {
  server = await startServer();
  server.cli(['user', 'add', 'alice', '--password-stdin'], `${PASSWORD}\n`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the gallery journeys', { timeout: 240_000 }, async (t) => {
  const { page, requests, responses } = await newPage(browser, watch);
  let sessionToken = null;
  const api = (p) => get(`${server.url}/api/v1${p}`, server.token('alice')).then((r) => r.json());

  await t.test('the page and its headers', async () => {
    const resp = await page.goto(server.url, { waitUntil: 'load' });
    assert.equal(resp.status(), 200);
    const csp = resp.headers()['content-security-policy'];
    assert.match(csp, /script-src 'self';/);
    assert.match(csp, /require-trusted-types-for 'script'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await until(page, () => !document.querySelector('#open-signin').hidden);
  });

  await t.test('a wrong password shows an error and gives no token', async () => {
    await page.click('#open-signin');
    await page.type('#signin-name', 'alice');
    await page.type('#signin-password', 'not the password');
    expectFailure(watch, 401, '/api/v1/session');
    await page.click('#signin-submit');
    const msg = await until(page, () => document.querySelector('#signin-error').textContent);
    assert.equal(msg, 'wrong name or password');
    assert.equal(await page.evaluate(() => document.body.dataset.signedIn), 'false');
    const sessions = responses.filter((r) => r.url.endsWith('/api/v1/session'));
    assert.deepEqual(sessions.map((r) => r.status), [401]);
    const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
    assert.deepEqual(stored, [0, 0, '']);
    assert.ok(requests.every((r) => r.authorization === null), 'no request carried a token');
  });

  await t.test('sign in', async () => {
    await page.click('#signin-password', { clickCount: 3 });
    await page.type('#signin-password', PASSWORD);
    const answer = page.waitForResponse((r) => r.url().endsWith('/api/v1/session') && r.status() === 200);
    await page.click('#signin-submit');
    sessionToken = (await (await answer).json()).token;
    await until(page, () => document.body.dataset.signedIn === 'true' && !document.querySelector('#upload').hidden);
    assert.match(sessionToken, /^ey[\w-]+\.[\w-]+\.[\w-]+$/, 'POST /api/v1/session answered a token');
    assert.equal(await page.$eval('#who-name', (e) => e.textContent), 'alice');
    assert.equal(await page.evaluate(() => document.querySelector('#signin-password').value), '');
  });

  let tiles;
  await t.test('upload two JPEGs and a PNG: progress, then three decoded tiles', async () => {
    const input = await page.$('#file-input');
    await input.uploadFile(fixture('harbour.jpg'), fixture('meadow.jpg'), fixture('poster.png'));
    const rows = await until(page, () => {
      const r = [...document.querySelectorAll('#uploads li')];
      return r.length === 3 && r.every((li) => li.dataset.state === 'done')
        ? r.map((li) => ({
            name: li.dataset.name,
            progress: li.dataset.progress,
            bar: li.querySelector('progress').value,
            status: li.querySelector('.upload-status').textContent,
          }))
        : null;
    });
    for (const r of rows) {
      // data-progress is written only by XMLHttpRequest upload progress events.
      assert.equal(r.progress, '100', `${r.name}: upload progress events`);
      assert.equal(r.bar, 100);
      assert.equal(r.status, 'Uploaded.');
    }
    assert.deepEqual(rows.map((r) => r.name).sort(), Object.keys(CENTRE).sort());
    tiles = await decodedTiles(page, 3);
    for (const tile of tiles) {
      assert.ok(tile.src.startsWith('blob:'), `${tile.alt}: private images come through blob: URLs`);
      assert.ok(near(tile.centre, CENTRE[tile.alt]), `${tile.alt}: centre ${tile.centre} ≈ ${CENTRE[tile.alt]}`);
      assert.ok(tile.w > 0 && tile.w <= 1200, `${tile.alt}: ${tile.w} px wide`);
    }
    // Private pixels came with the token in a header, in a format negotiated from the
    // Accept header the page sends (fm=auto; WebP here, AVIF being off in this config).
    const fetched = requests.filter((r) => r.url.includes('fm=auto'));
    assert.equal(fetched.length, 3);
    assert.ok(fetched.every((r) => r.authorization === `Bearer ${sessionToken}`));
    const answers = responses.filter((r) => r.url.includes('fm=auto'));
    assert.ok(answers.every((r) => r.status === 200 && r.type === 'image/webp' && /accept/i.test(r.vary)), JSON.stringify(answers));
    assert.ok(requests.every((r) => !r.url.includes(sessionToken)), 'the token is never in a URL');
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }) + document.cookie);
    assert.ok(!stored.includes(sessionToken), 'nor in storage or cookies');
    await screenshot(page, 'gallery-1280.png');
  });

  await t.test('a file that is not an image: the API says why', async () => {
    const input = await page.$('#file-input');
    expectFailure(watch, 415, '/api/v1/images?level=');
    await input.uploadFile(fixture('notes.txt'));
    const status = await until(page, () => {
      const li = document.querySelector('#uploads li[data-name="notes.txt"]');
      return li && li.dataset.state === 'failed' ? li.querySelector('.upload-status').textContent : null;
    });
    // The row shows the API's own problem+json detail for the same file.
    const direct = await fetch(`${server.url}/api/v1/images?level=private`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${server.token('alice')}`, 'Content-Type': 'image/jpeg' },
      body: await readFile(fixture('notes.txt')),
    });
    assert.equal(direct.status, 415);
    assert.equal(status, (await direct.json()).detail);
    assert.equal(await page.$$eval('#grid li', (l) => l.length), 3);
  });

  await t.test('keyboard: arrows move between tiles, Enter opens, Escape closes', async () => {
    await page.focus('#grid button.tile');
    const first = await page.evaluate(() => document.activeElement.dataset.id);
    await page.keyboard.press('ArrowRight');
    const second = await page.evaluate(() => document.activeElement.dataset.id);
    assert.notEqual(first, second);
    await page.keyboard.press('Enter');
    await until(page, () => document.querySelector('#detail').open);
    await page.keyboard.press('Escape');
    await until(page, (id) => !document.querySelector('#detail').open && document.activeElement.dataset.id === id, [second]);
  });

  const byAlt = (alt) => `#grid img[alt="${alt}"]`;
  let harbour;
  await t.test('open one: the picture and its facts', async () => {
    await page.click(byAlt('harbour.jpg'));
    const [w, h] = await detailShown(page);
    // The dialog asks for a width that fits it (ladder step ≤ the source's 1200 px).
    assert.ok(w >= 480 && w <= 1200 && Math.abs(w / h - 1.5) < 0.01, `${w}x${h}`);
    assert.equal(await page.$eval('#detail-title', (e) => e.textContent), 'harbour.jpg');
    const facts = await page.$eval('#facts', (e) => e.textContent);
    assert.match(facts, /1200 × 800 px/);
    harbour = (await api('/images?owner=me')).items.find((r) => r.filename === 'harbour.jpg');
    assert.ok(harbour);
    // GPS is shown when the record carries it (to the owner only, SPEC §10).
    if (harbour.gps) assert.match(facts, /Location/);
    else assert.doesNotMatch(facts, /Location/);
  });

  await t.test('add a tag', async () => {
    await page.click('#edit-tags', { clickCount: 3 });
    await page.type('#edit-tags', 'beach, Harbour');
    await page.click('#edit-form button[type=submit]');
    await until(page, () => document.querySelector('#edit-status').textContent === 'Saved.');
    const rec = await api(`/images/${harbour.id}`);
    assert.deepEqual(rec.tags, ['beach', 'harbour']);
    assert.match(await page.$eval('#facts', (e) => e.textContent), /beach, harbour/);
  });

  await t.test('make it public: the original moves, the tile uses srcset', async () => {
    await page.select('#edit-level', 'public');
    await page.click('#edit-form button[type=submit]');
    await until(page, () => document.querySelector('#edit-status').textContent === 'Saved.');
    const rec = await api(`/images/${harbour.id}`);
    assert.equal(rec.level, 'public');
    assert.match(rec.key, /^public\//);
    assert.equal((await get(`${server.url}/${harbour.key}`, server.token('alice'))).status, 404, 'old key gone');
    const guest = await get(`${server.url}/${rec.key}?w=200`);
    assert.equal(guest.status, 200);
    harbour = rec;
    const tile = await until(
      page,
      (sel) => {
        const i = document.querySelector(sel);
        return i && i.complete && i.naturalWidth > 0 && i.srcset ? { src: i.currentSrc, srcset: i.srcset, sizes: i.sizes } : null;
      },
      [byAlt('harbour.jpg')],
    );
    assert.match(tile.srcset, /fm=auto \d+w/);
    assert.ok(tile.src.startsWith(`${server.url}/public/`), tile.src);
  });

  let shareUrl;
  await t.test('share for one hour: a guest opens the link', async () => {
    await page.select('#share-expiry', '3600');
    await page.click('#share-form button[type=submit]');
    shareUrl = await until(page, () => {
      const i = document.querySelector('#share-list li.active input.share-url');
      return i ? i.value : null;
    });
    assert.match(shareUrl, /[?&]share=[a-z0-9]+/);
    assert.match(shareUrl, /Expires=\d+/);
    const { page: guest, context } = await newPage(browser, watch);
    // A page that is an image asks for /favicon.ico, not a key a guest may read.
    expectFailure(watch, 403, '/favicon.ico', { optional: true });
    const resp = await guest.goto(shareUrl);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-type'], /^image\//);
    const w = await until(guest, () => document.images[0]?.complete && document.images[0].naturalWidth);
    assert.equal(w, 1200);
    await context.close();
    await page.bringToFront();
  });

  await t.test('revoke: the same link gets 403', async () => {
    await page.click('#share-list li.active button.danger');
    await until(page, () => document.querySelector('#share-list li')?.dataset.state === 'revoked');
    const { page: guest, context } = await newPage(browser, watch);
    expectFailure(watch, 403, '?share=');
    expectFailure(watch, 403, '/favicon.ico', { optional: true });
    const resp = await guest.goto(shareUrl);
    assert.equal(resp.status(), 403);
    await context.close();
    await page.bringToFront();
    await page.keyboard.press('Escape');
  });

  await t.test('delete with confirmation: gone from the grid, 404 for its URL', async () => {
    const meadow = (await api('/images?owner=me')).items.find((r) => r.filename === 'meadow.jpg');
    await page.click(byAlt('meadow.jpg'));
    await until(page, () => document.querySelector('#detail').open && !document.querySelector('#delete-zone').hidden);
    await page.click('#delete');
    await until(page, () => document.querySelector('#confirm').open);
    await page.click('#confirm-ok');
    await until(page, (sel) => !document.querySelector(sel) && !document.querySelector('#detail').open, [byAlt('meadow.jpg')]);
    assert.equal(await page.$$eval('#grid li', (l) => l.length), 2);
    assert.equal((await get(`${server.url}/${meadow.key}`, server.token('alice'))).status, 404);
    assert.equal((await get(`${server.url}/api/v1/images/${meadow.id}`, server.token('alice'))).status, 404);
  });

  await t.test('phone width: one column of controls, no sideways scrolling', async () => {
    await page.setViewport({ width: 360, height: 760, deviceScaleFactor: 2 });
    await page.click('#uploads-clear');
    assert.equal(await page.$$eval('#uploads li', (l) => l.length), 0);
    await decodedTiles(page, 2);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `scrolls sideways by ${overflow}px`);
    await screenshot(page, 'gallery-360.png');
    await page.click(byAlt('harbour.jpg'));
    await detailShown(page);
    await screenshot(page, 'gallery-360-detail.png');
    await page.keyboard.press('Escape');
    await page.setViewport({ width: 1280, height: 900 });
  });

  await t.test('a guest sees the public photos only', async () => {
    const { page: guest, context } = await newPage(browser, watch);
    await guest.goto(server.url);
    const seen = await decodedTiles(guest, 1);
    assert.equal(seen[0].alt, 'harbour.jpg');
    assert.ok(near(seen[0].centre, CENTRE['harbour.jpg']));
    const listed = await (await get(`${server.url}/api/v1/images`)).json();
    assert.deepEqual(listed.items.map((r) => r.id), [harbour.id], 'the guest list is the public set');
    assert.equal(await guest.evaluate(() => document.querySelector('#upload').hidden), true);
    await guest.click(byAlt('harbour.jpg'));
    await detailShown(guest);
    assert.equal(await guest.evaluate(() => document.querySelector('#edit-form').hidden), true);
    assert.doesNotMatch(await guest.$eval('#facts', (e) => e.textContent), /Location/);
    await context.close();
    await page.bringToFront();
  });

  await t.test('placeholders from the facts: BlurHash on a canvas, dominant colour behind', async () => {
    // The classic example hash; its DC term (characters 2..6, base 83) is the mean colour.
    const hash = 'LEHV6nWB2yk8pyo0adR*.7kCMdnj';
    const digits = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~';
    const dc = [...hash.slice(2, 6)].reduce((v, c) => v * 83 + digits.indexOf(c), 0);
    const mean = [dc >> 16, (dc >> 8) & 255, dc & 255];
    const got = await page.evaluate(async (h) => {
      const m = await import('/_gallery/js/images.js');
      const box = document.createElement('span');
      m.placeholder(box, { blurhash: h, dominant_color: '#336699', width: 300, height: 200 });
      const c = box.querySelector('canvas.ph');
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const sum = [0, 0, 0];
      for (let i = 0; i < px.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += px[i + k];
      const n = px.length / 4;
      return { w: c.width, h: c.height, mean: sum.map((v) => Math.round(v / n)), bg: box.style.backgroundColor };
    }, hash);
    assert.deepEqual([got.w, got.h], [32, 21], 'the aspect ratio of the record');
    assert.ok(near(got.mean, mean, 12), `mean ${got.mean} ≈ DC ${mean}`);
    assert.equal(got.bg, 'rgb(51, 102, 153)');
  });

  await t.test('more on scroll: the next page by the API cursor', async () => {
    const token = server.token('alice');
    const bytes = await readFile(fixture('poster.png'));
    for (let i = 0; i < 32; i++) {
      const r = await fetch(`${server.url}/api/v1/images?level=public&filename=tile-${i}.png`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'image/png' },
        body: bytes,
      });
      assert.equal(r.status, 201);
    }
    const { page: guest, context, requests: seen } = await newPage(browser, watch);
    await guest.goto(server.url);
    const lists = () => seen.filter((r) => r.url.includes('/api/v1/images?'));
    // 33 public photos: a first page of 30; the end of the list is far below the fold.
    await until(guest, () => document.querySelectorAll('#grid li').length === 30);
    assert.equal(lists().length, 1);
    assert.ok(!lists()[0].url.includes('cursor='));
    await guest.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await until(guest, () => document.querySelectorAll('#grid li').length === 33);
    assert.equal(lists().length, 2);
    assert.match(lists()[1].url, /[?&]cursor=[\w-]+/);
    await context.close();
    await page.bringToFront();
  });

  await t.test('1280 px with the detail open', async () => {
    await page.click(byAlt('poster.png'));
    await detailShown(page);
    await screenshot(page, 'gallery-1280-detail.png');
    await page.keyboard.press('Escape');
  });

  await t.test('no console errors, no CSP violations', () => {
    assertClean(assert, watch);
    const reports = server.log.filter((l) => l.includes('content security policy violation'));
    assert.deepEqual(reports, []);
  });
});
