// Switchyard's dashboard: sign-in, hash routing (#/env/dev, #/env/dev/r/2,
// #/env/dev/audit?entity=...&before=ID, #/env/dev/commands), live updates from the UI stream.

import { api, token, ApiError, enc } from './api.js';
import { fill, h } from './dom.js';
import { follow } from './live.js';
import * as views from './views.js';

const $ = (id) => document.getElementById(id);
let envs = [];
let current = null; // {key, view}
let unfollow = null;
let followed = null;
let loading = 0;
let pollTimer = null;

function showSignIn(message) {
  token.clear();
  stopLive();
  stopPoll();
  envs = [];
  current = null;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('refresh').hidden = true;
  fill($('live'));
  fill($('view'));
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  document.title = 'Sign in · Switchyard';
  $('token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $('token');
  const value = input.value.trim();
  input.value = '';
  if (!value) return;
  token.set(value);
  $('signin-error').textContent = '';
  if (await loadEnvs()) route();
}

async function loadEnvs() {
  try {
    envs = await api('/v1/envs');
  } catch (e) {
    handle(e);
    return false;
  }
  $('signin').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  const select = $('env');
  fill(select, envs.map((e) => h('option', { value: e.name }, e.name)));
  return true;
}

function handle(e) {
  if (e instanceof ApiError && e.status === 401) {
    showSignIn(e.message);
    return;
  }
  fill($('view'), h('div', { class: 'error', role: 'alert' }, e instanceof ApiError ? `${e.status}: ${e.message}` : String(e)));
}

function parse() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || '') };
}

function viewFor({ parts, params }) {
  if (parts[0] !== 'env' || !parts[1]) return null;
  const env = parts[1];
  if (parts.length === 2) return { env, view: views.overview(env) };
  if (parts[2] === 'r' && /^\d+$/.test(parts[3] || '')) return { env, view: views.revision(env, Number(parts[3])) };
  if (parts[2] === 'audit') return { env, view: views.audit(env, params, envs) };
  if (parts[2] === 'commands') return { env, view: views.commands(env) };
  return { env, view: views.message('Not found', 'No such page.') };
}

async function route() {
  if (!token.get()) return showSignIn('');
  if (envs.length === 0 && $('nav').hidden && !(await loadEnvs())) return;
  const target = viewFor(parse());
  if (!target) {
    if (envs.length === 0) {
      stopLive();
      stopPoll();
      $('refresh').hidden = true;
      current = null;
      render(views.message('No environment', 'This token may read no environment.'), true);
      return;
    }
    location.replace(`#/env/${enc(envs[0].name)}`);
    return;
  }
  const { env, view } = target;
  $('env').value = env;
  $('nav-overview').href = `#/env/${enc(env)}`;
  $('nav-audit').href = `#/env/${enc(env)}/audit`;
  $('nav-commands').href = `#/env/${enc(env)}/commands`;
  const here = location.hash.split('?')[0];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  stopPoll();
  current = { key: location.hash, view };
  startLive(env);
  await render(view, true);
}

/** Loads and renders `view`; `focus` moves focus to its heading (navigation, not refresh). */
async function render(view, focus) {
  const seq = ++loading;
  let data;
  try {
    data = await view.load();
  } catch (e) {
    if (seq === loading) handle(e);
    return;
  }
  if (seq !== loading || (current && current.view !== view && focus === false)) return;
  // A view with `update(data)` (the audit trail: its filter form) refreshes in place, so
  // what is being typed into it is not lost.
  if (!focus && view.update && view.shown && $('view').contains(view.shown)) {
    view.update(data);
    document.body.dataset.rendered = String(seq);
    return;
  }
  const node = view.render(data);
  view.shown = node;
  // Which route the page shows (the hash it was rendered for).
  $('view').dataset.route = current && current.view === view ? current.key : '';
  // A refresh keeps focus on the heading when it was there (the old one is replaced).
  const onHeading = document.activeElement && document.activeElement.tagName === 'H1' && $('view').contains(document.activeElement);
  fill($('view'), node);
  document.title = `${view.title} · Switchyard`;
  document.body.dataset.rendered = String(seq);
  schedulePoll(view);
  if (focus || onHeading) {
    const h1 = node.querySelector('h1');
    if (h1) h1.focus({ preventScroll: true });
  }
}

function refresh() {
  if (current) render(current.view, false);
}

/** A view with `pollInterval()`/`poll()` (the overview: its stats, and its canary while one
 * runs) is polled while shown; `poll()` gives the nodes that replace the elements of the
 * same ids. */
function schedulePoll(view) {
  stopPoll();
  const delay = view.pollInterval ? view.pollInterval() : null;
  if (!delay) return;
  pollTimer = setTimeout(async () => {
    pollTimer = null;
    if (!current || current.view !== view) return;
    try {
      const nodes = [].concat(await view.poll());
      if (current && current.view === view) nodes.forEach(swapIn);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return showSignIn(e.message);
    }
    if (current && current.view === view && !pollTimer) schedulePoll(view);
  }, delay);
}

/** Replaces the element of `node`'s id with `node`, unless it is the same; a table scrolled
 * sideways (a phone) stays scrolled, and focus on an element with an id (the canary's
 * revision links) stays on its replacement. */
function swapIn(node) {
  const old = document.getElementById(node.id);
  if (!old || old.isEqualNode(node)) return;
  const scrolled = [...old.querySelectorAll('.table-wrap')].map((el) => el.scrollLeft);
  const active = document.activeElement;
  const focused = active && active.id && old.contains(active) ? active.id : null;
  old.replaceWith(node);
  node.querySelectorAll('.table-wrap').forEach((el, i) => {
    if (scrolled[i]) el.scrollLeft = scrolled[i];
  });
  const again = focused && document.getElementById(focused);
  if (again) again.focus({ preventScroll: true });
}

function stopPoll() {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
}

function startLive(env) {
  if (followed === env && unfollow) return;
  stopLive();
  followed = env;
  const live = $('live');
  unfollow = follow(env, refresh, (state, detail, status) => {
    $('refresh').hidden = state === 'live';
    const text = {
      connecting: 'Connecting…',
      live: 'Live',
      reconnecting: 'Reconnecting…',
      unavailable: 'Live updates unavailable: use Refresh',
      unauthorized: `Live updates refused: ${detail || ''}`,
    }[state];
    live.dataset.state = state;
    live.textContent = text || state;
    if (state === 'unauthorized' && status === 401) showSignIn(detail);
  });
}

function stopLive() {
  if (unfollow) unfollow();
  unfollow = null;
  followed = null;
}

function start() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => {
    showSignIn('Signed out.');
    history.replaceState(null, '', location.pathname);
  });
  $('refresh').addEventListener('click', refresh);
  $('env').addEventListener('change', (e) => {
    location.hash = `#/env/${enc(e.target.value)}`;
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
