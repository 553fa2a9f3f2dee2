// Charts drawn as SVG: stacked time histograms, lines, horizontal bars
// and sparklines. Charts use a fixed viewBox and scale to their box.

import {s, h, fmtNum, fmtTime, fmtDuration} from './dom.js';

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const M = {left: 64, right: 14, top: 10, bottom: 30};

// chartWidth is the width to draw for a container: its own, so that text
// keeps its size, or 1000 while it is not laid out.
export function chartWidth(el) {
  const w = el && el.clientWidth;
  return w && w > 200 ? Math.round(w) : 1000;
}

// ticks returns "nice" tick values from 0 to at least max.
function ticks(max, n = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((st) => st >= raw);
  const out = [];
  for (let v = 0; v < max + step; v += step) out.push(v);
  return out;
}

const DAY = 86400000;
const MONTH = 30.44 * DAY;

// timeTicks returns about n round times between from and to: whole
// seconds, minutes, hours or days, or first days of months or years.
function timeTicks(from, to, n = 6) {
  const span = to - from;
  if (span / DAY > 2 * n) {
    const k = [1, 2, 3, 6, 12, 24, 60, 120].find((m) => span / (m * MONTH) <= n) || 120;
    const out = [];
    const d = new Date(from);
    let m = d.getUTCFullYear() * 12 + d.getUTCMonth() + 1;
    m = Math.ceil(m / k) * k;
    for (;; m += k) {
      const t = Date.UTC(Math.floor(m / 12), m % 12, 1);
      if (t > to) break;
      out.push(t);
    }
    return {ticks: out, step: k * MONTH, months: k};
  }
  const steps = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 172800, 604800].map((x) => x * 1000);
  const step = steps.find((st) => span / st <= n) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) out.push(t);
  return {ticks: out, step};
}

function timeLabel(t, step, months) {
  const iso = new Date(t).toISOString();
  if (months >= 12) return iso.slice(0, 4);
  if (months) return iso.slice(0, 7);
  if (step >= DAY) return iso.slice(0, 10);
  if (step >= 60000) return iso.slice(5, 16).replace('T', ' ');
  return iso.slice(11, 19);
}

