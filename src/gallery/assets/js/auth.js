// Who is signed in. The token lives in this module's memory only: never in a URL, a
// cookie, localStorage or sessionStorage, so it is gone when the tab is closed or reloaded
// (sign in again; the Hosted UI usually remembers the person and returns at once).
// The Hosted UI sign-in keeps its PKCE verifier and `state` in sessionStorage across the
// redirect: they are single-use and worthless without the authorization code.

let session = null; // {token, name, identity, expiresAt (ms), via: 'local'|'cognito'}
let expiryTimer = 0;
const listeners = new Set();

/** The bearer token, or null for a guest. */
export function token() {
  if (session && Date.now() >= session.expiresAt) expire();
  return session ? session.token : null;
}

/** The current session (without exposing it for writing), or null. */
export function current() {
  return session ? { name: session.name, identity: session.identity, via: session.via } : null;
}

/** Calls `f(session|null, reason)` on every sign-in and sign-out. */
export function onChange(f) {
  listeners.add(f);
}

function set(s, reason = '') {
  session = s;
  clearTimeout(expiryTimer);
  if (s) {
    // setTimeout takes at most ~24.8 days; tokens live hours.
    expiryTimer = setTimeout(expire, Math.min(s.expiresAt - Date.now(), 2 ** 31 - 1));
  }
  for (const f of listeners) f(current(), reason);
}

function expire() {
  if (session) set(null, 'Your session expired: sign in again.');
}

/** The API answered 401 to our token: forget it. */
export function rejected() {
  if (session) set(null, 'Your session ended: sign in again.');
}

/** The claims of a JWT, read without verifying (the server verifies). */
function claims(jwt) {
  const part = jwt.split('.')[1] || '';
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  return JSON.parse(json);
}

/**
 * Local account: POST /api/v1/session. Throws an Error with the server's message (the same
 * for a wrong name and a wrong password).
 */
export async function signInLocal(name, password) {
  const resp = await fetch('/api/v1/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ name, password }),
    credentials: 'omit',
    cache: 'no-store',
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw new Error(body.detail || `sign-in failed (HTTP ${resp.status})`);
  }
  set({
    token: body.token,
    name: body.name,
    identity: body.name,
    expiresAt: Date.parse(body.expires_at),
    via: 'local',
  });
}

export function signOut(cfg) {
  const via = session && session.via;
  set(null, 'Signed out.');
  if (via === 'cognito' && cfg && cfg.cognito) {
    // End the Hosted UI session too, then come back here.
    const u = new URL(cfg.cognito.logout_url);
    u.search = new URLSearchParams({
      client_id: cfg.cognito.client_id,
      logout_uri: redirectUri(),
    }).toString();
    location.assign(u.toString());
  }
}

// --- Cognito Hosted UI: authorization code with PKCE (RFC 7636), all in the browser. ---

const PKCE_KEY = 'imgorigin.pkce';

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function redirectUri() {
  return `${location.origin}/`;
}

/** Leaves for the Hosted UI; `finishHostedUi` completes the sign-in when it sends us back. */
export async function startHostedUi(cfg) {
  const c = cfg.cognito;
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state }));
  const u = new URL(c.authorize_url);
  u.search = new URLSearchParams({
    response_type: 'code',
    client_id: c.client_id,
    redirect_uri: redirectUri(),
    scope: c.scope,
    state,
    code_challenge: b64url(new Uint8Array(digest)),
    code_challenge_method: 'S256',
  }).toString();
  location.assign(u.toString());
}

/**
 * When the page was opened by the Hosted UI's redirect (`?code=…&state=…` or `?error=…`):
 * removes them from the address bar, checks `state`, exchanges the code with the PKCE
 * verifier. Returns false when the page was opened normally; throws on a failed sign-in.
 */
export async function finishHostedUi(cfg) {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return false;
  history.replaceState(null, '', '/');
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || 'null');
  sessionStorage.removeItem(PKCE_KEY);
  if (!cfg.cognito) throw new Error('Sign-in with Cognito is not configured.');
  if (params.has('error')) {
    throw new Error(`Sign-in failed: ${params.get('error_description') || params.get('error')}`);
  }
  if (!saved || saved.state !== params.get('state')) {
    throw new Error('Sign-in failed: the answer does not belong to this browser tab. Try again.');
  }
  const c = cfg.cognito;
  const resp = await fetch(c.token_url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: c.client_id,
      code: params.get('code'),
      redirect_uri: redirectUri(),
      code_verifier: saved.verifier,
    }).toString(),
    credentials: 'omit',
    cache: 'no-store',
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok || !body[c.token]) {
    throw new Error(`Sign-in failed: ${body.error_description || body.error || `HTTP ${resp.status}`}`);
  }
  const jwt = body[c.token];
  const cl = claims(jwt);
  set({
    token: jwt,
    name: cl.email || cl['cognito:username'] || cl.username || cl.sub,
    identity: cl[c.identity_claim] || cl.sub,
    expiresAt: cl.exp * 1000,
    via: 'cognito',
  });
  return true;
}
