// Small dependency-free SVG charts: built with createElementNS and textContent (never
// innerHTML), styled by classes in app.css (the CSP forbids inline styles). Each chart is a
// <figure> with a <figcaption> title; the <svg> has role=img and an aria-label summarising
// the latest values, and a legend lists them as text.

import { h, svg } from './dom.js';

const W = 480;
const H = 180;
const PAD = { left: 52, right: 12, top: 12, bottom: 26 };

/** 1234.5 → "1230", 0.25 → "0.25": at most 3 significant digits. */
export function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 100) return String(Math.round(v));
  return String(Number(v.toPrecision(3)));
}

const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);

function frame(id, title, body, legend, extra = {}) {
  return h('figure', { id, class: 'chart', dataset: extra },
    h('figcaption', {}, title),
    body,
    legend ? h('ul', { class: 'legend' }, legend) : null);
}

function emptyChart(id, title, text) {
  return frame(id, title, h('p', { class: 'chart-empty' }, text), null, { points: '0' });
}

function axes(chart, { yMax, yLabel, xLeft, xRight }) {
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  chart.append(
    svg('line', { x1: x0, y1: y0, x2: x1, y2: y0, class: 'axis' }),
    svg('line', { x1: x0, y1: y0, x2: x0, y2: y1, class: 'axis' }),
    svg('line', { x1: x0, y1: y1, x2: x1, y2: y1, class: 'grid' }),
    svg('text', { x: x0 - 6, y: y1 + 4, class: 'tick', 'text-anchor': 'end' }, num(yMax)),
    svg('text', { x: x0 - 6, y: y0, class: 'tick', 'text-anchor': 'end' }, '0'),
    svg('text', { x: 4, y: (y0 + y1) / 2 + 4, class: 'tick' }, yLabel),
  );
  if (xLeft !== undefined) chart.append(svg('text', { x: x0, y: H - 6, class: 'tick' }, xLeft));
  if (xRight !== undefined) chart.append(svg('text', { x: x1, y: H - 6, class: 'tick', 'text-anchor': 'end' }, xRight));
}

/**
 * A line chart over time. `series`: [{name, cls, points: [[ms, value], …]}] (ascending).
 * `unit` follows each value in the summary ("req/s", "MB").
 */
export function lineChart({ id, title, unit, series, empty }) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return emptyChart(id, title, empty || 'No data yet.');
  const tMin = Math.min(...all.map((p) => p[0]));
  const tMax = Math.max(...all.map((p) => p[0]));
  const yMax = Math.max(...all.map((p) => p[1])) || 1;
  const sx = (t) => PAD.left + (tMax === tMin ? (W - PAD.left - PAD.right) : ((t - tMin) / (tMax - tMin)) * (W - PAD.left - PAD.right));
  const sy = (v) => H - PAD.bottom - (Math.max(0, v) / yMax) * (H - PAD.top - PAD.bottom);
  const latest = series.map((s) => `${s.name} ${num(s.points.at(-1)?.[1])} ${unit}`);
  const summary = `${title}, ${hhmm(tMin)} to ${hhmm(tMax)} UTC, latest: ${latest.join(', ')}`;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, preserveAspectRatio: 'xMidYMid meet' });
  axes(chart, { yMax, yLabel: unit, xLeft: hhmm(tMin), xRight: `${hhmm(tMax)} UTC` });
  for (const s of series) {
    if (s.points.length === 0) continue;
    const pts = s.points.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ');
    if (s.points.length > 1) chart.append(svg('polyline', { points: pts, class: `line ${s.cls}`, 'data-series': s.name }));
    const [t, v] = s.points.at(-1);
    chart.append(svg('circle', { cx: sx(t).toFixed(1), cy: sy(v).toFixed(1), r: 3, class: `dot ${s.cls}`, 'data-series': s.name }));
  }
  const legend = series.map((s) => h('li', { dataset: { series: s.name } },
    h('span', { class: `swatch ${s.cls}`, 'aria-hidden': 'true' }),
    `${s.name}: ${num(s.points.at(-1)?.[1])} ${unit}`));
  return frame(id, title, chart, legend, { points: String(Math.max(...series.map((s) => s.points.length))) });
}

/** A bar chart: `bars` [{label, value (null: no value)}], left to right. */
export function barChart({ id, title, unit, bars, empty }) {
  if (bars.length === 0) return emptyChart(id, title, empty || 'No data yet.');
  const yMax = Math.max(1, ...bars.map((b) => b.value || 0));
  const inner = W - PAD.left - PAD.right;
  const slot = inner / bars.length;
  const bw = Math.min(48, slot * 0.7);
  const sy = (v) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
  const last = bars.at(-1);
  const summary = `${title}: ${bars.map((b) => `${b.label} ${b.value === null ? 'none' : `${num(b.value)} ${unit}`}`).join(', ')}; latest ${last.label}`;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, preserveAspectRatio: 'xMidYMid meet' });
  axes(chart, { yMax, yLabel: unit });
  bars.forEach((b, i) => {
    const cx = PAD.left + slot * i + slot / 2;
    const g = svg('g', { class: 'slot', 'data-label': b.label, 'data-value': b.value === null ? 'none' : b.value });
    if (b.value !== null) {
      const y = sy(b.value);
      g.append(svg('rect', { x: (cx - bw / 2).toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: Math.max(1, H - PAD.bottom - y).toFixed(1), class: 'bar' },
        svg('title', {}, `${b.label}: ${num(b.value)} ${unit}`)));
      g.append(svg('text', { x: cx, y: Math.max(PAD.top + 10, y - 3), class: 'value', 'text-anchor': 'middle' }, num(b.value)));
    } else {
      g.append(svg('text', { x: cx, y: H - PAD.bottom - 4, class: 'value', 'text-anchor': 'middle' }, '–'));
    }
    g.append(svg('text', { x: cx, y: H - 8, class: 'tick', 'text-anchor': 'middle' }, b.label));
    chart.append(g);
  });
  return frame(id, title, chart, null, { points: String(bars.filter((b) => b.value !== null).length) });
}
