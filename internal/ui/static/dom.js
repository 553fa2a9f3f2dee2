// DOM helpers. Text always goes in through text nodes, never as HTML.

const SVGNS = 'http://www.w3.org/2000/svg';

function build(el, props, children) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// h creates an HTML element: h('td', {class: 'num'}, 'text', child...).
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

// s creates an SVG element.
export function s(tag, props, ...children) {
  return build(document.createElementNS(SVGNS, tag), props, children);
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const nf = new Intl.NumberFormat('en-US');
export function fmtNum(n) {
  if (n === null || n === undefined || n === '') return '';
  const x = Number(n);
  if (!Number.isFinite(x)) return String(n);
  if (Number.isInteger(x)) return nf.format(x);
  return nf.format(Math.round(x * 100) / 100);
}

// fmtTime renders an RFC 3339 string or epoch milliseconds in UTC as
// "YYYY-MM-DD HH:MM:SS[.fff]".
export function fmtTime(v) {
  if (v === null || v === undefined) return '';
  const iso = typeof v === 'number' ? new Date(v).toISOString() : String(v);
  // Fractions as milliseconds, or microseconds when there are any.
  return iso.replace('T', ' ').replace(/Z$/, '').replace(/\.(\d+)$/, (_, f) => {
    if (/^0+$/.test(f)) return '';
    return '.' + (f.length <= 3 ? f.padEnd(3, '0') : f.slice(0, 6).padEnd(6, '0'));
  });
}

export function fmtDuration(ms) {
  const units = [['d', 86400000], ['h', 3600000], ['m', 60000], ['s', 1000]];
  for (const [u, n] of units) if (ms >= n && ms % n === 0) return `${ms / n}${u}`;
  for (const [u, n] of units) if (ms >= n) return `${Math.round(ms / n * 10) / 10}${u}`;
  return `${ms}ms`;
}

// cellText renders any JSON value of a result for a table cell.
export function cellText(v, type) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  if (typeof v === 'string' && type && /^TIMESTAMP/.test(type)) return fmtTime(v);
  return String(v);
}

export function isNumericType(t) {
  return /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL|REAL)/.test(t || '');
}

// resultTable renders a /v1/sql result as a table; limit bounds the rows
// drawn.
export function resultTable(doc, limit = 1000) {
  const cols = doc.columns || [];
  const numeric = cols.map((c) => isNumericType(c.type));
  return h('table', {class: 'grid'},
    h('thead', {}, h('tr', {}, cols.map((c, i) => h('th', {class: numeric[i] ? 'num' : null, title: c.type, scope: 'col'}, c.name)))),
    h('tbody', {}, (doc.rows || []).slice(0, limit).map((r) =>
      h('tr', {}, cols.map((c, i) => h('td', {class: numeric[i] ? 'num' : null}, numeric[i] ? fmtNum(r[c.name]) : cellText(r[c.name], c.type)))))));
}

let toastTimer;
export function toast(msg) {
  const el = document.getElementById('toast');
  el.textContent = msg;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.textContent = ''; }, 2500);
}

export function errorBox(err) {
  return h('div', {class: 'error', role: 'alert'}, err && err.message ? err.message : String(err));
}

// isAbort reports whether err comes from an aborted request.
export function isAbort(err) {
  return err && (err.name === 'AbortError' || err.code === 'canceled');
}

// Loads runs a view's loads one at a time and skips reloads that would
// show the same thing: begin aborts the running load and returns the
// signal of the new one; changed says whether key differs from the last
// shown one (or force is set), remembering it; reset forgets both.
export class Loads {
  constructor() { this.ac = null; this.key = null; }
  changed(key, force) {
    if (!force && key === this.key) return false;
    this.key = key;
    return true;
  }
  begin() {
    if (this.ac) this.ac.abort();
    this.ac = new AbortController();
    return this.ac.signal;
  }
  reset() {
    if (this.ac) this.ac.abort();
    this.ac = null;
    this.key = null;
  }
}
