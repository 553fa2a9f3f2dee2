// The filter form Explore and Live tail share.

import {h, clear} from './dom.js';
import {emptyFilters} from './sqlutil.js';

const SEV_OPTIONS = [[0, 'Any'], [1, 'TRACE+'], [5, 'DEBUG+'], [9, 'INFO+'], [13, 'WARN+'], [17, 'ERROR+'], [21, 'FATAL']];

// filterForm returns {el, get, set}; its fields' ids start with prefix.
// onApply is called with a copy of the filters when the user applies
// them, adds or removes a filter.
export function filterForm(ctx, {prefix, onApply, live = false}) {
  const p = `${prefix}-`;
  let cur = emptyFilters();
  const stream = h('select', {id: p + 'stream', name: 'stream'}, h('option', {value: ''}, 'All streams'));
  const service = h('input', {id: p + 'service', name: 'service', list: p + 'services', placeholder: 'any', size: 14});
  const services = h('datalist', {id: p + 'services'});
  const sev = h('select', {id: p + 'sev', name: 'sev'}, SEV_OPTIONS.map(([v, l]) => h('option', {value: v}, l)));
  const q = h('input', {id: p + 'q', name: 'q', type: 'search', placeholder: live ? 'substring (case-sensitive)' : 'text (case-insensitive)'});
  const akey = h('input', {id: p + 'akey', list: p + 'akeys', placeholder: 'key', size: 16});
  const akeys = h('datalist', {id: p + 'akeys'});
  const aval = h('input', {id: p + 'aval', placeholder: 'value', size: 16, 'aria-label': 'Attribute value'});
  const chips = h('div', {class: 'chips', 'aria-label': 'Attribute filters'});

  const apply = () => onApply(get());
  const addAttr = () => {
    const k = akey.value.trim();
    if (!k) { akey.focus(); return; }
    cur.attrs.push([k, aval.value]);
    akey.value = aval.value = '';
    apply();
  };
  const el = h('form', {class: 'filters', 'aria-label': 'Filters', onsubmit: (e) => { e.preventDefault(); apply(); }},
    field('Stream', stream), field('Service', service, services), field('Min severity', sev),
    field(live ? 'Body contains' : 'Body text', q, null, 'grow'),
    h('div', {class: 'field'}, h('label', {for: p + 'akey'}, 'Attribute = value'),
      h('span', {}, akey, akeys, ' = ', aval, ' ',
        h('button', {type: 'button', onclick: addAttr, 'aria-label': 'Add attribute filter'}, 'Add'))),
    h('div', {class: 'field'}, h('span', {}, ' '), h('span', {},
      h('button', {type: 'submit', class: 'primary'}, live ? 'Apply' : 'Search'), ' ',
      h('button', {type: 'button', onclick: () => { set(emptyFilters()); apply(); }}, 'Clear'))),
    chips);
  aval.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); addAttr(); } });

  ctx.schema().then((sc) => {
    const keep = stream.value;
    for (const st of sc.streams) stream.append(h('option', {value: st.name}, st.name));
    stream.value = keep;
    ensureOption(stream, cur.stream);
    for (const k of sc.attribute_keys) akeys.append(h('option', {value: k.key}));
  }).catch(() => {});
  ctx.services().then((list) => { for (const sv of list) services.append(h('option', {value: sv})); }).catch(() => {});

  function get() {
    cur.stream = stream.value;
    cur.service = service.value.trim();
    cur.sev = Number(sev.value) || 0;
    cur.q = q.value;
    return structuredClone(cur);
  }
  function set(f) {
    cur = structuredClone(f);
    ensureOption(stream, f.stream);
    stream.value = f.stream;
    service.value = f.service;
    ensureOption(sev, String(f.sev), `≥ ${f.sev}`);
    sev.value = String(f.sev);
    q.value = f.q;
    renderChips();
  }
  function renderChips() {
    const items = [
      ...cur.attrs.map((kv, i) => ['attr', i, `${kv[0]} = ${kv[1]}`]),
      ...cur.res.map((kv, i) => ['res', i, `resource.${kv[0]} = ${kv[1]}`]),
      ...(cur.trace ? [['trace', 0, `trace_id = ${cur.trace}`]] : []),
      ...(cur.span ? [['span', 0, `span_id = ${cur.span}`]] : []),
    ];
    clear(chips, items.map(([kind, i, label]) => h('span', {class: 'chip'}, label,
      h('button', {type: 'button', title: 'Remove this filter', 'aria-label': `Remove filter ${label}`, onclick: () => {
        if (kind === 'attr') cur.attrs.splice(i, 1);
        else if (kind === 'res') cur.res.splice(i, 1);
        else cur[kind] = '';
        apply();
      }}, '×'))));
  }
  return {el, get, set};
}

function field(label, input, extra, cls) {
  return h('div', {class: 'field' + (cls ? ' ' + cls : '')}, h('label', {for: input.id}, label), input, extra);
}

function ensureOption(select, value, label) {
  if (value === '' || [...select.options].some((o) => o.value === value)) return;
  select.append(h('option', {value}, label || value));
}
