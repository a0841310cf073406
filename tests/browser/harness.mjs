// Shared by the gallery's browser tests: the real imgorigin binary on a free port with a
// fresh data folder, the system Chromium through puppeteer-core, pages that record
// console errors and CSP violations, and waits on conditions (never fixed sleeps).
//
// Environment (scripts/browser-tests.sh sets them):
//   IMGORIGIN_BIN            the built binary (target/debug/imgorigin)
//   IMGORIGIN_BROWSER_DEPS   node_modules with puppeteer-core
//   IMGORIGIN_CHROMIUM       the browser (default /usr/bin/chromium)
//   IMGORIGIN_SCREENSHOTS    folder for screenshots (docs/ to refresh the README's)

import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
export const fixture = (name) => path.join(here, 'fixtures', name);

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests with scripts/test (or scripts/browser-tests.sh)`);
  return v;
}

const require = createRequire(path.join(need('IMGORIGIN_BROWSER_DEPS'), 'noop.js'));
export const puppeteer = require('puppeteer-core');

/** A port nobody listens on now (the server's config must name it: signed URLs carry it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when `predicate(line)` holds for a line of `stream`; rejects on `exit`. */
function waitForLine(child, predicate, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk) => {
      buf += chunk;
      const lines = buf.split('\n');
      buf = lines.pop();
      if (lines.some(predicate)) {
        child.stdout.off('data', onData);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`imgorigin exited (${code}) before ${what}`)));
  });
}

/**
 * A running imgorigin: `extraToml(port, dir)` adds sections to the config.
 * Returns {url, port, dir, config, log, cli(args, input), stop()}.
 */
export async function startServer({ extraToml = () => '', local = true, shares = true, port } = {}) {
  const bin = need('IMGORIGIN_BIN');
  const dir = mkdtempSync(path.join(tmpdir(), 'imgorigin-gallery-'));
  port = port || (await freePort());
  const url = `http://127.0.0.1:${port}`;
  mkdirSync(path.join(dir, 'originals'));
  let toml = `
[server]
listen = "127.0.0.1:${port}"
metrics_listen = "127.0.0.1:0"
# A debug build on a busy machine renders slowly; the journeys wait, they do not time out.
request_timeout_s = 120
[format]
# AVIF encoding in a debug build takes seconds per image on 2 busy cores: fm=auto answers
# WebP here (the AVIF choice itself is covered by the delivery tests).
avif = false
[log]
format = "json"
level = "info"
[storage.fs]
root = ${JSON.stringify(path.join(dir, 'originals'))}
[metadata]
url = ${JSON.stringify(`sqlite://${path.join(dir, 'imgorigin.db')}`)}
`;
  if (local) {
    toml += `
