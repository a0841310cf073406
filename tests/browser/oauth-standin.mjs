// A small standards OAuth 2.0 / OpenID Connect server standing in for a Cognito user
// pool's Hosted UI domain in the browser tests: the authorization code grant with PKCE
// (RFC 6749, RFC 7636; S256 only, as Cognito), RS256 ID and access tokens shaped like
// Cognito's (`token_use`, `aud` / `client_id`, `cognito:username`), its JWKS at
// /.well-known/jwks.json (the issuer is this server's origin), and /logout.
// Written against the RFCs, not against the gallery: a wrong verifier, redirect URI or
// client id is refused as the RFCs say.

import { createHash, createSign, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export async function startStandin({ clientId, redirectUri, allowedOrigin }) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomBytes(8).toString('hex');
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const codes = new Map(); // code -> {clientId, redirectUri, challenge, user, used}
  const users = new Map(); // username -> sub
  const calls = []; // {path, ok, error}
  let issuer = '';

  function sign(claims) {
    const header = b64url(JSON.stringify({ alg: 'RS256', kid, typ: 'JWT' }));
    const payload = b64url(JSON.stringify(claims));
    const s = createSign('RSA-SHA256');
    s.update(`${header}.${payload}`);
    return `${header}.${payload}.${b64url(s.sign(privateKey))}`;
  }

  function sub(username) {
    if (!users.has(username)) users.set(username, randomUUID());
    return users.get(username);
  }

  function send(res, status, body, headers = {}) {
    res.writeHead(status, { 'Cache-Control': 'no-store', ...headers });
    res.end(body);
  }

  function json(res, status, obj) {
    send(res, status, JSON.stringify(obj), {
      'Content-Type': 'application/json',
      // The gallery exchanges the code from the browser (a CORS request).
      'Access-Control-Allow-Origin': allowedOrigin,
    });
  }

  function escape(s) {
    return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  async function body(req) {
    let text = '';
    for await (const chunk of req) text += chunk;
    return new URLSearchParams(text);
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, issuer);
    const q = url.searchParams;
    if (req.method === 'GET' && url.pathname === '/.well-known/jwks.json') {
      return json(res, 200, { keys: [jwk] });
    }
    if (req.method === 'GET' && url.pathname === '/oauth2/authorize') {
      const bad = (why) => {
        calls.push({ path: url.pathname, ok: false, error: why });
        send(res, 400, why, { 'Content-Type': 'text/plain' });
      };
      if (q.get('response_type') !== 'code') return bad('unsupported_response_type');
      if (q.get('client_id') !== clientId) return bad('invalid client_id');
      if (q.get('redirect_uri') !== redirectUri) return bad('redirect_uri not registered');
      if (q.get('code_challenge_method') !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(q.get('code_challenge') || '')) {
        return bad('PKCE S256 required');
      }
      if (!(q.get('scope') || '').split(' ').includes('openid')) return bad('openid scope required');
      calls.push({ path: url.pathname, ok: true });
      // The "Hosted UI": a sign-in form carrying the request on.
      const hidden = ['client_id', 'redirect_uri', 'state', 'code_challenge']
        .map((k) => `<input type="hidden" name="${k}" value="${escape(q.get(k) || '')}">`)
        .join('');
      return send(
        res,
        200,
        `<!doctype html><title>Sign in</title><form method="post" action="/login">${hidden}
<label>Username <input id="username" name="username"></label>
<button id="signin" type="submit">Sign in</button></form>`,
        { 'Content-Type': 'text/html; charset=utf-8' },
      );
    }
    if (req.method === 'POST' && url.pathname === '/login') {
      const f = await body(req);
      const code = randomBytes(16).toString('hex');
      codes.set(code, {
        clientId: f.get('client_id'),
        redirectUri: f.get('redirect_uri'),
        challenge: f.get('code_challenge'),
        user: f.get('username'),
        used: false,
      });
      const back = new URL(f.get('redirect_uri'));
      back.searchParams.set('code', code);
      if (f.get('state')) back.searchParams.set('state', f.get('state'));
      return send(res, 302, '', { Location: back.toString() });
    }
    if (req.method === 'POST' && url.pathname === '/oauth2/token') {
      const f = await body(req);
      const refuse = (error, description) => {
        calls.push({ path: url.pathname, ok: false, error: description });
        json(res, 400, { error, error_description: description });
      };
      if (f.get('grant_type') !== 'authorization_code') return refuse('unsupported_grant_type', 'grant_type');
      const c = codes.get(f.get('code') || '');
      if (!c || c.used) return refuse('invalid_grant', 'unknown or used code');
      c.used = true;
      if (f.get('client_id') !== c.clientId) return refuse('invalid_client', 'client_id differs');
      if (f.get('redirect_uri') !== c.redirectUri) return refuse('invalid_grant', 'redirect_uri differs');
      const verifier = f.get('code_verifier') || '';
      if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)) return refuse('invalid_grant', 'malformed code_verifier');
      if (b64url(createHash('sha256').update(verifier).digest()) !== c.challenge) {
        return refuse('invalid_grant', 'code_verifier does not match the challenge');
      }
      calls.push({ path: url.pathname, ok: true });
      const now = Math.floor(Date.now() / 1000);
      const s = sub(c.user);
      const common = { sub: s, iss: issuer, iat: now, exp: now + 3600, auth_time: now };
      return json(res, 200, {
        id_token: sign({
          ...common,
          aud: c.clientId,
          token_use: 'id',
          'cognito:username': c.user,
          email: `${c.user}@example.com`,
        }),
        access_token: sign({ ...common, client_id: c.clientId, token_use: 'access', scope: 'openid', username: c.user }),
        token_type: 'Bearer',
        expires_in: 3600,
      });
    }
    if (req.method === 'GET' && url.pathname === '/logout') {
      if (q.get('client_id') !== clientId) return send(res, 400, 'invalid client_id');
      calls.push({ path: url.pathname, ok: true });
      return send(res, 302, '', { Location: q.get('logout_uri') || redirectUri });
    }
    if (url.pathname === '/favicon.ico') return send(res, 204, '');
    send(res, 404, 'not found');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${server.address().port}`;
  return {
    issuer,
    calls,
    subOf: (username) => users.get(username),
    close: () => new Promise((r) => server.close(r)),
  };
}
