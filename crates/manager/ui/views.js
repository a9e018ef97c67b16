// The views, rendered from the admin API's JSON. Each is {title, load(), render(data)}:
// load fetches, render builds DOM (h/textContent only).

import { api, enc, ApiError, token } from './api.js';
import { lineChart, barChart, num } from './charts.js';
import { h, fill, svg, table, rev, when, ago, status, entity } from './dom.js';

const changeText = (c) => {
  if (c.old_version === null || c.old_version === undefined) return `created (v${c.new_version})`;
  if (c.new_version === null || c.new_version === undefined) return `deleted (was v${c.old_version})`;
  return `v${c.old_version} → v${c.new_version}`;
};

const pct = (x) => (x === null || x === undefined ? '–' : `${Math.round(x * 1000) / 10} %`);
const ms = (x) => (x === null || x === undefined ? '–' : `${x} ms`);

function acksCell(v) {
  if (!v) return '–';
  const expected = v.expected_workers ? v.expected_workers.length : null;
  let text = `${v.acks}/${expected} ACK`;
  if (expected === null) text = `${v.acks} ACK`;
  else if (expected === 0) text = `${v.acks} ACK (no Worker connected at commit)`;
  return v.nacks > 0 ? [text, ' ', h('span', { class: 'badge nack' }, `${v.nacks} NACK`)] : text;
}

/** Where a Worker's configuration comes from (its statistics say, every 10 s): what the
 * Manager gave it, or its last-known-good cache (a warning: it may not follow commits). */
function servedFrom(from) {
  if (from === 'cache') {
    return h('span', { class: 'badge warn', title: 'The Worker serves its last-known-good cache, not what the Manager gave it' }, 'cache');
  }
  return from || '–';
}

function workerRows(workers) {
  return workers.map((w) => {
    const last = w.last_report;
    const report = last
      ? [status(last), last.status === 'nack' && last.error ? h('div', { class: 'error-text' }, last.error) : null]
      : '–';
    const conn = w.connected
      ? h('span', { class: 'badge connected' }, 'connected')
      : [h('span', { class: 'badge disconnected' }, 'disconnected'), w.last_seen ? h('div', { class: 'muted' }, 'last seen ', when(w.last_seen), ` (${ago(w.last_seen)})`) : null];
    return {
      dataset: { worker: w.id, connected: String(w.connected), servedFrom: w.served_from || '' },
      cells: [
        w.id,
        w.revision === null || w.revision === undefined ? '–' : `ACK ${rev(w.revision)}`,
        servedFrom(w.served_from),
        w.lag === null || w.lag === undefined ? '–' : String(w.lag),
        report,
        w.version || '–',
        conn,
        w.address || '–',
      ],
    };
  });
}

function workersTable(workers) {
  return h('div', { id: 'workers-wrap' }, table({
    id: 'workers',
    caption: 'Workers',
    columns: ['Worker', 'Serves', 'Served from', 'Lag', 'Last report', 'Version', 'Connection', 'Address'],
    rows: workerRows(workers),
    empty: 'No Worker has connected to this environment yet.',
  }));
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];
const NO_STATS = 'No traffic statistics from this Manager';