[auth.local]
key_file = ${JSON.stringify(path.join(dir, 'local-key.pem'))}
issuer = "imgorigin-local-test"
`;
  }
  if (shares) {
    // Share links are CloudFront-signed URLs: a test key pair, this server as the "distribution".
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(path.join(dir, 'cf.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(path.join(dir, 'cf-pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    toml += `
[cloudfront]
public_base_urls = ["${url}"]
signing_key_file = ${JSON.stringify(path.join(dir, 'cf.pem'))}
signing_key_pair_id = "KGALLERYTEST"
[[cloudfront.keys]]
id = "KGALLERYTEST"
public_key_file = ${JSON.stringify(path.join(dir, 'cf-pub.pem'))}
`;
  }
  toml += extraToml(port, dir);
  const config = path.join(dir, 'config.toml');
  writeFileSync(config, toml);
  const log = [];
  const child = spawn(bin, ['--config', config, 'serve'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (c) => log.push(...c.split('\n').filter(Boolean)));
  child.stderr.on('data', (c) => log.push(...c.split('\n').filter(Boolean)));
  await waitForLine(child, (l) => l.includes('imgorigin listening'), 'listening');
  const cli = (args, input) => {
    const r = spawnSync(bin, ['--config', config, ...args], { cwd: dir, input, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`imgorigin ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  return {
    url,
    port,
    dir,
    config,
    log,
    cli,
    /** A token for `sub`, minted by the CLI: the test's own view of the API. */
    token: (sub) => cli(['token', '--sub', sub]),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The system Chromium, headless, with a fresh profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(path.join(tmpdir(), 'imgorigin-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.IMGORIGIN_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    rmSync(profile, { recursive: true, force: true });
  };
  return browser;
}

/**
 * What the pages of a test report: `problems` (console errors, uncaught exceptions, CSP
 * violations; must stay empty) and `expected` HTTP failures. Chromium logs every 4xx/5xx
 * answer to a fetch or navigation as a console error ("Failed to load resource"), also
 * those a journey provokes on purpose (a wrong password, a revoked link): the test names
 * each one with `expectFailure` before provoking it, and each must then happen.
 */
export function watcher() {
  return { problems: [], expected: [] };
}

/**
 * The next `status` answer for a URL containing `urlPart` is intended; `optional` when the
 * browser may or may not make that request (a favicon).
 */
export function expectFailure(watch, status, urlPart, { optional = false } = {}) {
  watch.expected.push({ status, urlPart, seen: false, optional });
}

function expectedFailure(watch, text, url) {
  const m = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
  if (!m) return false;
  const e = watch.expected.find((x) => !x.seen && x.status === Number(m[1]) && url.includes(x.urlPart));
  if (e) e.seen = true;
  return Boolean(e);
}

/**
 * A page in a fresh browser context (its own cookies, storage and cache) that reports
 * into `watch`, and records every request ({url, method, authorization}) and response
 * ({url, status, type, vary}).
 */
export async function newPage(browser, watch, { width = 1280, height = 900 } = {}) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width, height });
  // No fade-in: a screenshot shows the final state.
  await page.emulateMediaFeatures([{ name: 'prefers-reduced-motion', value: 'reduce' }]);
  const requests = [];
  const responses = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location()?.url || '';
    if (!expectedFailure(watch, m.text(), url)) watch.problems.push(`console error: ${m.text()} (${url})`);
  });
  page.on('pageerror', (e) => watch.problems.push(`uncaught: ${e.message}`));
  page.on('request', (r) =>
    requests.push({ url: r.url(), method: r.method(), authorization: r.headers().authorization || null }),
  );
  page.on('response', (r) =>
    responses.push({
      url: r.url(),
      status: r.status(),
      type: r.headers()['content-type'] || '',
      vary: r.headers().vary || '',
    }),
  );
  await page.exposeFunction('__cspViolation', (v) => watch.problems.push(`CSP violation: ${v}`));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolation(`${e.violatedDirective} blocked ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  return { page, context, requests, responses };
}

/** Nothing unexpected happened, and every expected failure did. */
export function assertClean(assert, watch) {
  assert.deepEqual(watch.problems, []);
  assert.deepEqual(
    watch.expected.filter((e) => !e.seen && !e.optional),
    [],
    'every failure a journey provoked was seen',
  );
}

/**
 * Waits until `fn(...args)` is truthy in the page, re-checked every 50 ms (a condition,
 * not a fixed sleep; interval polling also runs in a page that is not in front).
 */
export async function until(page, fn, args = [], timeout = 30000) {
  const handle = await page.waitForFunction(fn, { timeout, polling: 50 }, ...args);
  return handle.jsonValue();
}

/** Every tile image decoded: [{alt, w, h, centre: [r,g,b], src}] once all are. */
export async function decodedTiles(page, count) {
  return until(
    page,
    (n) => {
      const imgs = [...document.querySelectorAll('#grid img')];
      if (imgs.length !== n) return null;
      const ready = (i) => i.complete && i.naturalWidth > 0 && i.currentSrc && i.closest('.pic.loaded');
      if (!imgs.every(ready)) return null;
      return imgs.map((i) => {
        const c = document.createElement('canvas');
        c.width = i.naturalWidth;
        c.height = i.naturalHeight;
        const ctx = c.getContext('2d');
        ctx.drawImage(i, 0, 0);
        const px = ctx.getImageData(Math.floor(c.width / 2), Math.floor(c.height / 2), 1, 1).data;
        return { alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, centre: [px[0], px[1], px[2]], src: i.currentSrc };
      });
    },
    [count],
  );
}

/** The detail dialog is open with its picture decoded and shown: its natural size. */
export async function detailShown(page) {
  return until(page, () => {
    const img = document.querySelector('#detail-img');
    const ok = document.querySelector('#detail').open && img.complete && img.naturalWidth > 0;
    return ok && img.closest('.pic.loaded') ? [img.naturalWidth, img.naturalHeight] : null;
  });
}

export function near(rgb, want, tol = 40) {
  return rgb.every((v, i) => Math.abs(v - want[i]) <= tol);
}

/** Saves a PNG screenshot when IMGORIGIN_SCREENSHOTS names a folder. */
export async function screenshot(page, name) {
  const dir = process.env.IMGORIGIN_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, name), type: 'png' });
}

/** `fetch` from the test (not the browser) with an optional bearer token. */
export async function get(url, token) {
  return fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
}
