// Building DOM from data: text always goes through textContent, never innerHTML.

/** h('td', {class: 'x', dataset: {worker: 'w1'}}, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A table with a caption, column headers (scope=col) and rows of cells; the first cell of
 * each row is a row header (scope=row). `rows` are {cells, dataset, class}. */
export function table({ id, caption, columns, rows, empty }) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c))));
  const body = h('tbody');
  for (const row of rows) {
    const [first, ...rest] = row.cells;
    body.append(
      h('tr', { dataset: row.dataset, class: row.class },
        h('th', { scope: 'row' }, first),
        rest.map((c) => h('td', {}, c))),
    );
  }
  if (rows.length === 0 && empty) {
    body.append(h('tr', {}, h('td', { colSpan: columns.length, class: 'empty' }, empty)));
  }
  return h('div', { class: 'table-wrap' }, h('table', { id }, h('caption', {}, caption), head, body));
}

export const rev = (n) => (n === null || n === undefined ? '–' : `r${n}`);

export function when(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  const iso = d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
  return h('time', { datetime: d.toISOString(), title: ago(ms) }, iso);
}

export function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export const status = (report) =>
  h('span', { class: `badge ${report.status}` }, `${report.status.toUpperCase()} ${rev(report.revision)}`);

export const entity = (c) => `${c.kind.toLowerCase()}/${c.name}`;