/** GET /v1/envs/{env}/stats; `null` when the Manager has no such endpoint (404). */
async function loadStats(env) {
  try {
    return await api(`/v1/envs/${enc(env)}/stats`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

/** Charts (a) requests/s by status class, (b) failed requests/s, (d) Worker memory. */
function statsCharts(stats) {
  if (!stats) {
    return h('div', { id: 'stats-charts', class: 'charts', dataset: { stats: 'unavailable' } },
      h('p', { class: 'chart-empty wide' }, NO_STATS));
  }
  const points = stats.points || [];
  const empty = 'No Worker has reported traffic yet.';
  const rate = (p, c) => (p.requests_per_second && p.requests_per_second[c]) || 0;
  let classes = CLASSES.filter((c) => points.some((p) => rate(p, c) > 0));
  if (classes.length === 0) classes = ['2xx'];
  const requests = classes.map((c) => ({ name: c, cls: `c${c}`, points: points.map((p) => [p.at, rate(p, c)]) }));
  const failed = [{ name: 'failed', cls: 'cfail', points: points.map((p) => [p.at, p.gateway_errors_per_second || 0]) }];
  const ids = [...new Set(points.flatMap((p) => (p.workers || []).map((w) => w.id)))].sort();
  const memory = ids.map((id, i) => ({
    name: id,
    cls: `s${i % 6}`,
    points: points.flatMap((p) => (p.workers || []).filter((w) => w.id === id).map((w) => [p.at, w.resident_bytes / 1e6])),
  }));
  return h('div', { id: 'stats-charts', class: 'charts', dataset: { stats: 'available' } },
    lineChart({ id: 'chart-requests', title: 'Requests/s by status class', unit: 'req/s', series: requests, empty }),
    lineChart({ id: 'chart-failed', title: 'Failed requests/s (gateway 502/503/504, cut responses)', unit: 'req/s', series: failed, empty }),
    lineChart({ id: 'chart-memory', title: 'Worker memory (resident)', unit: 'MB', series: memory, empty }));
}

/** Chart (c): propagation time per revision, oldest left. */
function propagationChart(revisions, views) {
  const bars = revisions
    .map((r, i) => ({ label: rev(r.revision), value: views[i] && typeof views[i].propagation_ms === 'number' ? views[i].propagation_ms : null }))
    .reverse();
  return barChart({ id: 'chart-propagation', title: 'Propagation time per revision (commit → last swap)', unit: 'ms', bars, empty: 'No revision yet.' });
}

/** GET /v1/envs/{env}/canary: the latest canary, `null` when the environment never had one
 * or the Manager has no such endpoint (404). */
async function loadCanary(env) {
  try {
    return await api(`/v1/envs/${enc(env)}/canary`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

/** While a canary runs, the overview polls it this often (the stream says nothing of a step
 * moving on or of its numbers). */
const CANARY_POLL_MS = 2000;

/** Parts per million as a percentage: 50000 → "5 %", 125000 → "12.5 %". */
const ppmPct = (ppm) => (ppm === null || ppm === undefined ? '–' : `${ppm / 10000} %`);

const CANARY_STATE = { running: 'running', promoted: 'promoted', 'rolled-back': 'rolled back', aborted: 'aborted' };

function canaryKey(key) {
  if (!key || key.by === 'random') return 'random (a draw per request)';
  if (key.by === 'header') return ['header ', h('code', {}, key.name), ' (sticky per value)'];
  if (key.by === 'client-ip') return 'client IP (sticky per client)';
  return key.by;
}

/** 272000 → "4 min 32 s". */
function duration(msValue) {
  const s = Math.max(0, Math.ceil(msValue / 1000));
  const hours = Math.floor(s / 3600);
  const mins = Math.floor((s % 3600) / 60);
  const secs = s % 60;
  if (hours) return mins ? `${hours} h ${mins} min` : `${hours} h`;
  if (mins) return secs ? `${mins} min ${secs} s` : `${mins} min`;
  return `${secs} s`;
}

/** A revision's page link; `id` keeps keyboard focus on it across a poll. */
const revLink = (env, n, id) => h('a', { href: `#/env/${enc(env)}/r/${n}`, id }, rev(n));

/** The share as a bar: the canary's part of 100 % filled, the stable's the rest, a tick at
 * each step's share. The numbers are text beside it (and in its aria-label). */
function shareBar(c) {
  const share = Math.min(100, Math.max(0, c.share_ppm / 10000));
  const label = `canary ${rev(c.revision)} ${ppmPct(c.share_ppm)} of requests, stable ${rev(c.stable_revision)} ${ppmPct(1000000 - c.share_ppm)}`;
  const bar = svg('svg', { class: 'share-bar', viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  bar.append(
    svg('rect', { x: 0, y: 0, width: 100, height: 10, class: 'stable-part' }),
    svg('rect', { x: 0, y: 0, width: share, height: 10, class: 'canary-part' }),
  );
  for (const step of (c.spec && c.spec.steps_ppm) || []) {
    const x = step / 10000;
    bar.append(svg('line', { x1: x, y1: 0, x2: x, y2: 10, class: 'step-tick' }));
  }
  return h('div', { class: 'share' }, bar,
    h('p', { class: 'share-legend' },
      h('span', {}, h('span', { class: 'key canary-part', 'aria-hidden': 'true' }), `canary ${ppmPct(c.share_ppm)}`),
      h('span', {}, h('span', { class: 'key stable-part', 'aria-hidden': 'true' }), `stable ${ppmPct(1000000 - c.share_ppm)}`)));
}

/** The step's numbers, canary beside stable (either may be missing: "–"). */
function canaryNumbers(c) {
  const p99 = (n) => (n && typeof n.p99_seconds === 'number' ? `${num(n.p99_seconds * 1000)} ms` : '–');
  const val = (n, k) => (n && n[k] !== null && n[k] !== undefined ? String(n[k]) : '–');
  const side = (name, n, revision) => ({
    dataset: { side: name },
    cells: [
      `${name} ${rev(n ? n.revision : revision)}`,
      val(n, 'requests'),
      val(n, 'errors'),
      n ? ppmPct(n.error_rate_ppm) : '–',
      val(n, 'denials'),
      p99(n),
      val(n, 'workers'),
    ],
  });
  return table({
    id: 'canary-numbers',
    caption: 'This step so far',
    columns: ['Generation', 'Requests', 'Errors', 'Error rate', 'Denials', 'p99', 'Workers'],
    rows: [side('canary', c.canary, c.revision), side('stable', c.stable, c.stable_revision)],
  });
}

/** The overview's Canary section (`#canary`), in `#canary-wrap` (empty when the environment
 * never had a canary): running, the revisions, step, share, key, time left, the numbers and
 * the Manager's verdict; ended, one line. */
function canaryBlock(env, c) {
  const wrap = h('div', { id: 'canary-wrap' });
  if (!c) return wrap;
  const running = c.state === 'running';
  const stateText = CANARY_STATE[c.state] || c.state;
  const badge = h('span', { class: `badge canary-${c.state}` }, stateText);
  // The hooks (tests, scripts): data-canary-state, -share-ppm, -revision.
  const section = (...children) => h('section', {
    id: 'canary',
    class: `canary ${running ? 'running' : 'ended'}`,
    'aria-labelledby': 'canary-title',
    dataset: { canaryState: c.state, canarySharePpm: String(c.share_ppm), canaryRevision: String(c.revision) },
  }, h('h2', { id: 'canary-title' }, 'Canary ', badge), children);
  const spec = c.spec || {};
  const steps = spec.steps_ppm || [];
  if (!running) {
    return fill(wrap, section(h('p', { class: 'canary-ended' },
      'canary ', revLink(env, c.revision, 'canary-rev'), ' (beside ', revLink(env, c.stable_revision, 'canary-stable-rev'), ') ',
      h('strong', {}, stateText),
      c.ended_at ? [' ', when(c.ended_at), ` (${ago(c.ended_at)})`] : null,
      c.reason ? [': ', c.reason] : null,
      c.rollback_revision !== null && c.rollback_revision !== undefined
        ? ['; the stable content was committed as ', revLink(env, c.rollback_revision, 'canary-rollback-rev')]
        : null,
      '.')));
  }
  const left = typeof c.step_ends_at === 'number' ? c.step_ends_at - Date.now() : null;
  return fill(wrap, section(
    h('p', { class: 'canary-headline' },
      h('strong', {}, 'canary ', revLink(env, c.revision, 'canary-rev'), ' beside ', revLink(env, c.stable_revision, 'canary-stable-rev')),
      ` · step ${c.step + 1} of ${steps.length} · `,
      h('strong', { class: 'canary-share' }, ppmPct(c.share_ppm)), ' of requests'),
    shareBar(c),
    h('dl', { class: 'facts canary-facts' },
      h('dt', {}, 'Steps'), h('dd', {}, steps.concat([1000000]).map(ppmPct).join(' → '), `, each held ${duration((spec.step_secs || 0) * 1000)}`),
      h('dt', {}, 'Key'), h('dd', {}, canaryKey(spec.key)),
      h('dt', {}, 'Step ends'), h('dd', { class: 'canary-left' },
        left === null ? '–' : left > 0 ? [`in ${duration(left)} `, '(', when(c.step_ends_at), ')'] : ['now (', when(c.step_ends_at), ')']),
      h('dt', {}, 'Rolled back when'), h('dd', {},
        `its error rate${spec.denials_are_errors ? ' (denials counted as errors)' : ''} exceeds the stable's by more than ${ppmPct(spec.max_error_rate_ppm)}, or its p99 the stable's by more than ${ppmPct(spec.max_p99_increase_ppm)} (and 5 ms)`),
      h('dt', {}, 'Started'), h('dd', {}, when(c.started_at), ` by ${c.actor}`)),
    canaryNumbers(c),
    c.verdict ? h('p', { class: 'canary-verdict' }, h('strong', {}, 'Verdict: '), c.verdict) : null));
}

export function overview(env) {
  let interval = null; // the stats' interval_ms; null: no stats endpoint, no polling
  let statsAt = 0; // when the stats were last fetched
  let running = false; // a canary runs: polled every CANARY_POLL_MS
  const statsEvery = () => (interval ? Math.max(1000, interval) : null);
  return {
    title: `${env}: overview`,
    async load() {
      const [info, workers, revisions, stats, canary] = await Promise.all([
        api(`/v1/envs/${enc(env)}`),
        api(`/v1/envs/${enc(env)}/workers`),
        api(`/v1/envs/${enc(env)}/revisions?limit=10`),
        loadStats(env),
        loadCanary(env),
      ]);
      const views = await Promise.all(
        revisions.map((r) => api(`/v1/envs/${enc(env)}/revisions/${r.revision}`).catch(() => null)),
      );
      interval = stats ? stats.interval_ms : null;
      statsAt = Date.now();
      running = !!canary && canary.state === 'running';
      return { info, workers, revisions, views, stats, canary };
    },
    /** Milliseconds until the next poll (the stats' interval; 2 s while a canary runs), or
     * null: no polling. */
    pollInterval: () => {
      const delays = [statsEvery(), running ? CANARY_POLL_MS : null].filter((d) => d !== null);
      return delays.length ? Math.min(...delays) : null;
    },
    /** Re-fetches the stats when their interval is up and the canary while it runs: the
     * nodes replacing #stats-charts and #canary-wrap. (A Worker's `served_from` comes with
     * its statistics; the Manager announces a change of it on the stream.) */
    async poll() {
      const every = statsEvery();
      // Within half a canary poll of due counts as due (timers fire a little late).
      const statsDue = every !== null && Date.now() - statsAt >= every - CANARY_POLL_MS / 2;
      const [stats, canary] = await Promise.all([
        statsDue ? loadStats(env) : null,
        running ? loadCanary(env) : null,
      ]);
      const nodes = [];
      if (statsDue) {
        interval = stats ? stats.interval_ms : null;
        statsAt = Date.now();
        nodes.push(statsCharts(stats));
      }
      if (running) {
        running = !!canary && canary.state === 'running';
        nodes.push(canaryBlock(env, canary));
      }
      return nodes;
    },
    render({ info, workers, revisions, views, stats, canary }) {
      const connected = workers.filter((w) => w.connected).length;
      return h('div', {},
        h('h1', { tabindex: '-1' }, `${env} `, h('span', { id: 'current-revision', class: 'rev' }, rev(info.revision))),
        h('p', { class: 'summary' }, `${connected} of ${workers.length} Workers connected · current revision ${rev(info.revision)}`),
        canaryBlock(env, canary),
        workersTable(workers),
        table({
          id: 'revisions',
          caption: 'Latest revisions',
          columns: ['Revision', 'Who', 'When', 'Operation', 'What changed', 'ACKs', 'Propagation', 'Audit'],
          rows: revisions.map((r, i) => {
            const v = views[i];
            return {
              dataset: { revision: String(r.revision) },
              cells: [
                h('a', { href: `#/env/${enc(env)}/r/${r.revision}` }, rev(r.revision)),
                r.actor,
                when(r.committed_at),
                r.operation,
                r.changes.length ? r.changes.map(entity).join(', ') : 'nothing',
                acksCell(v),
                v ? ms(v.propagation_ms) : '–',
                v ? pct(v.audit_completeness) : '–',
              ],
            };
          }),
          empty: 'No revision yet.',
        }),
        h('section', { class: 'chart-section', 'aria-labelledby': 'charts-title' },
          h('h2', { id: 'charts-title' }, 'The last hour'),
          h('div', { class: 'charts' }, statsCharts(stats), propagationChart(revisions, views))),
      );
    },
  };
}

/** `x` ms relative to the commit: "+12 ms", "−3 ms" (a Worker's clock may lag the Manager's). */
const rel = (x) => (x === null || x === undefined ? '–' : `${x < 0 ? '−' : '+'}${Math.abs(x)} ms`);

/** Each Worker's pull, swap and ACK relative to the commit: a table (the numbers, as text)
 * and a bar per Worker with three markers (the same numbers, drawn). */
function timeline(record, reports, expected) {
  const committed = record.committed_at;
  const rows = reports
    .slice()
    .sort((a, b) => a.applied_at - b.applied_at)
    .map((r) => ({
      r,
      pull: typeof r.pulled_at === 'number' ? r.pulled_at - committed : null,
      swap: r.applied_at - committed,
      ack: r.received_at - committed,
    }));
  const marks = rows.flatMap((x) => [x.pull, x.swap, x.ack]).filter((x) => x !== null);
  const lo = Math.min(0, ...marks);
  const hi = Math.max(1, ...marks);
  const width = 600;
  const rowH = 26;
  const pad = 70;
  const right = 20;
  const top = 18;
  const height = top + rowH * rows.length + 4;
  const sx = (v) => pad + ((v - lo) / (hi - lo)) * width;
  const summary = rows
    .map((x) => `${x.r.worker_id}: pull ${x.pull === null ? 'unknown' : rel(x.pull)}, swap ${rel(x.swap)}, ${x.r.status.toUpperCase()} received ${rel(x.ack)}`)
    .join('; ');
  const chart = svg('svg', {
    id: 'timeline-chart',
    class: 'timeline',
    viewBox: `0 0 ${pad + width + right} ${height}`,
    role: 'img',
    'aria-label': `Each Worker's pull, swap and ACK after the commit: ${summary}`,
  });
  chart.append(
    svg('line', { x1: sx(0), y1: top - 4, x2: sx(0), y2: height, class: 'axis' }),
    svg('text', { x: sx(0), y: 11, class: 'tick', 'text-anchor': lo < 0 ? 'middle' : 'start' }, 'commit'),
    svg('text', { x: pad + width, y: 11, class: 'tick', 'text-anchor': 'end' }, rel(hi)),
  );
  rows.forEach((x, i) => {
    const y = top + rowH * i + rowH / 2;
    const at = [x.pull, x.swap, x.ack].filter((v) => v !== null);
    const g = svg('g', { class: `worker ${x.r.status}`, 'data-worker': x.r.worker_id });
    g.append(
      svg('text', { x: 0, y: y + 4, class: 'label' }, x.r.worker_id),
      svg('line', { x1: sx(Math.min(0, ...at)), y1: y, x2: sx(Math.max(...at)), y2: y, class: 'track' }),
    );
    if (x.pull !== null) g.append(svg('circle', { cx: sx(x.pull), cy: y, r: 5, class: 'mark pull', 'data-ms': x.pull }));
    g.append(svg('circle', { cx: sx(x.swap), cy: y, r: 5, class: `mark swap ${x.r.status}`, 'data-ms': x.swap }));
    g.append(svg('rect', { x: sx(x.ack) - 5, y: y - 5, width: 10, height: 10, class: `mark received ${x.r.status}`, 'data-ms': x.ack }));
    chart.append(g);
  });
  const legend = h('ul', { class: 'legend timeline-legend' },
    h('li', {}, h('span', { class: 'key pull', 'aria-hidden': 'true' }), 'pull: the Worker read the revision (Worker clock)'),
    h('li', {}, h('span', { class: 'key swap', 'aria-hidden': 'true' }), 'swap: it serves it (Worker clock)'),
    h('li', {}, h('span', { class: 'key received', 'aria-hidden': 'true' }), 'ACK / NACK received by the Manager (Manager clock)'));
  const pending = (expected || []).filter((id) => !reports.some((r) => r.worker_id === id));
  return h('section', { 'aria-labelledby': 'timeline-title' },
    h('h2', { id: 'timeline-title' }, 'Timeline'),
    h('p', { class: 'muted' }, 'Milliseconds after the commit (Manager clock). Pull and swap are read on the Worker\'s clock, the ACK on the Manager\'s: a Worker whose clock is off shifts its pull and swap.'),
    table({
      id: 'timeline',
      caption: 'Per Worker, ms after the commit',
      columns: ['Worker', 'Report', 'Pull', 'Swap', 'ACK received', 'Error / detail'],
      rows: rows.map(({ r, pull, swap, ack }) => ({
        dataset: { worker: r.worker_id, status: r.status, pull: pull === null ? '' : String(pull), swap: String(swap), ack: String(ack) },
        cells: [
          r.worker_id,
          status(r),
          pull === null ? h('span', { title: 'not reported: an older Worker or a catch-up ACK' }, '–') : rel(pull),
          r.status === 'nack' ? `rejected ${rel(swap)}` : rel(swap),
          rel(ack),
          [r.error ? h('span', { class: 'error-text' }, r.error) : null,
            r.caught_up_to ? `caught up through ${rev(r.caught_up_to)}` : null,
            r.detail || null].filter(Boolean).flatMap((x, i) => (i ? [' · ', x] : [x])),
        ],
      })).concat(pending.map((id) => ({ dataset: { worker: id, status: 'pending' }, cells: [id, 'pending', '–', '–', '–', 'no report yet'] }))),
      empty: 'No Worker has reported on this revision yet.',
    }),
    rows.length ? h('figure', { class: 'timeline-figure' }, chart, legend) : null,
  );
}

const CLASS_TEXT = { hot: 'hot', 'hot-with-drain': 'hot, connections drained', 'restart-required': 'restart required' };

/** How the revision reached the Workers: "hot", "hot, connections drained", or
 * "rollout (restart required: …)". `diff` may be null (unavailable). */
function deliveryText(record, diff) {
  const changes = diff ? diff.changes || [] : [];
  const restart = changes.find((c) => c.hot && c.hot.class === 'restart-required');
  if ((diff && diff.class === 'restart-required') || record.operation === 'rollout') {
    return { kind: 'rollout', text: restart ? `rollout (restart required: ${restart.hot.how})` : 'rollout (restart required)' };
  }
  if (diff && diff.class === 'hot-with-drain') {
    const drained = changes.find((c) => c.hot && c.hot.class === 'hot-with-drain');
    return { kind: 'hot-with-drain', text: drained && drained.hot.how ? `hot, connections drained (${drained.hot.how})` : 'hot, connections drained' };
  }
  return { kind: 'hot', text: diff ? 'hot' : 'hot (applied without a rollout; the field classes are unknown without the diff)' };
}

/** A JSON value of a field: strings as they are, anything else as JSON (subtrees indented). */
function value(v) {
  if (v === undefined) return h('span', { class: 'muted' }, 'absent');
  if (typeof v === 'string') return h('code', {}, v);
  if (v !== null && typeof v === 'object') return h('pre', { class: 'json' }, JSON.stringify(v, null, 2));
  return h('code', {}, JSON.stringify(v));
}

function classBadge(cls, reason) {
  if (!cls || cls === 'hot') return h('span', { class: 'muted' }, 'hot');
  return [h('span', { class: `badge cls-${cls}` }, CLASS_TEXT[cls] || cls), reason ? h('div', { class: 'reason' }, reason) : null];
}

/** A table per changed entity: each field that differs, old → new. */
function diffTables(diff) {
  return (diff.changes || []).map((c, i) => {
    const created = c.old_version === null || c.old_version === undefined;
    const deleted = c.new_version === null || c.new_version === undefined;
    const fields = c.diff || [];
    const title = h('h3', { id: `diff-${i}-title`, class: 'diff-title' },
      h('span', { class: 'entity' }, entity(c)), ' ',
      created ? h('span', { class: 'badge created' }, 'created') : null,
      deleted ? h('span', { class: 'badge deleted' }, 'deleted') : null,
      ' ', h('span', { class: 'versions' }, changeText(c)),
      c.hot && c.hot.class !== 'hot' ? [' ', classBadge(c.hot.class)] : null);
    const head = h('thead', {}, h('tr', {}, ['Field', 'Old', 'New', 'How it applies'].map((t) => h('th', { scope: 'col' }, t))));
    const body = h('tbody', {}, fields.map((f) => {
      let cells;
      if (f.secret) {
        const what = !('old' in f) ? 'added (secret)' : !('new' in f) ? 'removed (secret)' : 'changed (secret)';
        cells = [h('td', { colSpan: 2, class: 'secret' }, what)];
      } else {
        cells = [h('td', { class: 'old' }, value(f.old)), h('td', { class: 'new' }, value(f.new))];
      }
      return h('tr', { dataset: { path: f.path, class: f.class || 'hot', secret: String(!!f.secret) } },
        h('th', { scope: 'row' }, h('code', {}, f.path)),
        cells,
        h('td', {}, classBadge(f.class, f.reason)));
    }));
    if (fields.length === 0) body.append(h('tr', {}, h('td', { colSpan: 4, class: 'empty' }, 'No field-level difference reported.')));
    // The title is outside the table: on a phone the table scrolls sideways in its box,
    // the title stays in view.
    return h('div', { class: 'diff-entity' }, title, h('div', { class: 'table-wrap' },
      h('table', { id: `diff-${i}`, class: 'diff', 'aria-labelledby': `diff-${i}-title`, dataset: { entity: entity(c) } }, head, body)));
  });
}

export function revision(env, n) {
  return {
    title: `${env}: ${rev(n)}`,
    async load() {
      const [v, diff] = await Promise.all([
        api(`/v1/envs/${enc(env)}/revisions/${enc(n)}`),
        // The field-level diff fails on its own (history pruned, an older Manager): the rest
        // of the page still shows, with the reason in place of the diff.
        api(`/v1/envs/${enc(env)}/revisions/${enc(n)}/diff`).then(
          (d) => ({ d }),
          (e) => {
            if (e instanceof ApiError && e.status === 401) throw e;
            return { error: e };
          },
        ),
      ]);
      return { v, diff: diff.d || null, diffError: diff.error || null };
    },
    render({ v, diff, diffError }) {
      const expected = v.expected_workers;
      const delivery = deliveryText(v, diff);
      return h('div', {},
        h('p', { class: 'crumbs' }, h('a', { href: `#/env/${enc(env)}` }, `← ${env} overview`)),
        h('h1', { tabindex: '-1' }, `${env} `, h('span', { class: 'rev' }, rev(v.revision))),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Operation'), h('dd', {}, v.operation),
          h('dt', {}, 'Delivered'), h('dd', { id: 'delivery', dataset: { kind: delivery.kind } }, delivery.text),
          h('dt', {}, 'Actor'), h('dd', { id: 'actor' }, v.actor),
          h('dt', {}, 'Committed'), h('dd', {}, when(v.committed_at)),
          h('dt', {}, 'ACKs'), h('dd', { id: 'acks' }, acksCell(v)),
          h('dt', {}, 'Propagation'), h('dd', {}, ms(v.propagation_ms), v.first_swap_ms !== null && v.first_swap_ms !== undefined ? ` (first swap ${v.first_swap_ms} ms)` : ''),
          h('dt', {}, 'Audit completeness'), h('dd', {}, pct(v.audit_completeness)),
          h('dt', {}, 'Expected Workers'), h('dd', {}, expected ? (expected.join(', ') || 'none') : 'unknown (the Manager restarted since the commit)'),
          v.joined_after && v.joined_after.length ? [h('dt', {}, 'Joined after'), h('dd', {}, v.joined_after.join(', '))] : null,
        ),
        table({
          id: 'changes',
          caption: 'What changed',
          columns: ['Entity', 'Change', 'How it applies', 'Digest'],
          rows: v.changes.map((c) => {
            const d = diff && (diff.changes || []).find((x) => x.kind === c.kind && x.name === c.name);
            return {
              dataset: { entity: entity(c) },
              cells: [entity(c), changeText(c), d && d.hot ? [classBadge(d.hot.class), d.hot.how ? h('div', { class: 'reason' }, d.hot.how) : null] : '–',
                c.digest ? h('code', {}, c.digest.slice(0, 12)) : '–'],
            };
          }),
          empty: 'Nothing changed.',
        }),
        h('section', { id: 'diff', 'aria-labelledby': 'diff-title' },
          h('h2', { id: 'diff-title' }, diff ? `Field by field (${rev(diff.previous_revision)} → ${rev(diff.revision)})` : 'Field by field'),
          diffError
            ? h('p', { class: 'error', id: 'diff-error' }, `No field-level diff: ${diffError instanceof ApiError ? diffError.message : String(diffError)}`)
            : diffTables(diff),
          diff && (diff.changes || []).length === 0 ? h('p', { class: 'muted' }, 'Nothing changed.') : null),
        timeline(v, v.reports, expected),
      );
    },
  };
}

const PAGE = 50;
const MAX_PAGE = 500;

/** Whether this token may read the audit trail of every environment (no `env`): asked
 * once per token, by trying; a token scoped to environments gets 403. */
let scope = { key: null, all: null };
async function readsAllEnvs() {
  const key = token.get();
  if (scope.key === key && scope.all !== null) return scope.all;
  let all;
  try {
    await api('/v1/audit?limit=1');
    all = true;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403) throw e;
    all = false;
  }
  scope = { key, all };
  return all;
}

/** unix ms → the value of an <input type=datetime-local> (local time, to the minute). */
function localInput(msValue) {
  const d = new Date(msValue);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** #/env/ENV/audit?all=1&entity=…&actor=…&since=MS&until=MS&before=ID&limit=N */
export function audit(env, params, envs = []) {
  const wantAll = params.get('all') === '1';
  const entityFilter = params.get('entity') || '';
  const actor = params.get('actor') || '';
  const since = /^\d+$/.test(params.get('since') || '') ? Number(params.get('since')) : null;
  const until = /^\d+$/.test(params.get('until') || '') ? Number(params.get('until')) : null;
  const before = /^\d+$/.test(params.get('before') || '') ? params.get('before') : null;
  const size = Math.min(MAX_PAGE, Math.max(1, Number(params.get('limit')) | 0 || PAGE));
  const link = (target, { all = wantAll, cursor = null } = {}) => {
    const q = new URLSearchParams();
    if (all) q.set('all', '1');
    if (entityFilter) q.set('entity', entityFilter);
    if (actor) q.set('actor', actor);
    if (since !== null) q.set('since', String(since));
    if (until !== null) q.set('until', String(until));
    if (cursor) q.set('before', String(cursor));
    if (size !== PAGE) q.set('limit', String(size));
    const s = q.toString();
    return `#/env/${enc(target)}/audit${s ? `?${s}` : ''}`;
  };
  return {
    title: wantAll ? 'audit: all environments' : `${env}: audit`,
    async load() {
      const allowed = await readsAllEnvs();
      const all = wantAll && allowed;
      // One more than a page: whether there is an older page.
      const q = new URLSearchParams({ limit: String(size + 1) });
      if (!all) q.set('env', env);
      if (entityFilter) q.set('entity', entityFilter);
      if (actor) q.set('actor', actor);
      if (since !== null) q.set('since', String(since));
      if (until !== null) q.set('until', String(until));
      if (before) q.set('before', before);
      const records = await api(`/v1/audit?${q}`);
      return { records: records.slice(0, size), more: records.length > size, all, allowed };
    },
    render({ records, more, all, allowed }) {
      const envSelect = h('select', { id: 'audit-env' },
        allowed ? h('option', { value: '*', selected: all }, 'All environments') : null,
        envs.map((e) => h('option', { value: e.name, selected: !all && e.name === env }, e.name)));
      if (!envs.some((e) => e.name === env)) envSelect.append(h('option', { value: env }, env));
      envSelect.value = all ? '*' : env;
      const entityInput = h('input', { id: 'audit-entity', type: 'text', value: entityFilter, placeholder: 'proxy/payments or worker', spellcheck: 'false' });
      const actorInput = h('input', { id: 'audit-actor', type: 'text', value: actor, placeholder: 'admin (tok_…)', spellcheck: 'false' });
      const fromInput = h('input', { id: 'audit-from', type: 'datetime-local', value: since === null ? '' : localInput(since) });
      const toInput = h('input', { id: 'audit-to', type: 'datetime-local', value: until === null ? '' : localInput(until) });
      const problem = h('p', { id: 'audit-form-error', class: 'error', role: 'alert' });
      const form = h('form', { class: 'filters', role: 'search', method: 'post', 'aria-label': 'Audit filters' },
        h('div', {}, h('label', { for: 'audit-env' }, 'Records of'), envSelect),
        h('div', {}, h('label', { for: 'audit-entity' }, 'Entity'), entityInput),
        h('div', {}, h('label', { for: 'audit-actor' }, 'Actor'), actorInput),
        h('div', {}, h('label', { for: 'audit-from' }, 'From (local time)'), fromInput),
        h('div', {}, h('label', { for: 'audit-to' }, 'To (local time)'), toInput),
        h('button', { type: 'submit' }, 'Filter'),
        h('a', { href: `#/env/${enc(env)}/audit`, class: 'clear' }, 'Clear filters'));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        const from = fromInput.value ? new Date(fromInput.value).getTime() : null;
        // "To" names a minute: everything up to its end.
        const to = toInput.value ? new Date(toInput.value).getTime() + 59999 : null;
        if (Number.isNaN(from) || Number.isNaN(to)) {
          problem.textContent = 'From and To must be dates and times.';
          return;
        }
        if (from !== null && to !== null && from > to) {
          problem.textContent = 'From is after To.';
          return;
        }
        const q = new URLSearchParams();
        const picked = envSelect.value;
        if (picked === '*') q.set('all', '1');
        if (entityInput.value.trim()) q.set('entity', entityInput.value.trim());
        if (actorInput.value.trim()) q.set('actor', actorInput.value.trim());
        if (from !== null) q.set('since', String(from));
        if (to !== null) q.set('until', String(to));
        if (size !== PAGE) q.set('limit', String(size));
        const s = q.toString();
        location.hash = `#/env/${enc(picked === '*' ? env : picked)}/audit${s ? `?${s}` : ''}`;
      });
      const results = h('div', { id: 'audit-results' }, this.results({ records, more, all }));
      return h('div', {},
        h('h1', { tabindex: '-1' }, all ? 'Audit trail: all environments' : `${env} audit trail`),
        wantAll && !all ? h('p', { class: 'note', role: 'status' }, `This token may read only the audit trail of its environments: showing ${env}.`) : null,
        form,
        problem,
        results);
    },
    /** A refresh (the stream): the records and pager only; the form keeps what is typed. */
    update(data) {
      const results = document.getElementById('audit-results');
      if (results) fill(results, this.results(data));
    },
    results({ records, more, all }) {
      const columns = ['When', all ? 'Environment' : null, 'Actor', 'Operation', 'Entity', 'Versions', 'Revision', 'Detail'].filter(Boolean);
      const range = since !== null || until !== null
        ? ` from ${since === null ? 'the start' : new Date(since).toISOString().slice(0, 16).replace('T', ' ') + 'Z'} to ${until === null ? 'now' : new Date(until).toISOString().slice(0, 19).replace('T', ' ') + 'Z'}`
        : '';
      return [
        h('p', { id: 'audit-page', class: 'muted' },
          `Newest first${before ? `, older than record ${before}` : ''}${range}; ${size} per page.`),
        table({
          id: 'audit',
          caption: 'Audit records',
          columns,
          rows: records.map((r) => ({
            dataset: { id: String(r.id), entity: `${r.entity_kind.toLowerCase()}/${r.entity_name}`, env: r.env || '' },
            cells: [
              when(r.at),
              all ? (r.env || '–') : null,
              r.actor,
              r.operation,
              `${r.entity_kind.toLowerCase()}/${r.entity_name}`,
              `${r.old_version ?? '–'} → ${r.new_version ?? '–'}`,
              r.revision !== null && r.revision !== undefined && r.env
                ? h('a', { href: `#/env/${enc(r.env)}/r/${r.revision}` }, rev(r.revision))
                : rev(r.revision),
              r.detail || '',
            ].filter((c) => c !== null),
          })),
          empty: before ? 'No older record matches.' : 'No audit record matches.',
        }),
        h('nav', { class: 'pager', 'aria-label': 'Audit pages' },
          before ? h('a', { href: link(env), id: 'audit-newest', class: 'button' }, 'Newest') : null,
          more && records.length ? h('a', { href: link(env, { cursor: records.at(-1).id }), rel: 'next', id: 'audit-older', class: 'button' }, 'Older') : null),
      ];
    },
  };
}

export function commands(env) {
  const rows = [
    ['See what a change would do (field-level diff, hot or restart)', `switchyard plan --env ${env} ./manifests`],
    ['Apply it and wait for every Worker\'s ACK', `switchyard apply --env ${env} ./manifests --wait --timeout 60s`],
    ['Roll back to an earlier revision', `switchyard rollback --env ${env} --to-revision N --wait`],
    ['Workers, lag, latest revisions', `switchyard status --env ${env}`],
    ['The audit trail', `switchyard audit --env ${env} --since 1h`],
    ['A viewer token for this dashboard', `switchyard manager token create --data ./switchyard-data --role viewer --env ${env}`],
  ];
  return {
    title: `${env}: commands`,
    load: async () => null,
    render() {
      return h('div', {},
        h('h1', { tabindex: '-1' }, 'Commands'),
        h('p', {}, 'The dashboard is read-only: changes go through the CLI (APIops). The common actions:'),
        h('dl', { class: 'commands' }, rows.map(([what, cmd]) => [h('dt', {}, what), h('dd', {}, h('code', {}, cmd))])),
      );
    },
  };
}

export function message(title, text) {
  return { title, load: async () => null, render: () => h('div', {}, h('h1', { tabindex: '-1' }, title), h('p', {}, text)) };
}

export { fill };
