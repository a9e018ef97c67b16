// The views, rendered from the admin API's JSON. Each is {title, load(), render(data)}:
// load fetches, render builds DOM (h/textContent only).

import { api, enc, ApiError } from './api.js';
import { lineChart, barChart } from './charts.js';
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
      dataset: { worker: w.id, connected: String(w.connected) },
      cells: [
        w.id,
        w.revision === null || w.revision === undefined ? '–' : `ACK ${rev(w.revision)}`,
        w.lag === null || w.lag === undefined ? '–' : String(w.lag),
        report,
        w.version || '–',
        conn,
        w.address || '–',
      ],
    };
  });
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

export function overview(env) {
  let interval = null; // the stats' interval_ms; null: no stats endpoint, no polling
  return {
    title: `${env}: overview`,
    async load() {
      const [info, workers, revisions, stats] = await Promise.all([
        api(`/v1/envs/${enc(env)}`),
        api(`/v1/envs/${enc(env)}/workers`),
        api(`/v1/envs/${enc(env)}/revisions?limit=10`),
        loadStats(env),
      ]);
      const views = await Promise.all(
        revisions.map((r) => api(`/v1/envs/${enc(env)}/revisions/${r.revision}`).catch(() => null)),
      );
      interval = stats ? stats.interval_ms : null;
      return { info, workers, revisions, views, stats };
    },
    /** Milliseconds until the next poll of the stats, or null: no polling. */
    pollInterval: () => (interval ? Math.max(1000, interval) : null),
    /** Re-fetches the stats: the new charts (a), (b), (d), to replace #stats-charts. */
    async poll() {
      const stats = await loadStats(env);
      interval = stats ? stats.interval_ms : null;
      return statsCharts(stats);
    },
    render({ info, workers, revisions, views, stats }) {
      const connected = workers.filter((w) => w.connected).length;
      return h('div', {},
        h('h1', { tabindex: '-1' }, `${env} `, h('span', { id: 'current-revision', class: 'rev' }, rev(info.revision))),
        h('p', { class: 'summary' }, `${connected} of ${workers.length} Workers connected · current revision ${rev(info.revision)}`),
        table({
          id: 'workers',
          caption: 'Workers',
          columns: ['Worker', 'Serves', 'Lag', 'Last report', 'Version', 'Connection', 'Address'],
          rows: workerRows(workers),
          empty: 'No Worker has connected to this environment yet.',
        }),
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

function timeline(record, reports, expected) {
  const committed = record.committed_at;
  const rows = reports
    .slice()
    .sort((a, b) => a.applied_at - b.applied_at)
    .map((r) => ({ r, at: r.applied_at - committed }));
  const max = Math.max(1, ...rows.map((x) => x.at));
  const width = 600;
  const rowH = 22;
  const pad = 90;
  const chart = svg('svg', {
    class: 'timeline',
    viewBox: `0 0 ${width + pad + 150} ${rowH * (rows.length + 1)}`,
    role: 'img',
    'aria-label': `Each Worker's report after the commit (0 ms to ${max} ms)`,
  });
  chart.append(svg('line', { x1: pad, y1: 0, x2: pad, y2: rowH * (rows.length + 1), class: 'axis' }));
  rows.forEach(({ r, at }, i) => {
    const y = rowH * i + rowH / 2 + 4;
    const x = pad + (Math.max(0, at) / max) * width;
    chart.append(svg('text', { x: 0, y: y + 4, class: 'label' }, r.worker_id));
    chart.append(svg('line', { x1: pad, y1: y, x2: x, y2: y, class: `bar ${r.status}` }));
    chart.append(svg('circle', { cx: x, cy: y, r: 5, class: `dot ${r.status}` }));
    chart.append(svg('text', { x: x + 8, y: y + 4, class: 'label' }, `${r.status.toUpperCase()} +${at} ms`));
  });
  const pending = (expected || []).filter((id) => !reports.some((r) => r.worker_id === id));
  return h('div', {},
    table({
      id: 'timeline',
      caption: 'Timeline: each Worker\'s report relative to the commit',
      columns: ['Worker', 'Report', 'Swapped', 'Received', 'Error / detail'],
      rows: rows.map(({ r, at }) => ({
        dataset: { worker: r.worker_id, status: r.status },
        cells: [
          r.worker_id,
          status(r),
          `${at < 0 ? '−' : '+'}${Math.abs(at)} ms after commit`,
          `+${r.received_at - committed} ms`,
          [r.error ? h('span', { class: 'error-text' }, r.error) : null,
            r.caught_up_to ? `caught up through ${rev(r.caught_up_to)}` : null,
            r.detail || null].filter(Boolean).flatMap((x, i) => (i ? [' · ', x] : [x])),
        ],
      })).concat(pending.map((id) => ({ dataset: { worker: id, status: 'pending' }, cells: [id, 'pending', '–', '–', 'no report yet'] }))),
      empty: 'No Worker has reported on this revision yet.',
    }),
    rows.length ? chart : null,
  );
}

export function revision(env, n) {
  return {
    title: `${env}: ${rev(n)}`,
    load: () => api(`/v1/envs/${enc(env)}/revisions/${enc(n)}`),
    render(v) {
      const expected = v.expected_workers;
      return h('div', {},
        h('p', { class: 'crumbs' }, h('a', { href: `#/env/${enc(env)}` }, `← ${env} overview`)),
        h('h1', { tabindex: '-1' }, `${env} `, h('span', { class: 'rev' }, rev(v.revision))),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Operation'), h('dd', {}, v.operation),
          h('dt', {}, 'Actor'), h('dd', {}, v.actor),
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
          columns: ['Entity', 'Change', 'Digest'],
          rows: v.changes.map((c) => ({
            dataset: { entity: entity(c) },
            cells: [entity(c), changeText(c), c.digest ? h('code', {}, c.digest.slice(0, 12)) : '–'],
          })),
          empty: 'Nothing changed.',
        }),
        timeline(v, v.reports, expected),
      );
    },
  };
}

const PAGE = 50;

export function audit(env, params) {
  const page = Math.max(0, Number(params.get('page') || 0) | 0);
  const entityFilter = params.get('entity') || '';
  const actor = params.get('actor') || '';
  const link = (p) => {
    const q = new URLSearchParams();
    if (entityFilter) q.set('entity', entityFilter);
    if (actor) q.set('actor', actor);
    if (p) q.set('page', String(p));
    const s = q.toString();
    return `#/env/${enc(env)}/audit${s ? `?${s}` : ''}`;
  };
  return {
    title: `${env}: audit`,
    async load() {
      // The API has no cursor: a page is a slice of the newest (page + 1) × 50 records.
      const limit = Math.min(1000, (page + 1) * PAGE);
      const q = new URLSearchParams({ env, limit: String(limit) });
      if (entityFilter) q.set('entity', entityFilter);
      if (actor) q.set('actor', actor);
      const records = await api(`/v1/audit?${q}`);
      return { records: records.slice(page * PAGE, (page + 1) * PAGE), more: records.length === limit && limit < 1000 };
    },
    render({ records, more }) {
      const entityInput = h('input', { id: 'audit-entity', type: 'text', value: entityFilter, placeholder: 'proxy/payments or worker' });
      const actorInput = h('input', { id: 'audit-actor', type: 'text', value: actor, placeholder: 'admin (tok_…)' });
      const form = h('form', { class: 'filters', role: 'search', method: 'post' },
        h('div', {}, h('label', { for: 'audit-entity' }, 'Entity'), entityInput),
        h('div', {}, h('label', { for: 'audit-actor' }, 'Actor'), actorInput),
        h('button', { type: 'submit' }, 'Filter'));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        const q = new URLSearchParams();
        if (entityInput.value.trim()) q.set('entity', entityInput.value.trim());
        if (actorInput.value.trim()) q.set('actor', actorInput.value.trim());
        const s = q.toString();
        location.hash = `#/env/${enc(env)}/audit${s ? `?${s}` : ''}`;
      });
      return h('div', {},
        h('h1', { tabindex: '-1' }, `${env} audit trail`),
        form,
        table({
          id: 'audit',
          caption: `Audit records, newest first (page ${page + 1})`,
          columns: ['When', 'Actor', 'Operation', 'Entity', 'Versions', 'Revision', 'Detail'],
          rows: records.map((r) => ({
            dataset: { id: String(r.id) },
            cells: [
              when(r.at),
              r.actor,
              r.operation,
              `${r.entity_kind.toLowerCase()}/${r.entity_name}`,
              `${r.old_version ?? '–'} → ${r.new_version ?? '–'}`,
              rev(r.revision),
              r.detail || '',
            ],
          })),
          empty: 'No audit record matches.',
        }),
        h('nav', { class: 'pager', 'aria-label': 'Audit pages' },
          page > 0 ? h('a', { href: link(page - 1), rel: 'prev' }, 'Previous page') : null,
          more ? h('a', { href: link(page + 1), rel: 'next', id: 'next-page' }, 'Next page') : null),
      );
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
