// The dashboard (/ui/) in a real browser: playwright-core driving Debian's chromium
// headless. Run by crates/e2e/tests/dashboard.rs (`cargo test -p switchyard-e2e --test
// dashboard -- --ignored`), which starts a Manager and two Workers and passes:
//   MANAGER_URL    http://127.0.0.1:PORT (plain HTTP on loopback)
//   VIEWER_TOKEN   a viewer token scoped to `dev`
//   OTHER_TOKEN    a viewer token scoped to `other` only
//   ADMIN_TOKEN    to apply r2 (the script times apply → visible itself), and to see the
//                  audit trail of every environment
//   MANIFEST_R2    the manifest applied as r2 (r1 is the same proxy with another upstream
//                  target and `x-release: blue`)
//   SWITCHYARD_BIN optional: the `switchyard` binary; r2 is then applied by running
//                  `switchyard apply --env dev FILE` (SWITCHYARD_MANAGER, SWITCHYARD_TOKEN),
//                  otherwise by POST /v1/envs/dev/apply
//   SCREENSHOT_DIR optional: where overview.png, charts.png, revision.png and audit.png are
//                  written (1280×800; revision.png is the whole page)
//   REQUIRE_LIVE   1: fail when the Manager has no /ui/stream (otherwise a missing stream is
//                  reported and the page's Refresh button stands in for it)
//   CANARY_FILE    optional: a manifest file; with it (and SWITCHYARD_BIN) canaryStep runs:
//                  `switchyard apply --env dev CANARY_FILE --canary 50% --step-for 1h`, the
//                  overview's canary section running at 50% (canary.png), then `switchyard
//                  canary abort --env dev` and the section saying aborted
// Steps that need the Rust side print `STEP name` and wait for a `GO` line on stdin.
// Exits non-zero on failure.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { sseParser } from '../../manager/ui/live.js';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('MANAGER_URL');
const VIEWER = env('VIEWER_TOKEN');
const OTHER = env('OTHER_TOKEN');
const ADMIN = env('ADMIN_TOKEN');
const MANIFEST_R2 = env('MANIFEST_R2');
const SHOTS = process.env.SCREENSHOT_DIR;
const CLI = process.env.SWITCHYARD_BIN;
// The two Workers' ids: the first keeps running, the second is the one stopped.
const A = process.env.WORKER_A || A;
const B = process.env.WORKER_B || B;
// The Manager's own CA (HTTPS, as `switchyard up` serves): Node trusts it through
// NODE_EXTRA_CA_CERTS, the browser is told to accept the certificate.
const HTTPS = BASE.startsWith('https:');
const esc = (t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 20000;

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function step(name) {
  console.log(`STEP ${name}`);
  const { value, done } = await lines.next();
  assert.ok(!done && value.trim() === 'GO', `expected GO after STEP ${name}, got ${value}`);
}
const log = (...a) => console.log('#', ...a);
// Never print a token: what a child process or the page says is printed without them.
const redact = (text) => [VIEWER, OTHER, ADMIN].reduce((t, tok) => t.split(tok).join('<token>'), String(text));

/** Applies r2 as the CLI would; resolves when the apply has returned (the CLI exited). */
async function applyR2() {
  if (!CLI) {
    const applied = await fetch(`${BASE}/v1/envs/dev/apply`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ manifests: [MANIFEST_R2] }),
    });
    const body = await applied.text();
    assert.equal(applied.status, 200, redact(body));
    return 'POST /v1/envs/dev/apply';
  }
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-dashboard-'));
  try {
    const file = join(dir, 'payments.yaml');
    await writeFile(file, MANIFEST_R2, { mode: 0o600 });
    await switchyard(['apply', '--env', 'dev', file]);
    return 'switchyard apply (CLI)';
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `switchyard ARGS…` (SWITCHYARD_BIN) against the Manager with the admin token;
 * resolves with its output (tokens redacted) once it exited 0, fails otherwise. */
async function switchyard(args) {
  const childEnv = { ...process.env, SWITCHYARD_MANAGER: BASE, SWITCHYARD_TOKEN: ADMIN };
  delete childEnv.SWITCHYARD_TOKEN_FILE;
  const out = [];
  const code = await new Promise((resolve, reject) => {
    const child = spawn(CLI, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => out.push(d));
    child.on('error', reject);
    child.on('exit', (c, signal) => resolve(c === null ? signal : c));
  });
  const text = redact(Buffer.concat(out).toString());
  assert.equal(code, 0, `switchyard ${args.filter((a) => !a.includes('/')).join(' ')}: ${text}`);
  return text;
}

// The dashboard's SSE parser, fed the stream in awkward chunks.
{
  const events = [];
  const feed = sseParser((e) => events.push(e));
  for (const chunk of [': heartbeat\n\nevent: chan', 'ged\r\ndata: {"env":"dev",', '"version":1}\r\n\r', '\n: heartbeat\n\n',
    'event: changed\ndata:{"env":"dev","version":2}\n\ndata: a\ndata: b\n\n']) feed(chunk);
  assert.deepEqual(events, [
    { event: 'changed', data: '{"env":"dev","version":1}', id: '' },
    { event: 'changed', data: '{"env":"dev","version":2}', id: '' },
    { event: 'message', data: 'a\nb', id: '' },
  ]);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let failed = false;
try {
  await run();
  console.log('PASS');
} catch (e) {
  failed = true;
  console.error('FAIL', e);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);

async function run() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: HTTPS });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  let bytes = 0;
  const sizes = [];
  page.on('requestfinished', (req) => {
    sizes.push(req.sizes().then((s) => {
      bytes += s.responseBodySize + s.responseHeadersSize;
    }).catch(() => {}));
  });
  const settle = async () => {
    await Promise.all(sizes.splice(0));
  };

  // --- Without a token: the sign-in form, and the headers.
  const first = await page.goto(`${BASE}/ui/`);
  assert.equal(first.status(), 200);
  const csp = first.headers()['content-security-policy'];
  assert.ok(csp && csp.includes("script-src 'self'") && csp.includes("default-src 'none'"), `CSP: ${csp}`);
  const input = page.getByLabel('Token');
  await input.waitFor();
  assert.equal(await input.getAttribute('type'), 'password');
  assert.equal(await input.getAttribute('autocomplete'), 'off');
  await page.waitForLoadState('networkidle');
  await settle();
  const firstLoad = bytes;

  // A wrong token: back to the form with the API's message.
  await input.fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#signin-error').filter({ hasText: /\S/ }).waitFor();
  log('wrong token says:', await page.locator('#signin-error').textContent());
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  // --- A token scoped to another environment sees nothing of dev.
  await input.fill(OTHER);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/#\/env\/other$/);
  const options = await page.locator('#env option').allTextContents();
  assert.deepEqual(options, ['other']);
  await page.evaluate(() => { location.hash = '#/env/dev'; });
  await page.locator('#view [role=alert]').waitFor();
  const denied = await page.locator('#view').textContent();
  assert.match(denied, /403/);
  assert.ok(!new RegExp(`${esc(A)}|${esc(B)}|payments`).test(denied), denied);
  assert.equal(await page.locator('#workers').count(), 0);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await input.waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  // --- The viewer of dev: two Workers at r1.
  bytes = 0;
  await page.goto(`${BASE}/ui/`);
  await input.fill(VIEWER);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/#\/env\/dev$/);
  const row = (id) => page.locator(`#workers tr[data-worker="${id}"]`);
  for (const w of [A, B]) {
    await row(w).filter({ hasText: 'ACK r1' }).filter({ hasText: 'connected' }).waitFor();
  }
  await page.waitForTimeout(300);
  await settle();
  const withData = bytes;
  assert.ok(!page.url().includes(VIEWER), 'the token is never in a URL');
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.deepEqual(await context.cookies(), []);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('switchyard.token')), VIEWER);
  assert.equal(await page.locator('#current-revision').textContent(), 'r1');
  assert.equal(await page.locator('#workers th[scope=col]').count(), 8);

  // Live updates: the UI stream, when the Manager has it.
  const stream = await fetch(`${BASE}/ui/stream?env=dev`, { headers: { Authorization: `Bearer ${VIEWER}` } });
  const live = stream.status !== 404;
  if (stream.body) await stream.body.cancel().catch(() => {});
  if (live) {
    assert.equal(stream.status, 200);
    await page.locator('#live[data-state=live]').waitFor();
  } else {
    assert.ok(process.env.REQUIRE_LIVE !== '1', 'REQUIRE_LIVE=1 but GET /ui/stream answers 404');
    await page.locator('#live[data-state=unavailable]').waitFor();
    console.log('LIVE-UPDATES: NOT TESTED against the Manager (GET /ui/stream answers 404 here; the Refresh button stands in)');
    // The client side of the stream against a stand-in (Playwright answers /ui/stream
    // with the contract's events; each answer ends, so the page must reconnect): the
    // Bearer header is sent, the token is not in the URL, a `changed` event re-fetches
    // the view, an ended stream is reconnected with backoff.
    const seen = [];
    let workersFetches = 0;
    const counter = (req) => { if (req.url().endsWith('/v1/envs/dev/workers')) workersFetches++; };
    page.on('request', counter);
    await page.route('**/ui/stream?*', (route) => {
      const req = route.request();
      seen.push({ url: req.url(), auth: req.headers().authorization, at: Date.now() });
      return route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
        body: `: heartbeat\n\nevent: changed\ndata: {"env":"dev","version":${seen.length}}\n\n`,
      });
    });
    await page.reload();
    await row(A).waitFor();
    const before = workersFetches;
    const deadline = Date.now() + TIMEOUT;
    while (seen.length < 3 || workersFetches < before + 2) {
      assert.ok(Date.now() < deadline, `stand-in stream: ${seen.length} connections, ${workersFetches - before} re-fetches`);
      await page.waitForTimeout(50);
    }
    await page.unroute('**/ui/stream?*');
    page.off('request', counter);
    assert.ok(seen.every((s) => s.auth === `Bearer ${VIEWER}` && !s.url.includes(VIEWER) && s.url.endsWith('/ui/stream?env=dev')), JSON.stringify(seen));
    const gaps = seen.slice(1).map((s, i) => s.at - seen[i].at);
    assert.ok(gaps[0] >= 400 && gaps[1] >= 1.6 * gaps[0], `reconnects back off: ${gaps}`);
    log(`stand-in stream: ${seen.length} connections, gaps ${gaps} ms, ${workersFetches - before} re-fetches of the view`);
    await page.locator('#live[data-state=unavailable]').waitFor();
  }
  // Without the stream the test clicks Refresh until the text shows (never when live).
  const until = async (locator) => {
    if (live) return locator.waitFor();
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      if (await locator.count() > 0) return;
      assert.ok(Date.now() < deadline, `timed out waiting for ${locator}`);
      await page.locator('#refresh').click();
      await page.waitForTimeout(100);
    }
  };
  // --- Charts. (c) propagation per revision, from the revisions the overview fetches: r1
  // was committed before any Worker connected, so it has a slot and no propagation time.
  await page.locator('#chart-propagation g[data-label="r1"][data-value="none"]').waitFor({ state: 'attached' });
  // (a) requests/s, (b) failed requests/s, (d) Worker memory: GET /v1/envs/dev/stats, when
  // the Manager has it; otherwise a stand-in answered by Playwright exercises the charts.
  let statsFetches = 0;
  page.on('request', (req) => { if (req.url().endsWith('/v1/envs/dev/stats')) statsFetches++; });
  const statsAnswer = await fetch(`${BASE}/v1/envs/dev/stats`, { headers: { Authorization: `Bearer ${VIEWER}` } });
  const statsLive = statsAnswer.status !== 404;
  await statsAnswer.text();
  if (statsLive) {
    assert.equal(statsAnswer.status, 200);
    console.log('STATS: live');
    // The page polls every interval_ms (10 s buckets): allow a few polls.
    let deadline = Date.now() + 3 * TIMEOUT;
    for (;;) {
      const points = Number(await page.locator('#chart-requests').getAttribute('data-points', { timeout: 1000 }).catch(() => '0'));
      const memory = await page.locator('#chart-memory').textContent({ timeout: 1000 }).catch(() => '');
      if (points >= 1 && memory.includes(A) && memory.includes(B)) break;
      assert.ok(Date.now() < deadline, `stats charts: ${points} points, memory chart: ${memory}`);
      await page.waitForTimeout(250);
    }
    if (SHOTS) await page.locator('.chart-section').screenshot({ path: `${SHOTS}/charts.png` });
    // Served from: each Worker's statistics say where its configuration comes from; the
    // Manager announces a change of it on the stream (the first statement included).
    const servedFrom = async (w) => (await row(w).locator('td').nth(1).textContent()).trim();
    deadline = Date.now() + 3 * TIMEOUT;
    for (;;) {
      const from = [await servedFrom(A), await servedFrom(B)];
      if (from.every((f) => f === 'manager')) break;
      assert.ok(Date.now() < deadline, `Served from: ${from}`);
      await page.waitForTimeout(250);
    }
    assert.equal(await page.locator('#workers thead th').nth(2).textContent(), 'Served from');
    // A Worker serving its cache is marked (the Workers' answer edited by Playwright: a
    // live Worker serves what the Manager gave it).
    await page.route('**/v1/envs/dev/workers', async (route) => {
      const answer = await route.fetch();
      const workers = await answer.json();
      for (const w of workers) if (w.id === B) w.served_from = 'cache';
      return route.fulfill({ response: answer, json: workers });
    });
    // An edited answer raises no stream event: the (hidden while live) Refresh button
    // fetches it.
    await page.locator('#refresh').evaluate((b) => b.click());
    await row(B).locator('.badge.warn', { hasText: 'cache' }).waitFor();
    assert.equal(await servedFrom(A), 'manager');
    await page.unroute('**/v1/envs/dev/workers');
    await page.locator('#refresh').evaluate((b) => b.click());
    await row(B).filter({ hasText: 'manager' }).waitFor();
    assert.equal(await row(B).locator('.badge.warn').count(), 0);
  } else {
    assert.ok(process.env.REQUIRE_LIVE !== '1', 'REQUIRE_LIVE=1 but GET /v1/envs/dev/stats answers 404');
    console.log('STATS: stand-in (GET /v1/envs/dev/stats answers 404 here: Playwright answers it instead)');
    await page.locator('#stats-charts[data-stats=unavailable]').filter({ hasText: 'No traffic statistics from this Manager' }).waitFor();
    assert.equal(await page.locator('#chart-requests').count(), 0);
    const now = Date.now();
    const at0 = now - (now % 10000) - 11 * 10000;
    const points = Array.from({ length: 12 }, (_, i) => ({
      at: at0 + i * 10000,
      requests_per_second: { '1xx': 0.0, '2xx': 780 + 40 * Math.sin(i / 2), '3xx': 0.0, '4xx': 3.1 + (i % 3), '5xx': i === 7 ? 2.5 : 0.2 },
      gateway_errors_per_second: i === 7 ? 2.5 : 0.2,
      workers: [{ id: A, resident_bytes: 23456789 + i * 150000 }, { id: B, resident_bytes: 21000000 + i * 90000 }],
    }));
    const auths = [];
    await page.route('**/v1/envs/dev/stats', (route) => {
      auths.push(route.request().headers().authorization);
      return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ interval_ms: 1000, points }) });
    });
    await page.reload();
    await page.locator('#chart-requests[data-points="12"]').waitFor();
    for (const c of ['2xx', '4xx', '5xx']) await page.locator(`#chart-requests polyline[data-series="${c}"]`).waitFor();
    for (const c of ['1xx', '3xx']) assert.equal(await page.locator(`#chart-requests [data-series="${c}"]`).count(), 0, `${c} is all zero: no line`);
    await page.locator('#chart-failed[data-points="12"]').waitFor();
    for (const w of [A, B]) await page.locator(`#chart-memory polyline[data-series="${w}"]`).waitFor();
    assert.match(await page.locator('#chart-memory .legend').textContent(), new RegExp(`${esc(A)}: 25\\.1 MB[\\s\\S]*${esc(B)}: 22 MB`));
    assert.match(await page.locator('#chart-requests svg').getAttribute('aria-label'), /latest: 2xx \d+ req\/s, 4xx 5\.1 req\/s, 5xx 0\.2 req\/s/);
    assert.match(await page.locator('#chart-requests figcaption').textContent(), /Requests\/s by status class/);
    // Polled every interval_ms while the overview is shown...
    let deadline = Date.now() + TIMEOUT;
    const polled = statsFetches;
    while (statsFetches < polled + 2) {
      assert.ok(Date.now() < deadline, `stats polled ${statsFetches - polled} times`);
      await page.waitForTimeout(100);
    }
    assert.ok(auths.every((a) => a === `Bearer ${VIEWER}`), `${auths}`);
    if (SHOTS) await page.locator('.chart-section').screenshot({ path: `${SHOTS}/charts.png` });
    // ...and not once the overview is left.
    await page.evaluate(() => { location.hash = '#/env/dev/commands'; });
    await page.locator('h1', { hasText: 'Commands' }).waitFor();
    const left = statsFetches;
    await page.waitForTimeout(2500);
    assert.equal(statsFetches, left, 'no stats polling outside the overview');
    await page.evaluate(() => { location.hash = '#/env/dev'; });
    await page.locator('#chart-requests').waitFor();
    // Without the endpoint (the next poll answers 404): the message instead of (a), (b), (d); (c) stays.
    await page.unroute('**/v1/envs/dev/stats');
    await page.locator('#stats-charts[data-stats=unavailable]').filter({ hasText: 'No traffic statistics from this Manager' }).waitFor();
    assert.equal(await page.locator('#chart-requests, #chart-failed, #chart-memory').count(), 0);
    await page.locator('#chart-propagation g[data-label="r1"]').waitFor({ state: 'attached' });
    const stopped = statsFetches;
    await page.waitForTimeout(1500);
    assert.equal(statsFetches, stopped, 'no polling once the endpoint answers 404');
  }
  if (SHOTS) {
    // The charts' screenshot scrolled them into view: the overview is shown from its top.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${SHOTS}/overview.png` });
  }

  // --- Apply r2 (admin token, as the CLI would): r2 and both ACKs appear without reload.
  await page.evaluate(() => { window.notReloaded = true; });
  const appliedBy = await applyR2();
  const t0 = performance.now();
  log(`r2 applied by ${appliedBy}`);
  await until(page.locator('#revisions tr[data-revision="2"]'));
  const visible = Math.round(performance.now() - t0);
  for (const w of [A, B]) await until(row(w).filter({ hasText: 'ACK r2' }));
  await until(page.locator('#revisions tr[data-revision="2"]').filter({ hasText: '2/2 ACK' }));
  await until(page.locator('#chart-propagation g[data-label="r2"] rect.bar'));
  assert.match(await page.locator('#chart-propagation g[data-label="r2"]').getAttribute('data-value'), /^\d+$/);
  assert.match(await page.locator('#chart-propagation svg').getAttribute('aria-label'), /r1 none, r2 \d+ ms/);
  assert.equal(await page.locator('#chart-propagation g[data-label="r1"]').count(), 1);
  const acked = Math.round(performance.now() - t0);
  assert.equal(await page.locator('#current-revision').textContent(), 'r2');
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');

  // --- The revision page: its change and both Workers' timeline entries.
  await page.locator('#revisions tr[data-revision="2"] a').click();
  await page.waitForURL(/#\/env\/dev\/r\/2$/);
  await page.locator('#changes tr[data-entity="proxy/payments"]').filter({ hasText: 'v1 → v2' }).waitFor();
  // The field-level diff: r2 moves the upstream target (a → b) and the release header
  // (blue → green).
  const diff = page.locator('table.diff[data-entity="proxy/payments"]');
  await diff.waitFor();
  assert.match(await page.locator(`#${await diff.getAttribute('aria-labelledby')}`).textContent(), /proxy\/payments[\s\S]*v1 → v2/);
  const newUrl = MANIFEST_R2.match(/url: (http:\/\/\S+)/)[1];
  const target = diff.locator('tr[data-path="spec.upstream.targets[0].url"]');
  const [oldUrl, shownNew] = [(await target.locator('td.old').textContent()).trim(), (await target.locator('td.new').textContent()).trim()];
  assert.equal(shownNew, newUrl);
  assert.match(oldUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(oldUrl, newUrl);
  const release = diff.locator('tr[data-path$="x-release"]');
  assert.equal(await release.count(), 1, 'the x-release field is listed');
  assert.equal((await release.locator('td.old').textContent()).trim(), 'blue');
  assert.equal((await release.locator('td.new').textContent()).trim(), 'green');
  assert.equal(await diff.locator('tr[data-secret=true]').count(), 0);
  assert.equal(await diff.locator('.badge.cls-restart-required, .badge.cls-hot-with-drain').count(), 0, 'every field of r2 is hot');
  log('r2 diff:', (await diff.locator('tbody th').allTextContents()).join(', '));
  // Hot, not a rollout; the actor.
  assert.equal(await page.locator('#delivery').textContent(), 'hot');
  assert.equal(await page.locator('#delivery').getAttribute('data-kind'), 'hot');
  assert.match(await page.locator('#actor').textContent(), /\S/);
  // The timeline: each Worker's pull, swap and ACK in ms after the commit, as text and as
  // three markers on its bar.
  for (const w of [A, B]) {
    const tr = page.locator(`#timeline tr[data-worker="${w}"][data-status=ack]`);
    await until(tr.filter({ hasText: 'ACK r2' }));
    const [pull, swap, ack] = await Promise.all(['data-pull', 'data-swap', 'data-ack'].map((a) => tr.getAttribute(a)));
    assert.ok([pull, swap, ack].every((x) => /^-?\d+$/.test(x)), `${w}: pull ${pull}, swap ${swap}, ACK ${ack}`);
    assert.ok(Number(pull) <= Number(swap), `${w} pulled (${pull}) before it swapped (${swap}), on its own clock`);
    const cells = (await tr.locator('td').allTextContents()).map((t) => t.trim());
    const signed = (x) => `${Number(x) < 0 ? '−' : '+'}${Math.abs(Number(x))} ms`;
    assert.deepEqual(cells.slice(1, 4), [signed(pull), signed(swap), signed(ack)], `${w}: ${cells}`);
    const marks = page.locator(`#timeline-chart g[data-worker="${w}"] .mark`);
    assert.equal(await marks.count(), 3);
    assert.deepEqual(await marks.evaluateAll((m) => m.map((e) => `${e.classList[1]} ${e.dataset.ms}`)), [`pull ${pull}`, `swap ${swap}`, `received ${ack}`]);
    log(`${w} r2: pull ${signed(pull)}, swap ${signed(swap)}, ACK ${signed(ack)} after the commit`);
  }
  assert.match(await page.locator('#timeline-chart').getAttribute('aria-label'), new RegExp(`${esc(A)}: pull [+−]\\d+ ms, swap [+−]\\d+ ms, ACK received [+−]\\d+ ms`));
  assert.match(await page.locator('#acks').textContent(), /2\/2 ACK/);
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/revision.png`, fullPage: true });
  // A diff the Manager cannot give (history pruned): its message in place of the diff,
  // the rest of the page as before (the answer is Playwright's).
  await page.route('**/v1/envs/dev/revisions/2/diff', (route) => route.fulfill({
    status: 404,
    contentType: 'application/json',
    body: JSON.stringify({ code: 'history_pruned', message: 'the state before revision 2 was pruned' }),
  }));
  await page.locator('#refresh').evaluate((b) => b.click());
  await page.locator('#diff-error').filter({ hasText: 'the state before revision 2 was pruned' }).waitFor();
  assert.equal(await page.locator('table.diff').count(), 0);
  await page.locator(`#timeline tr[data-worker="${A}"][data-status=ack]`).waitFor();
  await page.locator('#changes tr[data-entity="proxy/payments"]').waitFor();
  await page.unroute('**/v1/envs/dev/revisions/2/diff');

  // --- One Worker stops: marked disconnected.
  await page.getByRole('link', { name: /dev overview/ }).click();
  await page.waitForURL(/#\/env\/dev$/);
  // --- The canary section (only with CANARY_FILE: see canaryStep below): r3 the canary,
  // r4 the stable content again (aborted).
  if (process.env.CANARY_FILE) await canaryStep(page, { file: process.env.CANARY_FILE, until });
  const nack = process.env.CANARY_FILE ? 5 : 3;
  await step('stop-w2');
  await until(row(B).filter({ hasText: 'disconnected' }));
  assert.equal(await row(B).getAttribute('data-connected'), 'false');
  assert.equal(await row(A).getAttribute('data-connected'), 'true');

  // --- A NACK (a revision the Worker rejects): the NACK and its error.
  await step('nack-r3');
  await until(row(A).filter({ hasText: `NACK r${nack}` }).filter({ hasText: 'invalid duration' }));
  assert.match(await row(A).textContent(), new RegExp(`ACK r${nack - 1}`), 'a NACK keeps it where it was');
  await page.locator(`#revisions tr[data-revision="${nack}"] a`).click();
  await page.locator(`#timeline tr[data-worker="${A}"][data-status=nack]`).filter({ hasText: 'invalid duration' }).waitFor();

  // --- Audit with filters.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.waitForURL(/#\/env\/dev\/audit$/);
  await page.locator('#audit tbody tr[data-id]').first().waitFor();
  // A token scoped to dev: no "All environments", no environment column.
  assert.deepEqual(await page.locator('#audit-env option').allTextContents(), ['dev']);
  assert.ok(!(await page.locator('#audit thead').textContent()).includes('Environment'));
  const auditRows = page.locator('#audit tbody tr[data-id]');
  /** Waits until the rows shown satisfy `ok(rows)` ({id, entity} each, top to bottom). */
  const auditShows = async (ok, what) => {
    const by = Date.now() + TIMEOUT;
    for (;;) {
      const rows = await auditRows.evaluateAll((trs) => trs.map((tr) => ({ id: Number(tr.dataset.id), entity: tr.dataset.entity })));
      if (ok(rows)) return rows;
      assert.ok(Date.now() < by, `audit: ${what}: ${JSON.stringify(rows)}`);
      await page.waitForTimeout(100);
    }
  };
  // The page shows the route of its address (#view's data-route): the form filled next is
  // that render's, not one about to be replaced.
  const shown = () => page.waitForFunction(() => document.getElementById('view').dataset.route === location.hash);
  const filter = async (fields, url) => {
    await shown();
    for (const [label, value] of Object.entries(fields)) await page.getByLabel(label, { exact: true }).fill(value);
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(url);
    await shown();
  };
  // By entity: a kind alone, then one entity.
  await filter({ Entity: 'worker' }, /audit\?entity=worker$/);
  await auditShows((rows) => rows.length > 0 && rows.every((r) => r.entity.startsWith('worker/')), 'entity=worker');
  await filter({ Entity: 'proxy/payments' }, /audit\?entity=proxy%2Fpayments$/);
  const payments = await auditShows((rows) => rows.length >= 3 && rows.every((r) => r.entity === 'proxy/payments'), 'entity=proxy/payments');
  assert.deepEqual(payments.map((r) => r.id), payments.map((r) => r.id).sort((a, b) => b - a), 'newest first');
  // By actor: another actor's records only (none here), then every actor again.
  await filter({ Actor: 'nobody (tok_0000000000)' }, /&actor=nobody/);
  await page.locator('#audit td.empty', { hasText: 'No audit record matches' }).waitFor();
  await filter({ Actor: '' }, /audit\?entity=proxy%2Fpayments$/);
  await auditShows((rows) => rows.length === payments.length, 'every actor again');
  // By time: a range that ends before the test began shows nothing; from a minute
  // ago to a minute ahead shows the records again.
  const local = (ms) => {
    const d = new Date(ms);
    const p = (x) => String(x).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
  };
  await filter({ 'To (local time)': local(Date.now() - 3600000) }, /&until=\d+$/);
  await page.locator('#audit td.empty', { hasText: 'No audit record matches' }).waitFor();
  await filter({ 'From (local time)': local(Date.now() + 120000), 'To (local time)': '' }, /&since=\d+$/);
  await page.locator('#audit td.empty', { hasText: 'No audit record matches' }).waitFor();
  await filter({ 'From (local time)': local(Date.now() - 600000), 'To (local time)': local(Date.now() + 60000) }, /&since=\d+&until=\d+$/);
  await auditShows((rows) => rows.length === payments.length, 'a range around now');
  // Paging with the cursor: two per page (the route's `limit`); Older asks for
  // `before=<the last id shown>`, Newest goes back.
  await page.evaluate(() => { location.hash = '#/env/dev/audit?entity=worker&limit=2'; });
  const firstPage = await auditShows((rows) => rows.length === 2 && rows.every((r) => r.entity.startsWith('worker/')), 'page 1 of entity=worker');
  assert.match(await page.locator('#audit-page').textContent(), /2 per page/);
  assert.equal(await page.locator('#audit-newest').count(), 0);
  await page.getByRole('link', { name: 'Older' }).click();
  await page.waitForURL(new RegExp(`before=${firstPage[1].id}&limit=2$`));
  const secondPage = await auditShows((rows) => rows.length > 0 && rows.every((r) => r.id < firstPage[1].id), 'page 2');
  assert.ok(secondPage.every((r) => r.entity.startsWith('worker/')), JSON.stringify(secondPage));
  log(`audit pages of entity=worker, 2 per page: [${firstPage.map((r) => r.id)}] then older [${secondPage.map((r) => r.id)}]`);
  await page.getByRole('link', { name: 'Newest' }).click();
  await page.waitForURL(/audit\?entity=worker&limit=2$/);
  await auditShows((rows) => rows.map((r) => r.id).join() === firstPage.map((r) => r.id).join(), 'back to the newest');
  if (SHOTS) {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.evaluate(() => { location.hash = '#/env/dev/audit'; });
    await auditShows((rows) => rows.length > 2, 'the whole trail');
    await page.screenshot({ path: `${SHOTS}/audit.png` });
  }

  // --- Commands.
  await page.getByRole('link', { name: 'Commands' }).click();
  await page.getByText('switchyard apply --env dev ./manifests --wait --timeout 60s').waitFor();

  // --- Keyboard: after navigation focus is on the page's heading; every control of the
  // header is reachable with Shift+Tab, and focus is visible.
  await page.goto(`${BASE}/ui/#/env/dev`);
  await page.locator('#workers').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1');
  const reached = [];
  for (let i = 0; i < 10; i++) {
    await page.keyboard.press('Shift+Tab');
    reached.push(await page.evaluate(() => document.activeElement.id || document.activeElement.className));
    if (reached.at(-1) === 'nav-audit') {
      const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      assert.equal(outline, 'solid', 'focus is visible');
    }
  }
  for (const id of ['signout', 'nav-commands', 'nav-audit', 'nav-overview', 'env', 'skip']) {
    assert.ok(reached.includes(id), `${id} is reachable by keyboard: ${reached}`);
  }


  // --- Phone width: no horizontal scrolling of the page (tables scroll in their box), on
  // the overview, a revision with its diff and timeline, and the audit trail.
  await page.setViewportSize({ width: 375, height: 812 });
  for (const [hash, ready] of [['#/env/dev', '#workers'], ['#/env/dev/r/2', 'table.diff'], ['#/env/dev/audit', '#audit tbody tr[data-id]']]) {
    await page.evaluate((h) => { location.hash = h; }, hash);
    await page.locator(ready).first().waitFor();
    await page.waitForTimeout(100);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${hash} overflows a phone by ${overflow}px`);
  }
  await page.evaluate(() => { location.hash = '#/env/dev'; });
  await page.locator('#workers').waitFor();

  // --- Sign out clears session storage.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  // --- A token not scoped to environments (admin): the audit trail of all of them, with
  // each record's environment.
  {
    const admin = await context.newPage();
    admin.setDefaultTimeout(TIMEOUT);
    admin.on('pageerror', (e) => problems.push(String(e)));
    await admin.goto(`${BASE}/ui/#/env/dev/audit`);
    await admin.getByLabel('Token').fill(ADMIN);
    await admin.getByRole('button', { name: 'Sign in' }).click();
    await admin.locator('#audit tbody tr[data-id]').first().waitFor();
    await admin.waitForFunction(() => document.getElementById('view').dataset.route === location.hash);
    assert.deepEqual((await admin.locator('#audit-env option').allTextContents()).slice(0, 1), ['All environments']);
    await admin.getByLabel('Records of').selectOption('*');
    await admin.getByLabel('Entity', { exact: true }).fill('environment');
    await admin.getByRole('button', { name: 'Filter' }).click();
    await admin.waitForURL(/audit\?all=1&entity=environment$/);
    await admin.locator('#audit thead th', { hasText: 'Environment' }).waitFor();
    const envsShown = new Set(await admin.locator('#audit tbody tr[data-id]').evaluateAll((trs) => trs.map((tr) => tr.dataset.env)));
    assert.ok(envsShown.has('dev') && envsShown.has('other'), `environments of all records: ${[...envsShown]}`);
    assert.match(await admin.locator('#view h1').textContent(), /all environments/);
    await admin.getByRole('button', { name: 'Sign out' }).click();
    await admin.close();
  }

  const csp_problems = problems.filter((p) => /Content Security Policy|Refused/.test(p));
  assert.deepEqual(csp_problems, [], 'no CSP violations');
  const unexpected = problems.filter((p) => !/status of 40[134]/.test(p));
  assert.deepEqual(unexpected, [], 'no script errors');

  console.log(`METRIC first-load-bytes ${firstLoad} (the sign-in page: HTML, CSS, modules, icon)`);
  console.log(`METRIC signed-in-overview-bytes ${withData} (a fresh load signed in: the assets again plus the overview's JSON)`);
  console.log(`METRIC apply-to-r2-visible-ms ${visible}${live ? '' : ' (via Refresh clicks: the stream is missing)'}`);
  console.log(`METRIC apply-to-both-acks-visible-ms ${acked}`);
}

// ---------------------------------------------------------------------------------------
// The canary section of the overview. Run by run() only when CANARY_FILE is set (the
// Manager then has GET /v1/envs/{env}/canary and `switchyard canary abort`).

/** Starts a canary of dev at 50% with the CLI, waits until the overview's canary section
 * shows it running at 50% (its hooks: data-canary-state, data-canary-share-ppm,
 * data-canary-revision; rows data-side=canary/stable), screenshots it (canary.png), checks
 * a phone's width, aborts it with the CLI and waits until the section says aborted.
 * `until(locator)` is run()'s wait (Refresh clicks when the Manager has no stream). */
async function canaryStep(page, { file, until }) {
  assert.ok(CLI, 'CANARY_FILE is set but SWITCHYARD_BIN is not: the canary is started and aborted with the CLI');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.evaluate(() => { location.hash = '#/env/dev'; });
  await page.locator('#workers').waitFor();
  const before = Number((await page.locator('#current-revision').textContent()).replace(/^r/, ''));
  const started = await switchyard(['apply', '--env', 'dev', file, '--canary', '50%', '--step-for', '1h']);
  log('canary started:', started.trim());

  // Running at 50%: the commit is announced on the stream, the section then polls itself.
  const section = page.locator('#canary');
  await until(page.locator('#canary[data-canary-state="running"][data-canary-share-ppm="500000"]'));
  const revision = Number(await section.getAttribute('data-canary-revision'));
  assert.ok(revision > before, `the canary r${revision} is newer than r${before}`);
  const headline = (await section.locator('.canary-headline').textContent()).replace(/\s+/g, ' ');
  assert.match(headline, new RegExp(`canary r${revision} beside r\\d+ · step 1 of 1 · 50 % of requests`), headline);
  assert.equal(await section.locator(`a#canary-rev[href="#/env/dev/r/${revision}"]`).count(), 1);
  assert.equal(await section.locator('svg.share-bar rect.canary-part').getAttribute('width'), '50');
  await section.locator('.canary-left').filter({ hasText: /^in (59 min|1 h)/ }).waitFor();
  for (const side of ['canary', 'stable']) {
    const cells = await section.locator(`#canary-numbers tr[data-side="${side}"] td`).count();
    assert.equal(cells, 6, `the ${side} row: requests, errors, error rate, denials, p99, Workers`);
  }
  log('canary section:', headline, '|', (await section.locator('#canary-numbers tbody').textContent()).replace(/\s+/g, ' ').trim());
  if (SHOTS) await section.screenshot({ path: `${SHOTS}/canary.png` });

  // A phone: the section (its numbers table scrolls in its box) does not widen the page.
  await page.setViewportSize({ width: 375, height: 812 });
  await section.waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the overview with a running canary overflows a phone by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 800 });

  // Aborted: the section becomes one line, the same canary revision.
  log('canary aborted:', (await switchyard(['canary', 'abort', '--env', 'dev'])).trim());
  await until(page.locator(`#canary[data-canary-state="aborted"][data-canary-revision="${revision}"]`));
  const ended = (await section.locator('.canary-ended').textContent()).replace(/\s+/g, ' ');
  assert.match(ended, new RegExp(`canary r${revision} \\(beside r\\d+\\) aborted`), ended);
  assert.equal(await section.locator('#canary-numbers').count(), 0);
  log('canary ended:', ended);
}
