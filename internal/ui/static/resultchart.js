// Charts for arbitrary query results: the SQL console and dashboards.

import {h, isNumericType, cellText} from './dom.js';
import {lineChart, barChart} from './chart.js';
import {SEVERITIES} from './sqlutil.js';

const TIME_NAMES = /^(t|ts|time|timestamp|bucket|minute|hour|day|date|period)$/i;
const MAX_SERIES = 10;
const MAX_BARS = 30;
const MAX_FILL = 2000; // points per series up to which gaps are filled with zeros

// severityColor gives series named after severities (INFO, WARN2, ...)
// the colours the rest of the UI uses for them.
function severityColor(label) {
  const name = String(label).toUpperCase().replace(/[0-9]+$/, '');
  const sv = SEVERITIES.find((x) => x.name === name);
  return sv ? sv.color : undefined;
}

// fillGaps adds zero points where a series lacks a time the others have
// or that the regular step between times implies, so that lines over
// bucketed counts drop to zero instead of bridging empty buckets.
function fillGaps(series) {
  const xs = [...new Set(series.flatMap((se) => se.points.map((p) => p[0])))].sort((a, b) => a - b);
  if (xs.length < 2) return;
  let step = Infinity;
  for (let i = 1; i < xs.length; i++) step = Math.min(step, xs[i] - xs[i - 1]);
  const regular = xs.every((x) => (x - xs[0]) % step === 0);
  const n = (xs[xs.length - 1] - xs[0]) / step + 1;
  const all = regular && n <= MAX_FILL ? Array.from({length: n}, (_, i) => xs[0] + i * step) : xs;
  if (all.length * series.length > 20 * MAX_FILL) return;
  for (const se of series) {
    const have = new Map(se.points);
    se.points = all.map((x) => [x, have.get(x) || 0]);
  }
}

function timeColumn(doc) {
  const cols = doc.columns || [];
  const typed = cols.find((c) => /^(TIMESTAMP|DATE)/.test(c.type));
  if (typed) return {name: typed.name, parse: (v) => Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(v) ? v + 'T00:00:00Z' : v)};
  // An epoch-milliseconds bucket column, as the UI's own queries make.
  const named = cols.find((c) => TIME_NAMES.test(c.name) && isNumericType(c.type) &&
    doc.rows.length > 0 && doc.rows.every((r) => Number(r[c.name]) > 1e11));
  if (named) return {name: named.name, parse: Number};
  return null;
}

// analyse finds how to chart a result: a line over time when it has a
// time column and a numeric one (a text column, if any, splits series), a
// bar chart when it has a label and a number, else nothing.
export function analyse(doc, prefer) {
  const cols = doc.columns || [];
  if (!doc.rows || doc.rows.length === 0 || cols.length < 2) return null;
  const time = timeColumn(doc);
  const value = cols.find((c) => isNumericType(c.type) && (!time || c.name !== time.name));
  if (!value) return null;
  if (time && prefer !== 'bar') {
    const seriesCol = cols.find((c) => c.name !== time.name && c.name !== value.name && !isNumericType(c.type));
    const bySeries = new Map();
    for (const r of doc.rows) {
      const t = time.parse(r[time.name]);
      const v = Number(r[value.name]);
      if (!Number.isFinite(t) || !Number.isFinite(v)) continue;
      const key = seriesCol ? cellText(r[seriesCol.name]) || '(empty)' : value.name;
      if (!bySeries.has(key)) bySeries.set(key, []);
      bySeries.get(key).push([t, v]);
    }
    const series = [...bySeries].map(([label, points]) => ({label, points, color: severityColor(label), total: points.reduce((a, p) => a + p[1], 0)}))
      .sort((a, b) => b.total - a.total).slice(0, MAX_SERIES);
    fillGaps(series);
    if (series.length) return {kind: 'line', series};
  }
  const label = cols.find((c) => c.name !== value.name && !isNumericType(c.type)) || cols.find((c) => c.name !== value.name);
  const items = doc.rows.slice(0, MAX_BARS).map((r) => ({label: cellText(r[label.name], label.type), value: Number(r[value.name]) || 0}));
  return {kind: 'bar', items};
}

// chartFor draws a result, or returns null if it has no chartable shape.
export function chartFor(doc, prefer, width = 1000) {
  const a = analyse(doc, prefer);
  if (!a) return null;
  const el = a.kind === 'line' ? lineChart({series: a.series, width}) : barChart({items: a.items, width});
  return h('div', {class: 'chart-wrap', 'data-kind': a.kind}, el);
}
