// Server APIs: POST /v1/sql and the TailService over the Connect protocol.

export class APIError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'APIError';
    this.code = code || 'unknown';
    this.status = status || 0;
  }
}

// The API key, when the server requires one (auth.keys): asked for once
// per browser tab and kept in sessionStorage, never in the URL or a
// cookie, so another site cannot make the browser send it.
const KEY_ITEM = 'weir.key';
let asking = null;

// askKey shows the sign-in dialog and resolves once a key was entered.
function askKey(message) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dlg = document.createElement('dialog');
    dlg.className = 'signin';
    const form = document.createElement('form');
    form.method = 'dialog';
    const title = document.createElement('h2');
    title.textContent = 'Sign in to weir';
    const note = document.createElement('p');
    note.textContent = message;
    const label = document.createElement('label');
    label.textContent = 'API key ';
    const input = document.createElement('input');
    input.type = 'password';
    input.name = 'key';
    input.autocomplete = 'current-password';
    input.required = true;
    label.append(input);
    const button = document.createElement('button');
    button.type = 'submit';
    button.textContent = 'Sign in';
    form.append(title, note, label, button);
    dlg.append(form);
    document.body.append(dlg);
    form.addEventListener('submit', () => {
      sessionStorage.setItem(KEY_ITEM, input.value.trim());
      dlg.remove();
      asking = null;
      resolve();
    });
    dlg.addEventListener('cancel', (ev) => ev.preventDefault());
    dlg.showModal();
    input.focus();
  });
  return asking;
}

// call is fetch with the API key; when the server answers 401 it asks
// for a key and tries again.
async function call(url, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(init.headers || {});
    const key = sessionStorage.getItem(KEY_ITEM);
    if (key) headers.set('Authorization', 'Bearer ' + key);
    const resp = await fetch(url, {...init, headers});
    if (resp.status !== 401 || attempt >= 3) return resp;
    const doc = await resp.clone().json().catch(() => ({}));
    await askKey(key ? `That key was refused: ${doc.error || doc.message || 'unauthenticated'}` : 'This server needs an API key.');
  }
}

// signOut forgets the API key of this tab.
export function signOut() {
  sessionStorage.removeItem(KEY_ITEM);
}

// sql runs one statement and returns the JSON result:
// {columns: [{name, type}], rows: [{...}], truncated, elapsed_ms}.
export async function sql(query, {signal, maxRows, timeoutMs} = {}) {
  const body = {sql: query};
  if (maxRows) body.max_rows = maxRows;
  if (timeoutMs) body.timeout_ms = timeoutMs;
  const resp = await call('/v1/sql', {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
    body: JSON.stringify(body),
    signal,
  });
  let doc;
  try {
    doc = await resp.json();
  } catch (err) {
    if (signal && signal.aborted) throw err;
    throw new APIError(`HTTP ${resp.status}: the answer is not JSON`, 'internal', resp.status);
  }
  if (!resp.ok) throw new APIError(doc.error || `HTTP ${resp.status}`, doc.code, resp.status);
  if (doc.error) throw new APIError(`failed after ${(doc.rows || []).length} rows: ${doc.error}`, 'internal', resp.status);
  return doc;
}

// download runs a statement asking for another media type (text/csv or
// application/vnd.apache.arrow.stream) and saves the answer as a file.
export async function download(query, accept, filename, {signal, maxRows} = {}) {
  const body = {sql: query};
  if (maxRows) body.max_rows = maxRows;
  const resp = await call('/v1/sql', {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'Accept': accept},
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok) {
    const doc = await resp.json().catch(() => ({}));
    throw new APIError(doc.error || `HTTP ${resp.status}`, doc.code, resp.status);
  }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return blob.size;
}

export async function getJSON(path, {signal} = {}) {
  const resp = await call(path, {headers: {'Accept': 'application/json'}, signal});
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new APIError(doc.error || `HTTP ${resp.status}`, doc.code, resp.status);
  return doc;
}

// postJSON posts a JSON body and returns the JSON answer.
export async function postJSON(path, body, {signal} = {}) {
  const resp = await call(path, {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
    body: JSON.stringify(body),
    signal,
  });
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new APIError(doc.error || `HTTP ${resp.status}`, doc.code, resp.status);
  return doc;
}

// A Connect envelope: 1 flag byte, 4-byte big-endian length, message.
const FLAG_COMPRESSED = 0x01;
const FLAG_END_STREAM = 0x02;
const MAX_FRAME = 64 << 20;

function envelope(msg) {
  const json = new TextEncoder().encode(JSON.stringify(msg));
  const out = new Uint8Array(5 + json.length);
  new DataView(out.buffer).setUint32(1, json.length);
  out.set(json, 5);
  return out;
}

// tail calls weir.v1.TailService/Tail (Connect, server streaming, JSON)
// and calls onMessage with each TailResponse until the stream ends or
// signal aborts. It resolves when the server ends the stream cleanly and
// rejects with an APIError when it ends with an error.
export async function tail(request, {signal, onMessage}) {
  const resp = await call('/weir.v1.TailService/Tail', {
    method: 'POST',
    headers: {'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1'},
    body: envelope(request),
    signal,
  });
  if (!resp.ok) {
    const doc = await resp.json().catch(() => ({}));
    throw new APIError(doc.message || `HTTP ${resp.status}`, doc.code, resp.status);
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = new Uint8Array(0);
  for (;;) {
    const {value, done} = await reader.read();
    if (done) throw new APIError('the stream ended without an end-of-stream message', 'unavailable');
    const next = new Uint8Array(buf.length + value.length);
    next.set(buf);
    next.set(value, buf.length);
    buf = next;
    while (buf.length >= 5) {
      const flags = buf[0];
      const len = new DataView(buf.buffer, buf.byteOffset + 1, 4).getUint32(0);
      if (len > MAX_FRAME) throw new APIError(`message of ${len} bytes is too large`, 'resource_exhausted');
      if (buf.length < 5 + len) break;
      const payload = buf.subarray(5, 5 + len);
      buf = buf.slice(5 + len);
      if (flags & FLAG_COMPRESSED) throw new APIError('compressed messages are not supported', 'internal');
      const msg = JSON.parse(decoder.decode(payload));
      if (flags & FLAG_END_STREAM) {
        if (msg.error) throw new APIError(msg.error.message || msg.error.code, msg.error.code);
        return;
      }
      onMessage(msg);
    }
  }
}
