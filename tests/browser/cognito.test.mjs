// Sign-in through a Cognito Hosted UI (SPEC §15): authorization code with PKCE, done by the
// gallery's script in the browser, against a standards OAuth 2.0 server standing in for
// the Hosted UI domain (oauth-standin.mjs). Its ID tokens must pass the server's Cognito
// JWT verification (issuer, JWKS, audience = the gallery's app client).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertClean,
  decodedTiles,
  fixture,
  freePort,
  get,
  launchBrowser,
  newPage,
  startServer,
  until,
  watcher,
} from './harness.mjs';
import { startStandin } from './oauth-standin.mjs';

const CLIENT = 'gallery4client7id';

let server;
let standin;
let browser;
const watch = watcher();

before(async () => {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  standin = await startStandin({ clientId: CLIENT, redirectUri: `${origin}/`, allowedOrigin: origin });
  server = await startServer({
    port,
    local: false,
    shares: false,
    extraToml: () => `
[cognito]
issuer = "${standin.issuer}"
domain = "${standin.issuer}"
gallery_client_id = "${CLIENT}"
`,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await standin?.close();
});

test('sign in with the Hosted UI (code + PKCE), upload, sign out', { timeout: 120_000 }, async (t) => {
  const { page, requests } = await newPage(browser, watch);

  await t.test('the page offers the Hosted UI only', async () => {
    const resp = await page.goto(server.url);
    // The token endpoint is another origin: CSP lets the page talk to it, and only to it.
    assert.match(resp.headers()['content-security-policy'], new RegExp(`connect-src 'self' ${standin.issuer};`));
    await page.click('#open-signin');
    await until(page, () => !document.querySelector('#signin-cognito').hidden);
    assert.equal(await page.evaluate(() => document.querySelector('#signin-form').hidden), true);
  });

  await t.test('a forged redirect back is refused without a token request', async () => {
    await page.goto(`${server.url}/?code=forged&state=forged`);
    const msg = await until(page, () => document.querySelector('#signin-error').textContent);
    assert.match(msg, /does not belong to this browser tab/);
    assert.equal(await page.evaluate(() => location.search), '', 'the code is removed from the address bar');
    assert.ok(!standin.calls.some((c) => c.path === '/oauth2/token'));
  });

  await t.test('sign in', async () => {
    await page.click('#signin-cognito');
    await page.waitForSelector('#username');
    assert.ok(page.url().startsWith(`${standin.issuer}/oauth2/authorize?`));
    const auth = new URL(page.url()).searchParams;
    assert.equal(auth.get('code_challenge_method'), 'S256');
    assert.equal(auth.get('client_id'), CLIENT);
    await page.type('#username', 'carol');
    await Promise.all([page.waitForNavigation(), page.click('#signin')]);
    await until(page, () => document.body.dataset.signedIn === 'true');
    assert.equal(await page.$eval('#who-name', (e) => e.textContent), 'carol@example.com');
    assert.equal(await page.evaluate(() => location.search), '');
    assert.deepEqual(
      standin.calls.filter((c) => c.path === '/oauth2/token'),
      [{ path: '/oauth2/token', ok: true }],
      'one code exchange, with a verifier matching the challenge',
    );
    assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);
  });

  await t.test('upload: the server accepted the Hosted UI token as carol', async () => {
    await page.select('#upload-level', 'protected');
    const input = await page.$('#file-input');
    await input.uploadFile(fixture('poster.png'));
    const [tile] = await decodedTiles(page, 1);
    assert.equal(tile.alt, 'poster.png');
    const bearer = requests.find((r) => r.url.includes('/api/v1/images') && r.method === 'POST').authorization;
    const list = await (await get(`${server.url}/api/v1/images`, bearer.slice(7))).json();
    assert.equal(list.items.length, 1);
    assert.equal(list.items[0].owner, standin.subOf('carol'));
    assert.match(list.items[0].key, new RegExp(`^protected/${standin.subOf('carol')}/`));
    // Guests do not see a protected photo.
    assert.equal((await (await get(`${server.url}/api/v1/images`)).json()).items.length, 0);
  });

  await t.test('sign out ends the Hosted UI session and comes back signed out', async () => {
    await Promise.all([page.waitForNavigation(), page.click('#signout')]);
    await until(page, () => document.body.dataset.signedIn === 'false' && location.href.endsWith('/'));
    assert.ok(standin.calls.some((c) => c.path === '/logout' && c.ok));
    assert.equal(await page.$$eval('#grid li', (l) => l.length), 0);
  });

  await t.test('no console errors, no CSP violations', () => {
    assertClean(assert, watch);
  });
});
