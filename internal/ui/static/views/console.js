// SQL console: run, explain, cancel, chart and download any reading
// statement.

import {sql, download} from '../api.js';
import {h, clear, fmtNum, resultTable, errorBox, isAbort, toast} from '../dom.js';
import {chartFor} from '../resultchart.js';
import {chartWidth} from '../chart.js';

const DEFAULT_SQL = `SELECT stream, count(*) AS records, count(*) FILTER (WHERE severity_number >= 17) AS errors
FROM logs
GROUP BY stream
ORDER BY records DESC`;
const SHOW_ROWS = 1000;
const DOWNLOAD_ROWS = 1000000; // the server lowers it to its own maximum

let el;
let ctx;
let input;
let maxRows;
let statusEl;
let chartEl;
let tableEl;
let runBtn;
let cancelBtn;
let abort = null;

function mount(root, c) {
  el = root;
  ctx = c;
  input = h('textarea', {id: 'sql', spellcheck: 'false', 'aria-label': 'SQL statement', 'aria-describedby': 'sql-help'});
  input.value = localStorage.getItem('weir.sql') || DEFAULT_SQL;
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
  });
  maxRows = h('input', {id: 'sql-max', type: 'number', min: 1, max: 100000, value: 1000, size: 7});
  runBtn = h('button', {type: 'button', class: 'primary', id: 'sql-run', title: 'Ctrl+Enter', onclick: () => run()}, 'Run');
  cancelBtn = h('button', {type: 'button', id: 'sql-cancel', disabled: true, onclick: () => abort && abort.abort()}, 'Cancel');
  statusEl = h('span', {id: 'sql-status', class: 'muted', role: 'status'});
  chartEl = h('div', {id: 'console-chart'});
  tableEl = h('div', {id: 'console-table'});
  el.append(h('h2', {class: 'sr-title'}, 'SQL console'),
    h('div', {class: 'card'}, input,
      h('div', {class: 'muted', id: 'sql-help'}, 'Views: logs (every stream, with a stream column) and one per stream. Only reading statements run. Ctrl+Enter runs.'),
      h('div', {class: 'toolbar'}, runBtn, cancelBtn,
        h('button', {type: 'button', id: 'sql-explain', onclick: () => run({explain: true})}, 'Explain'),
        h('label', {for: 'sql-max'}, 'Max rows'), maxRows,
        h('span', {class: 'spacer'}),
        h('button', {type: 'button', id: 'sql-csv', onclick: () => save('text/csv', 'csv')}, 'Download CSV'),
        h('button', {type: 'button', id: 'sql-arrow', onclick: () => save('application/vnd.apache.arrow.stream', 'arrow')}, 'Download Arrow'),
        h('button', {type: 'button', id: 'sql-parquet', onclick: () => save('application/vnd.apache.parquet', 'parquet')}, 'Download Parquet')),
      statusEl),
    chartEl, tableEl);
}

// show fills the editor with the link's statement (?sql=) but never runs
// it: a link is anyone's to craft, so running takes the user's Run or
// Ctrl+Enter.
function show(params, {changed} = {}) {
  const q = params.get('sql');
  if (q) {
    input.value = q;
    clear(chartEl);
    clear(tableEl);
    el.dataset.state = 'prefilled';
    statusEl.textContent = 'Statement from the link. Review it, then Run (Ctrl+Enter).';
    input.focus();
  } else if (changed) {
    input.focus();
  }
}

async function run({explain = false} = {}) {
  const text = input.value.trim().replace(/;\s*$/, '');
  if (!text) return;
  localStorage.setItem('weir.sql', input.value);
  if (abort) abort.abort();
  const ac = new AbortController();
  abort = ac;
  runBtn.disabled = true;
  cancelBtn.disabled = false;
  el.dataset.state = 'loading';
  statusEl.textContent = explain ? 'Explaining…' : 'Running…';
  const started = performance.now();
  try {
    const n = Math.max(1, Math.min(100000, Number(maxRows.value) || 1000));
    const doc = await sql(explain ? `EXPLAIN ${text}` : text, {signal: ac.signal, maxRows: explain ? 100 : n});
    if (abort !== ac) return;
    const ms = doc.elapsed_ms !== undefined ? doc.elapsed_ms : performance.now() - started;
    if (explain) {
      clear(chartEl);
      clear(tableEl, h('pre', {class: 'plan', id: 'sql-plan'}, doc.rows.map((r) => r.explain_value ?? Object.values(r).join('\t')).join('\n')));
      statusEl.textContent = `Plan in ${fmtNum(ms)} ms.`;
    } else {
      const chart = chartFor(doc, undefined, chartWidth(chartEl) - 26);
      clear(chartEl, chart ? h('div', {class: 'card'}, h('h3', {}, chart.dataset.kind === 'line' ? 'Over time' : 'By value'), chart) : null);
      clear(tableEl, doc.rows.length ? h('div', {class: 'scroll'}, resultTable(doc, SHOW_ROWS)) : h('div', {class: 'card empty'}, 'No rows.'));
      statusEl.textContent = `${fmtNum(doc.rows.length)} rows in ${fmtNum(ms)} ms` +
        (doc.truncated ? ` (stopped at ${fmtNum(n)} rows; raise Max rows or download)` : '') +
        (doc.rows.length > SHOW_ROWS ? `; showing the first ${fmtNum(SHOW_ROWS)}` : '') + '.';
    }
    el.dataset.state = 'ready';
  } catch (err) {
    if (abort !== ac) return;
    clear(chartEl);
    if (isAbort(err)) {
      statusEl.textContent = 'Cancelled.';
      clear(tableEl);
      el.dataset.state = 'cancelled';
    } else {
      statusEl.textContent = '';
      clear(tableEl, errorBox(err));
      el.dataset.state = 'error';
    }
  } finally {
    if (abort === ac) {
      abort = null;
      runBtn.disabled = false;
      cancelBtn.disabled = true;
    }
  }
}

async function save(accept, ext) {
  const text = input.value.trim().replace(/;\s*$/, '');
  if (!text) return;
  statusEl.textContent = `Downloading ${ext.toUpperCase()}…`;
  try {
    const size = await download(text, accept, `weir-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`, {maxRows: DOWNLOAD_ROWS});
    statusEl.textContent = `Downloaded ${fmtNum(size)} bytes of ${ext.toUpperCase()}.`;
  } catch (err) {
    statusEl.textContent = '';
    toast(`Download failed: ${err.message}`);
  }
}

function hide() {}

export default {mount, show, hide};