function frame(W, height, yMax, label) {
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': label});
  const plotH = height - M.top - M.bottom;
  const yt = ticks(yMax);
  const top = yt[yt.length - 1];
  const y = (v) => M.top + plotH - (v / top) * plotH;
  const g = s('g', {class: 'axis'});
  for (const v of yt) {
    g.append(s('line', {class: 'gridline', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v)}));
    g.append(s('text', {x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end'}, fmtNum(v)));
  }
  svg.append(g);
  return {svg, y, plotH, plotW: W - M.left - M.right};
}

function xAxis(svg, W, height, from, to, x) {
  const {ticks: tt, step, months} = timeTicks(from, to, Math.max(3, Math.floor(W / 130)));
  const g = s('g', {class: 'axis'});
  g.append(s('line', {x1: M.left, x2: W - M.right, y1: height - M.bottom, y2: height - M.bottom}));
  for (const t of tt) {
    g.append(s('line', {x1: x(t), x2: x(t), y1: height - M.bottom, y2: height - M.bottom + 4}));
    // Labels near an edge are anchored so that they stay inside.
    const anchor = x(t) > W - M.right - 40 ? 'end' : x(t) < M.left + 20 ? 'start' : 'middle';
    g.append(s('text', {x: x(t), y: height - M.bottom + 16, 'text-anchor': anchor}, timeLabel(t, step, months)));
  }
  svg.append(g);
}

// stackedHistogram draws counts per time bucket stacked by series.
// series: [{key, label, color, counts: Map(bucketStart -> n)}]. onPick,
// if given, is called with (start, end) of a clicked bucket.
export function stackedHistogram({from, to, bucketMs, series, onPick, width = 1000, height = 240}) {
  const W = width;
  const start = Math.floor(from / bucketMs) * bucketMs;
  const n = Math.max(1, Math.ceil((to - start) / bucketMs));
  const totals = new Array(n).fill(0);
  for (const se of series) for (const [t, c] of se.counts) {
    const i = Math.floor((t - start) / bucketMs);
    if (i >= 0 && i < n) totals[i] += c;
  }
  const total = totals.reduce((a, b) => a + b, 0);
  const {svg, y, plotW} = frame(W, height, Math.max(...totals), `Records per ${fmtDuration(bucketMs)}, stacked by severity: ${fmtNum(total)} in all`);
  const end = start + n * bucketMs;
  const x = (t) => M.left + ((t - start) / (end - start)) * plotW;
  const bw = Math.max(1, plotW / n - (n > 150 ? 0 : 1));
  const base = new Array(n).fill(0);
  const bars = s('g', {class: 'bars'});
  for (const se of series) {
    for (const [t, c] of se.counts) {
      const i = Math.floor((t - start) / bucketMs);
      if (i < 0 || i >= n || !c) continue;
      const y0 = y(base[i]);
      const y1 = y(base[i] + c);
      base[i] += c;
      bars.append(s('rect', {class: 'bar', x: x(start + i * bucketMs), width: bw, y: y1, height: Math.max(0.5, y0 - y1), fill: se.color, 'data-sev': se.label, 'data-count': c},
        s('title', {}, `${se.label}: ${fmtNum(c)} at ${fmtTime(start + i * bucketMs)} (+${fmtDuration(bucketMs)})`)));
    }
  }
  svg.append(bars);
  if (onPick) {
    const hits = s('g', {class: 'hits'});
    for (let i = 0; i < n; i++) {
      if (!totals[i]) continue;
      const t = start + i * bucketMs;
      // Each bucket is a button: clickable, and reachable with Tab
      // (Enter or Space zooms in).
      const label = `${fmtNum(totals[i])} records at ${fmtTime(t)} (+${fmtDuration(bucketMs)}); click to zoom in`;
      hits.append(s('rect', {x: x(t), width: bw, y: M.top, height: height - M.top - M.bottom, fill: 'transparent', cursor: 'pointer',
        tabindex: 0, role: 'button', 'aria-label': label,
        onclick: () => onPick(t, t + bucketMs),
        onkeydown: (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            onPick(t, t + bucketMs);
          }
        }}, s('title', {}, label)));
    }
    svg.append(hits);
  }
  xAxis(svg, W, height, start, end, x);
  return svg;
}

// lineChart draws series of [x, y] points over time (x in epoch ms).
export function lineChart({series, width = 1000, height = 240}) {
  const W = width;
  let lo = Infinity;
  let hi = -Infinity;
  let yMax = 0;
  for (const se of series) for (const [t, v] of se.points) {
    lo = Math.min(lo, t);
    hi = Math.max(hi, t);
    yMax = Math.max(yMax, v);
  }
  if (!Number.isFinite(lo)) return h('div', {class: 'empty'}, 'No data');
  if (hi === lo) { lo -= 1000; hi += 1000; }
  const {svg, y, plotW} = frame(W, height, yMax, `Line chart of ${series.length} series`);
  const x = (t) => M.left + ((t - lo) / (hi - lo)) * plotW;
  series.forEach((se, i) => {
    const color = se.color || PALETTE[i % PALETTE.length];
    const pts = [...se.points].sort((a, b) => a[0] - b[0]);
    svg.append(s('polyline', {class: 'line', fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': se.label,
      points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}));
    if (pts.length <= 200) {
      for (const [t, v] of pts) {
        svg.append(s('circle', {cx: x(t), cy: y(v), r: 2.5, fill: color}, s('title', {}, `${se.label}: ${fmtNum(v)} at ${fmtTime(t)}`)));
      }
    }
  });
  xAxis(svg, W, height, lo, hi, x);
  return h('div', {}, svg, legend(series));
}

export function legend(series) {
  if (series.length < 2 && !(series[0] && series[0].label)) return null;
  return h('div', {class: 'legend'}, series.map((se, i) =>
    h('span', {}, swatch(se.color || PALETTE[i % PALETTE.length]), se.label)));
}

export function swatch(color) {
  return s('svg', {width: 10, height: 10, 'aria-hidden': 'true'}, s('rect', {width: 10, height: 10, rx: 2, fill: color}));
}

// barChart draws labelled values as horizontal bars, largest first.
export function barChart({items, color = PALETTE[0], onPick, width = 1000}) {
  const W = width;
  const rowH = 22;
  const labelW = Math.min(260, Math.round(W * 0.3));
  const height = items.length * rowH + 8;
  const max = Math.max(1, ...items.map((it) => it.value));
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': `Bar chart of ${items.length} values`});
  items.forEach((it, i) => {
    const y = 4 + i * rowH;
    const wv = ((W - labelW - 90) * it.value) / max;
    const chars = Math.max(8, Math.floor(labelW / 7));
    const label = it.label.length > chars ? it.label.slice(0, chars - 1) + '…' : it.label;
    const g = s('g', {class: onPick ? 'pick' : null, cursor: onPick ? 'pointer' : null, onclick: onPick ? () => onPick(it) : null});
    g.append(s('text', {x: labelW - 8, y: y + 15, 'text-anchor': 'end'}, label || '(empty)', s('title', {}, it.label)));
    g.append(s('rect', {class: 'bar', x: labelW, y: y + 2, width: Math.max(1, wv), height: rowH - 6, fill: color, 'data-label': it.label},
      s('title', {}, `${it.label}: ${fmtNum(it.value)}`)));
    g.append(s('text', {x: labelW + wv + 6, y: y + 15}, fmtNum(it.value)));
    svg.append(g);
  });
  return svg;
}

// sparkline draws values as a small line with the area under it.
export function sparkline(values, {width = 160, height = 28, color = '#c62828'} = {}) {
  const max = Math.max(1, ...values);
  const n = values.length;
  const x = (i) => (n <= 1 ? width / 2 : (i / (n - 1)) * (width - 2) + 1);
  const y = (v) => height - 2 - (v / max) * (height - 4);
  const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  return s('svg', {class: 'spark', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `trend: ${values.join(', ')}`},
    s('polygon', {points: `${x(0)},${height - 1} ${pts.join(' ')} ${x(n - 1)},${height - 1}`, fill: color, 'fill-opacity': 0.15}),
    s('polyline', {points: pts.join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5}));
}
