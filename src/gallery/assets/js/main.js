// The gallery page: reads /_gallery/config.json, wires sign-in, upload, grid and detail.
// See docs/gallery.md.

import * as auth from './auth.js';
import { $, say } from './dom.js';
import * as detail from './detail.js';
import * as grid from './grid.js';
import { setWidths } from './images.js';
import * as uploads from './upload.js';

let cfg = {};

function render(session, reason) {
  const signedIn = Boolean(session);
  document.body.dataset.signedIn = String(signedIn);
  $('who').hidden = !signedIn;
  $('who-name').textContent = signedIn ? session.name : '';
  $('open-signin').hidden = signedIn || (!cfg.local && !cfg.cognito);
  $('upload').hidden = !signedIn;
  $('scope').hidden = !signedIn;
  if (signedIn) $('signin').hidden = true;
  if (reason) say($('grid-status'), reason);
}

function showSignIn() {
  const panel = $('signin');
  panel.hidden = false;
  if (cfg.local) $('signin-name').focus();
  else $('signin-cognito').focus();
}

async function onLocalSubmit(e) {
  e.preventDefault();
  const err = $('signin-error');
  const button = $('signin-submit');
  say(err, '');
  button.disabled = true;
  try {
    await auth.signInLocal($('signin-name').value.trim(), $('signin-password').value);
    $('signin-password').value = '';
  } catch (ex) {
    say(err, ex.message, 'error');
    $('signin-password').select();
  } finally {
    button.disabled = false;
  }
}

async function boot() {
  try {
    const resp = await fetch('/_gallery/config.json', { cache: 'no-store', credentials: 'omit' });
    cfg = await resp.json();
  } catch {
    say($('grid-status'), 'The server cannot be reached.', 'error');
    return;
  }
  setWidths(cfg.widths);
  $('signin-form').hidden = !cfg.local;
  $('signin-cognito').hidden = !cfg.cognito;
  $('signin-or').hidden = !(cfg.local && cfg.cognito);
  $('signin-form').addEventListener('submit', onLocalSubmit);
  $('signin-cognito').addEventListener('click', () =>
    auth.startHostedUi(cfg).catch((e) => say($('signin-error'), e.message, 'error')),
  );
  $('open-signin').addEventListener('click', showSignIn);
  $('signout').addEventListener('click', () => auth.signOut(cfg));
  $('scope').addEventListener('change', (e) => grid.setScope(e.target.value));
  grid.init((id) => detail.open(id));
  detail.init(cfg);
  uploads.init(cfg);
  auth.onChange((session, reason) => {
    render(session, reason);
    if (!session) {
      detail.reset();
      uploads.reset();
      $('scope').value = '';
      grid.setScope('');
    } else {
      grid.setScope($('scope').value);
    }
  });
  render(null);
  try {
    if (await auth.finishHostedUi(cfg)) return; // onChange loaded the grid
  } catch (e) {
    showSignIn();
    say($('signin-error'), e.message, 'error');
  }
  await grid.reload();
}

boot();
