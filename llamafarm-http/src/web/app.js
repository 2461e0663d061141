// LlamaFarm web app: renders each page from the documented JSON API of this server.
// Vanilla JavaScript, no build step, no external resources. Every element is built with
// h() (text content, never HTML strings), so no server value is ever parsed as markup.
'use strict';

const BASE = document.body.dataset.base || '';
const main = document.getElementById('main');

// ---------- DOM helpers ----------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}
let uid = 0;
const nextId = (p) => `${p}-${++uid}`;
// A labelled form control: returns [wrapper, control].
function field(label, control, cls) {
  if (!control.id) control.id = nextId('f');
  return [h('label', { class: 'field ' + (cls || ''), for: control.id }, h('span', {}, label), control), control];
}
function option(value, label, selected) {
  return h('option', { value, selected: selected ? true : null }, label ?? value);
}
function link(path, text, attrs) {
  return h('a', Object.assign({ href: BASE + path, 'data-nav': '' }, attrs || {}), text);
}
function bytes(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
const enc = encodeURIComponent;
function when(ts) {
  const d = new Date(ts);
  return isNaN(d) ? String(ts || '') : d.toLocaleString();
}

// ---------- errors shown next to what they are about ----------
function showError(anchor, err) {
  clearError(anchor);
  const msg = err instanceof ApiError ? err.detail : String(err && err.message || err);
  const p = h('p', { class: 'err', role: 'alert', id: (anchor.id || nextId('a')) + '-err', 'data-error-for': anchor.id || '' }, msg);
  anchor.setAttribute('aria-invalid', 'true');
  anchor.setAttribute('aria-describedby', p.id);
  (anchor.closest('label') || anchor).after(p);
  return p;
}
function clearError(anchor) {
  const id = anchor.getAttribute('aria-describedby');
  if (id) document.getElementById(id)?.remove();
  anchor.removeAttribute('aria-invalid');
  anchor.removeAttribute('aria-describedby');
}
// Which field of a form a server detail names (the field names appear in the text).
function fieldFor(detail, fields) {
  const d = String(detail).toLowerCase();
  for (const [name, el] of Object.entries(fields)) if (d.includes(name)) return el;
  return Object.values(fields)[0];
}

// ---------- API ----------
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; this.detail = detail; }
}
function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = sessionStorage.getItem('lf.key');
  if (key) headers.Authorization = 'Bearer ' + key;
  return headers;
}
async function failure(r) {
  let detail = r.statusText || `HTTP ${r.status}`;
  try {
    const body = await r.json();
    if (body && body.detail !== undefined) detail = typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  if (r.status === 401) askForKey(detail);
  return new ApiError(r.status, detail);
}
async function api(method, path, body, opts) {
  opts = opts || {};
  const init = { method, headers: authHeaders(opts.headers) };
  if (body !== undefined) {
    if (body instanceof FormData || typeof body === 'string') init.body = body;
    else { init.body = JSON.stringify(body); init.headers['content-type'] = 'application/json'; }
    if (opts.type) init.headers['content-type'] = opts.type;
  }
  if (opts.signal) init.signal = opts.signal;
  const r = await fetch(BASE + path, init);
  if (!r.ok) throw await failure(r);
  if (opts.raw) return r;
  const type = r.headers.get('content-type') || '';
  return type.includes('json') ? r.json() : r.text();
}
// Reads a text/event-stream body, calling onData with each parsed `data:` JSON.
async function readEvents(r, onData) {
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (!data || data === '[DONE]') continue;
      try { onData(JSON.parse(data)); } catch (e) { if (e instanceof ApiError) throw e; }
    }
  }
}

function askForKey(detail) {
  if (document.getElementById('key-form')) return;
  const [wrap, input] = field('API key', h('input', { type: 'password', autocomplete: 'off', required: true }), 'grow');
  const form = h('form', { id: 'key-form', class: 'card', onsubmit: (e) => {
    e.preventDefault();
    sessionStorage.setItem('lf.key', input.value.trim());
    form.remove();
    render();
  } },
  h('h2', {}, 'This server needs an API key'),
  h('p', { class: 'muted' }, detail + ' The key is kept in this tab only (session storage).'),
  h('div', { class: 'row' }, wrap, h('button', {}, 'Use key')));
  main.prepend(form);
  input.focus();
}

// ---------- router ----------
let view = { alive: true, timers: [], aborts: [] };
function every(ms, fn) { const t = setInterval(fn, ms); view.timers.push(t); return t; }
function go(path) { history.pushState(null, '', BASE + path); render(); }
addEventListener('popstate', () => render());
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-nav]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  go(a.getAttribute('href').slice(BASE.length) || '/ui');
});

const ROUTES = [
  [/^\/(ui\/?)?$/, projectsPage, 'projects'],
  [/^\/ui\/p\/([^/]+)\/([^/]+)$/, configPage, 'projects'],
  [/^\/ui\/p\/([^/]+)\/([^/]+)\/documents$/, documentsPage, 'projects'],
  [/^\/ui\/p\/([^/]+)\/([^/]+)\/retrieval$/, retrievalPage, 'projects'],
  [/^\/ui\/p\/([^/]+)\/([^/]+)\/chat$/, chatPage, 'projects'],
  [/^\/ui\/models$/, modelsPage, 'models'],
  [/^\/ui\/status$/, statusPage, 'status'],
];

async function render() {
  view.alive = false;
  view.timers.forEach(clearInterval);
  view.aborts.forEach((c) => c.abort());
  view = { alive: true, timers: [], aborts: [] };
  const mine = view;
  const path = location.pathname.slice(BASE.length) || '/';
  const route = ROUTES.find(([re]) => re.test(path));
  document.querySelectorAll('.top nav a').forEach((a) => a.removeAttribute('aria-current'));
  main.replaceChildren();
  if (!route) {
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'No page at ' + path + '. '), link('/ui', 'Projects'));
    return;
  }
  const [re, page, section] = route;
  document.querySelector(`.top nav a[data-section=${section}]`)?.setAttribute('aria-current', 'page');
  const params = path.match(re).slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p)));
  try {
    await page(...params);
  } catch (err) {
    if (mine.alive) main.append(h('p', { class: 'err', role: 'alert' }, err instanceof ApiError ? err.detail : String(err)));
  }
  if (mine.alive) {
    document.title = (main.querySelector('h1')?.textContent || 'LlamaFarm') + ' · LlamaFarm';
    mark('page-ready');
  }
}
function mark(name) { try { performance.mark(name); } catch (_) { /* old browsers */ } }

function namespace() { return localStorage.getItem('lf.ns') || 'default'; }

// ---------- projects ----------
async function projectsPage() {
  const ns = namespace();
  main.append(h('h1', {}, 'Projects'));
  const [nsWrap, nsInput] = field('Namespace', h('input', { value: ns, name: 'namespace', autocomplete: 'off' }));
  main.append(h('form', { class: 'row', onsubmit: (e) => {
    e.preventDefault();
    localStorage.setItem('lf.ns', nsInput.value.trim() || 'default');
    render();
  } }, nsWrap, h('button', { class: 'secondary' }, 'Show')));

  const list = h('div', { class: 'card table-wrap', id: 'project-list' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(list);

  // Create from a template.
  const [nameWrap, nameInput] = field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' }), 'grow');
  const [tplWrap, tplSelect] = field('Template', h('select', { name: 'template' }, option('default', 'default (chat + RAG)'), option('rag', 'rag'), option('server', 'server')));
  main.append(h('h2', {}, 'New project'), h('form', { class: 'card row', id: 'create-project', onsubmit: async (e) => {
    e.preventDefault();
    clearError(nameInput);
    try {
      await api('POST', `/v1/projects/${enc(ns)}`, { name: nameInput.value.trim(), config_template: tplSelect.value });
      go(`/ui/p/${enc(ns)}/${enc(nameInput.value.trim())}/documents`);
    } catch (err) { showError(nameInput, err); }
  } }, nameWrap, tplWrap, h('button', {}, 'Create')));

  // Create from an example.
  const exSelect = h('select', { name: 'example' });
  const [exWrap] = field('Example', exSelect);
  const [exNameWrap, exName] = field('Name', h('input', { name: 'example-name', required: true, autocomplete: 'off' }), 'grow');
  main.append(h('form', { class: 'card row', id: 'import-example', onsubmit: async (e) => {
    e.preventDefault();
    clearError(exName);
    try {
      await api('POST', `/v1/examples/${enc(exSelect.value)}/import-project`, { namespace: ns, name: exName.value.trim(), process: true });
      go(`/ui/p/${enc(ns)}/${enc(exName.value.trim())}/documents`);
    } catch (err) { showError(exName, err); }
  } }, exWrap, exNameWrap, h('button', { class: 'secondary' }, 'Import example')));
  api('GET', '/v1/examples').then((r) => {
    exSelect.replaceChildren(...(r.examples || []).map((x) => option(x.id, `${x.title} — ${x.description}`)));
  }).catch((err) => showError(exSelect, err));

  let data;
  try { data = await api('GET', `/v1/projects/${enc(ns)}`); } catch (err) { list.replaceChildren(); showError(list, err); return; }
  const rows = (data.projects || []).map((p) => {
    const cfg = p.config || {};
    const models = ((cfg.runtime || {}).models || []).map((m) => m.name).join(', ');
    const dbs = ((cfg.rag || {}).databases || []).map((d) => d.name).join(', ');
    const base = `/ui/p/${enc(p.namespace)}/${enc(p.name)}`;
    return h('tr', {},
      h('td', {}, link(base, p.name)),
      h('td', { class: 'hide-s' }, models),
      h('td', { class: 'hide-s' }, dbs),
      h('td', {}, link(base + '/documents', 'Documents'), ' · ', link(base + '/retrieval', 'Retrieval'), ' · ', link(base + '/chat', 'Chat')),
      h('td', {}, h('button', { class: 'danger', 'aria-label': `Delete project ${p.name}`, onclick: async (e) => {
        if (!confirm(`Delete project ${p.namespace}/${p.name} and all its data?`)) return;
        try { await api('DELETE', `/v1/projects/${enc(p.namespace)}/${enc(p.name)}`); render(); } catch (err) { showError(e.target, err); }
      } }, 'Delete')));
  });
  list.replaceChildren(rows.length
    ? h('table', {}, h('caption', { class: 'muted' }, `${data.total} in ${ns}`),
      h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', { class: 'hide-s' }, 'Models'), h('th', { class: 'hide-s' }, 'Databases'), h('th', {}, 'Open'), h('th', {}, ''))),
      h('tbody', {}, rows))
    : h('p', { class: 'muted' }, `No projects in namespace ${ns} yet.`));
}

function projectHeader(ns, name, tab) {
  const base = `/ui/p/${enc(ns)}/${enc(name)}`;
  const tabs = [['', 'Config'], ['/documents', 'Documents'], ['/retrieval', 'Retrieval'], ['/chat', 'Chat']];
  main.append(
    h('p', { class: 'muted' }, link('/ui', 'Projects'), ` / ${ns} /`),
    h('h1', {}, name),
    h('nav', { class: 'tabs', 'aria-label': 'Project' }, tabs.map(([p, t]) => link(base + p, t, { 'aria-current': t === tab ? 'page' : null }))));
}
const projectApi = (ns, name) => `/v1/projects/${enc(ns)}/${enc(name)}`;

// ---------- config (llamafarm.yaml) ----------
// The line of YAML `text` that a validation path such as `rag.databases[0].type` names.
function yamlLine(text, path) {
  const segs = [];
  for (const part of path.split('.')) {
    const m = part.match(/^([^[\]]*)((?:\[\d+\])*)$/);
    if (!m) return null;
    if (m[1]) segs.push(m[1]);
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) segs.push(Number(idx[1]));
  }
  const lines = text.split('\n');
  let at = 0, indent = -1, found = null;
  for (const seg of segs) {
    let hit = -1, count = -1;
    for (let i = at; i < lines.length; i++) {
      const line = lines[i];
      if (!line.trim() || line.trim().startsWith('#')) continue;
      const ind = line.length - line.trimStart().length;
      if (i > at && ind <= indent && !(typeof seg === 'number' && ind === indent && line.trimStart().startsWith('- '))) break;
      if (typeof seg === 'number') {
        if (line.trimStart().startsWith('- ') && ind >= indent) { count++; if (count === seg) { hit = i; indent = ind; break; } }
      } else {
        const body = line.trimStart().replace(/^- /, '');
        const bodyInd = ind + (line.trimStart().length - body.length);
        if (bodyInd > indent && (body.startsWith(seg + ':') || body.startsWith(`"${seg}":`))) { hit = i; indent = bodyInd; break; }
      }
    }
    if (hit < 0) break;
    found = hit; at = hit;
  }
  return found;
}
async function configPage(ns, name) {
  projectHeader(ns, name, 'Config');
  const area = h('textarea', { class: 'code', spellcheck: 'false', name: 'config', 'aria-label': 'llamafarm.yaml' });
  const status = h('p', { class: 'muted', role: 'status' });
  const save = h('button', {}, 'Save');
  const form = h('form', { class: 'card', id: 'config-form', onsubmit: async (e) => {
    e.preventDefault();
    clearError(area);
    save.disabled = true;
    try {
      await api('PUT', projectApi(ns, name) + '/llamafarm.yaml', area.value, { type: 'application/yaml' });
      status.textContent = 'Saved ' + new Date().toLocaleTimeString();
    } catch (err) {
      const detail = err.detail || String(err);
      const m = detail.match(/^invalid configuration: ([A-Za-z0-9_.[\]]+): /);
      const line = m ? yamlLine(area.value, m[1]) : null;
      const at = detail.match(/line (\d+)/);
      const n = line !== null ? line : (at ? Number(at[1]) - 1 : null);
      const p = showError(area, err);
      if (n !== null) {
        p.prepend(h('strong', {}, `line ${n + 1}: `));
        const starts = area.value.split('\n').slice(0, n).reduce((s, l) => s + l.length + 1, 0);
        area.focus();
        area.setSelectionRange(starts, starts + (area.value.split('\n')[n] || '').length);
      }
    } finally { save.disabled = false; }
  } }, h('h2', {}, h('label', { for: area.id = nextId('yaml') }, 'llamafarm.yaml')), area, h('div', { class: 'row' }, save, status));
  main.append(form);
  area.value = await api('GET', projectApi(ns, name) + '/llamafarm.yaml');
}

// ---------- documents ----------
const FINAL = new Set(['SUCCESS', 'FAILURE', 'REVOKED', 'CANCELLED']);
async function documentsPage(ns, name) {
  projectHeader(ns, name, 'Documents');
  const P = projectApi(ns, name);
  const tasksBox = h('section', { class: 'card', id: 'tasks', 'aria-live': 'polite' }, h('h2', {}, 'Processing'), h('p', { class: 'muted' }, 'No task yet.'));
  const list = h('div', { id: 'datasets' }, h('p', { class: 'muted' }, 'Loading…'));
  const newDataset = h('div');
  main.append(list, tasksBox, newDataset);
  const tracked = new Map();
  const uploaders = new Map();

  function track(taskId) {
    if (!taskId || tracked.has(taskId)) return;
    if (tracked.size === 0) tasksBox.querySelector('p.muted')?.remove();
    const bar = h('progress', { max: 1, value: 0, 'aria-label': 'Task progress' });
    const state = h('span', { class: 'badge' }, 'PENDING');
    const cancel = h('button', { class: 'danger', onclick: async () => {
      try { await api('DELETE', `${P}/tasks/${enc(taskId)}`); } catch (err) { showError(cancel, err); }
    } }, 'Cancel');
    const files = h('tbody');
    const box = h('div', { class: 'task', 'data-task': taskId },
      h('div', { class: 'row' }, h('span', {}, 'Task ', h('code', {}, taskId.slice(0, 8))), state, bar, cancel),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'File'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Chunks'), h('th', {}, 'Reason'))), files)));
    tasksBox.append(box);
    tracked.set(taskId, true);
    const poll = async () => {
      let t;
      try { t = await api('GET', `${P}/tasks/${enc(taskId)}`); } catch (err) { state.textContent = 'ERROR'; clearInterval(timer); showError(state, err); return; }
      state.textContent = t.state;
      state.className = 'badge ' + (t.state === 'SUCCESS' ? 'ok' : t.state === 'FAILURE' ? 'err' : 'warn');
      const meta = t.meta || {};
      bar.max = meta.total || 1;
      bar.value = meta.current || 0;
      const details = (t.result && t.result.details) || [];
      if (details.length) {
        files.replaceChildren(...details.map((d) => h('tr', { 'data-file': d.filename },
          h('td', {}, d.filename), h('td', { class: d.status === 'failed' ? 'err' : d.status === 'skipped' ? 'warn' : 'ok' }, d.status),
          h('td', { class: 'num' }, d.chunks ?? ''), h('td', {}, d.error || d.reason || ''))));
      }
      if (FINAL.has(t.state)) {
        clearInterval(timer);
        cancel.remove();
        if (t.state === 'FAILURE' && t.error) showError(state, t.error);
        loadDatasets();
      }
    };
    const timer = every(400, poll);
    poll();
  }

  function uploader(ds) {
    const input = h('input', { type: 'file', multiple: true, name: 'files' });
    const [wrap] = field(`Add files to ${ds.name}`, input);
    const rows = h('tbody');
    const table = h('table', { hidden: true }, h('thead', {}, h('tr', {}, h('th', {}, 'Upload'), h('th', {}, 'Progress'), h('th', {}, 'Result'))), rows);
    const send = (fileList) => {
      table.hidden = false;
      for (const file of fileList) {
        const bar = h('progress', { max: 1, value: 0, 'aria-label': `Upload of ${file.name}` });
        const result = h('td', {}, 'uploading');
        rows.append(h('tr', { 'data-upload': file.name }, h('td', {}, file.name), h('td', {}, bar), result));
        const form = new FormData();
        form.append('file', file, file.name);
        const xhr = new XMLHttpRequest();
        xhr.open('POST', `${BASE}${P}/datasets/${enc(ds.name)}/data`);
        for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
        xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; } };
        xhr.onload = () => {
          let body = {};
          try { body = JSON.parse(xhr.responseText); } catch (_) { /* empty */ }
          if (xhr.status >= 200 && xhr.status < 300) {
            bar.value = bar.max;
            result.textContent = body.skipped ? 'already there' : 'uploaded';
            result.className = 'ok';
            if (body.task_id) track(body.task_id);
            else loadDatasets();
          } else {
            result.textContent = body.detail || `HTTP ${xhr.status}`;
            result.className = 'err';
          }
        };
        xhr.onerror = () => { result.textContent = 'network error'; result.className = 'err'; };
        xhr.send(form);
      }
    };
    input.addEventListener('change', () => { send(input.files); input.value = ''; });
    const drop = h('div', { class: 'drop', 'data-dataset': ds.name }, h('p', {}, 'Drop files here, or'), wrap);
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); send(e.dataTransfer.files); });
    return [drop, table];
  }

  async function loadDatasets() {
    const r = await api('GET', `${P}/datasets?include_extra_details=true`);
    if (!view.alive) return;
    const sections = (r.datasets || []).map((ds) => {
      const metas = (ds.details && ds.details.files_metadata) || [];
      const rows = metas.map((f) => h('tr', { 'data-file': f.original_file_name },
        h('td', {}, f.original_file_name), h('td', { class: 'num' }, bytes(f.size)), h('td', { class: 'hide-s' }, when(f.timestamp * 1000)),
        h('td', {}, h('button', { class: 'danger', 'aria-label': `Remove ${f.original_file_name}`, onclick: async (e) => {
          if (!confirm(`Remove ${f.original_file_name} and its chunks?`)) return;
          try { await api('DELETE', `${P}/datasets/${enc(ds.name)}/data/${enc(f.hash)}`); loadDatasets(); } catch (err) { showError(e.target, err); }
        } }, 'Remove'))));
      const process = h('button', { onclick: async () => {
        clearError(process);
        try {
          const t = await api('POST', `${P}/datasets/${enc(ds.name)}/actions`, { action_type: 'process' });
          track(t.task_id);
        } catch (err) { showError(process, err); }
      } }, 'Process');
      const del = h('button', { class: 'danger', onclick: async () => {
        if (!confirm(`Delete dataset ${ds.name} and its files?`)) return;
        try { await api('DELETE', `${P}/datasets/${enc(ds.name)}`); loadDatasets(); } catch (err) { showError(del, err); }
      } }, 'Delete dataset');
      return h('section', { class: 'card', 'data-dataset': ds.name },
        h('h2', {}, ds.name),
        h('p', { class: 'muted' }, `strategy ${ds.data_processing_strategy} → database ${ds.database}; ${metas.length} files; ${ds.auto_process ? 'processed on upload' : 'process by hand'}`),
        h('div', { class: 'row' }, process, del),
        uploaders.get(ds.name) || uploaders.set(ds.name, uploader(ds)).get(ds.name),
        rows.length ? h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'File'), h('th', { class: 'num' }, 'Size'), h('th', { class: 'hide-s' }, 'Uploaded'), h('th', {}, ''))), h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'No files yet.'));
    });
    list.replaceChildren(...sections);
    if (!newDataset.firstChild) newDataset.append(await newDatasetForm());
  }

  async function newDatasetForm() {
    const s = await api('GET', `${P}/datasets/strategies`).catch(() => ({ data_processing_strategies: [], databases: [] }));
    const [nameWrap, nameInput] = field('Name', h('input', { name: 'dataset', required: true, autocomplete: 'off' }), 'grow');
    const [stWrap, st] = field('Processing strategy', h('select', { name: 'strategy' }, s.data_processing_strategies.map((x) => option(x))));
    const [dbWrap, db] = field('Database', h('select', { name: 'database' }, s.databases.map((x) => option(x))));
    return h('form', { class: 'card', id: 'create-dataset', onsubmit: async (e) => {
      e.preventDefault();
      clearError(nameInput);
      try {
        await api('POST', `${P}/datasets`, { name: nameInput.value.trim(), data_processing_strategy: st.value, database: db.value });
        loadDatasets();
      } catch (err) { showError(fieldFor(err.detail || '', { strategy: st, database: db, name: nameInput }), err); }
    } }, h('h2', {}, 'New dataset'), h('div', { class: 'row' }, nameWrap, stWrap, dbWrap, h('button', {}, 'Create')));
  }
  await loadDatasets();
}

// ---------- retrieval ----------
async function retrievalPage(ns, name) {
  projectHeader(ns, name, 'Retrieval');
  const P = projectApi(ns, name);
  const info = await api('GET', `${P}/rag/databases`);
  const dbs = info.databases || [];
  const [qWrap, q] = field('Query', h('input', { name: 'query', required: true, autocomplete: 'off' }), 'grow');
  const [dbWrap, db] = field('Database', h('select', { name: 'database' }, dbs.map((d) => option(d.name, d.name, d.name === info.default_database))));
  const [sWrap, s1] = field('Strategy', h('select', { name: 'strategy' }));
  const [s2Wrap, s2] = field('Compare with', h('select', { name: 'strategy2' }));
  const [kWrap, k] = field('top_k', h('input', { name: 'top_k', type: 'number', value: 5, inputmode: 'numeric' }));
  const [tWrap, t] = field('Score threshold', h('input', { name: 'threshold', type: 'number', step: 'any', placeholder: 'none' }));
  const fill = () => {
    const d = dbs.find((x) => x.name === db.value) || { retrieval_strategies: [] };
    s1.replaceChildren(...d.retrieval_strategies.map((r) => option(r.name, r.name, r.is_default)));
    s2.replaceChildren(option('', '—'), ...d.retrieval_strategies.map((r) => option(r.name)));
  };
  db.addEventListener('change', fill);
  fill();
  const out = h('div', { id: 'retrieval-results', 'aria-live': 'polite' });
  const run = async (strategy) => {
    const body = { query: q.value, database: db.value, retrieval_strategy: strategy, top_k: k.value === '' ? 5 : Number(k.value) };
    if (t.value !== '') body.score_threshold = Number(t.value);
    const r = await api('POST', `${P}/rag/query`, body);
    return h('section', { 'data-strategy': strategy },
      h('h2', {}, `${r.retrieval_strategy_used || strategy}: ${r.total_results} results in ${Number(r.processing_time_ms || 0).toFixed(1)} ms`),
      h('div', { class: 'results' }, (r.results || []).map((hit, i) => {
        const m = hit.metadata || {};
        return h('article', { class: 'hit' },
          h('header', {}, h('strong', {}, `#${i + 1}`), h('span', {}, `score ${Number(hit.score).toFixed(4)}`),
            h('span', { class: 'source' }, m.document_name || m.source || ''), m.page !== undefined ? h('span', {}, `page ${m.page}`) : null,
            m.chunk_label ? h('span', {}, `chunk ${m.chunk_label}`) : null),
          h('p', {}, hit.content),
          h('details', {}, h('summary', {}, 'Metadata'), h('pre', {}, JSON.stringify(m, null, 2))));
      })));
  };
  main.append(h('form', { class: 'card', id: 'query-form', onsubmit: async (e) => {
    e.preventDefault();
    clearError(q);
    out.replaceChildren(h('p', { class: 'muted' }, 'Searching…'));
    try {
      const strategies = [s1.value, s2.value].filter((x, i, a) => x && a.indexOf(x) === i);
      const parts = await Promise.all(strategies.map(run));
      out.replaceChildren(h('div', { class: parts.length > 1 ? 'cols' : '' }, parts));
    } catch (err) {
      out.replaceChildren();
      showError(fieldFor(err.detail || '', { top_k: k, threshold: t, database: db, strategy: s1, query: q }), err);
    }
  } }, h('div', { class: 'row' }, qWrap), h('div', { class: 'row' }, dbWrap, sWrap, s2Wrap, kWrap, tWrap, h('button', {}, 'Search'))), out);
  q.focus();
}

// ---------- chat ----------
async function chatPage(ns, name) {
  projectHeader(ns, name, 'Chat');
  const P = projectApi(ns, name);
  const params = new URLSearchParams(location.search);
  let session = params.get('session');
  const [models, dbInfo] = await Promise.all([api('GET', `${P}/models`), api('GET', `${P}/rag/databases`).catch(() => ({ databases: [] }))]);
  const [mWrap, model] = field('Model', h('select', { name: 'model' }, (models.models || []).map((m) => option(m.name, `${m.name} (${m.model})`, m.default))));
  const rag = h('input', { type: 'checkbox', name: 'rag', checked: (dbInfo.databases || []).length > 0 });
  const [dbWrap, db] = field('Database', h('select', { name: 'database' }, (dbInfo.databases || []).map((d) => option(d.name, d.name, d.name === dbInfo.default_database))));
  const [toolWrap, toolChoice] = field('Tools', h('select', { name: 'tool_choice' }, option('auto', 'model decides'), option('required', 'must call one'), option('none', 'off')));
  const [maxWrap, maxTokens] = field('Max tokens', h('input', { name: 'max_tokens', type: 'number', placeholder: 'model default', inputmode: 'numeric' }));
  const ragLabel = h('label', { class: 'field' }, h('span', {}, 'RAG'), h('span', {}, rag, ' use documents'));
  const log = h('div', { class: 'log', id: 'chat-log', 'aria-live': 'polite' });
  const input = h('textarea', { name: 'message', placeholder: 'Ask something… (Enter sends, Shift+Enter for a new line)', 'aria-label': 'Message', required: true });
  const send = h('button', { type: 'submit' }, 'Send');
  const stop = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Stop');
  const sessionsBox = h('nav', { class: 'sessions card', 'aria-label': 'Sessions' });

  const bubble = (role, text) => {
    const t = h('div', { class: 'text' }, text || '');
    const el = h('div', { class: 'msg ' + role, 'data-role': role }, t);
    log.append(el);
    log.scrollTop = log.scrollHeight;
    return [el, t];
  };
  const sourcesList = (sources) => h('details', { class: 'sources' }, h('summary', {}, `Sources (${sources.length})`),
    h('ol', {}, sources.map((s) => h('li', {}, h('strong', { class: 'source' }, (s.metadata || {}).document_name || s.document_id || ''),
      ` score ${Number(s.score).toFixed(3)} — `, String(s.content || '').slice(0, 240)))));

  async function loadSessions() {
    const r = await api('GET', `${P}/chat/sessions`).catch(() => ({ sessions: [] }));
    if (!view.alive) return;
    const items = r.sessions.map((s) => h('li', {},
      h('a', { href: `${BASE}/ui/p/${enc(ns)}/${enc(name)}/chat?session=${enc(s.session_id)}`, 'data-nav': '', 'aria-current': s.session_id === session ? 'true' : null, title: s.title },
        s.title || s.session_id),
      h('button', { class: 'danger', 'aria-label': `Delete session ${s.title || s.session_id}`, onclick: async (e) => {
        if (!confirm('Delete this session?')) return;
        try {
          await api('DELETE', `${P}/chat/sessions/${enc(s.session_id)}`);
          if (s.session_id === session) go(`/ui/p/${enc(ns)}/${enc(name)}/chat`); else loadSessions();
        } catch (err) { showError(e.target, err); }
      } }, '×')));
    sessionsBox.replaceChildren(h('h2', {}, 'Sessions'), link(`/ui/p/${enc(ns)}/${enc(name)}/chat`, '+ New chat'),
      items.length ? h('ul', {}, items) : h('p', { class: 'muted' }, 'None yet.'));
  }

  if (session) {
    try {
      const hist = await api('GET', `${P}/chat/sessions/${enc(session)}/history`);
      for (const m of hist.messages || []) if (m.role === 'user' || m.role === 'assistant') bubble(m.role, m.content);
    } catch (err) { showError(log, err); session = null; }
  }

  const ask = async () => {
    const text = input.value.trim();
    if (!text) return;
    clearError(input);
    input.value = '';
    bubble('user', text);
    const [el, out] = bubble('assistant', '');
    el.setAttribute('aria-busy', 'true');
    send.disabled = true;
    stop.hidden = false;
    const ctl = new AbortController();
    view.aborts.push(ctl);
    stop.onclick = () => ctl.abort();
    let thinking = null;
    const headers = session ? { 'X-Session-ID': session } : {};
    const body = { messages: [{ role: 'user', content: text }], stream: true, model: model.value || undefined, rag_enabled: rag.checked, include_sources: rag.checked };
    if (rag.checked && db.value) body.database = db.value;
    if (maxTokens.value !== '') body.max_tokens = Number(maxTokens.value);
    if (toolChoice.value !== 'auto') body.tool_choice = toolChoice.value;
    try {
      const r = await api('POST', `${P}/chat/completions`, body, { raw: true, headers, signal: ctl.signal });
      const sid = r.headers.get('x-session-id');
      if (sid && sid !== session) {
        session = sid;
        history.replaceState(null, '', `${BASE}/ui/p/${enc(ns)}/${enc(name)}/chat?session=${enc(sid)}`);
      }
      let sources = null;
      const tools = new Map();
      await readEvents(r, (ev) => {
        if (ev.type === 'sources') { sources = ev.sources || []; return; }
        if (ev.type === 'error' || ev.error) throw new ApiError(500, (ev.error && ev.error.message) || ev.message || 'generation failed');
        const delta = ((ev.choices || [])[0] || {}).delta || {};
        const think = (text) => {
          if (!thinking) { thinking = h('pre', {}); el.prepend(h('details', { class: 'thinking' }, h('summary', {}, 'Thinking'), thinking)); }
          thinking.textContent += text;
        };
        if (delta.reasoning_content) think(delta.reasoning_content);
        if (ev.thinking && ev.thinking.content && !thinking) think(ev.thinking.content);
        if (ev.tool_step) {
          // A tool the server ran (an MCP server's), with its result.
          const s = ev.tool_step;
          const fn = (s.tool_call || {}).function || {};
          el.insertBefore(h('details', { class: 'tool step', 'data-tool': fn.name || '' },
            h('summary', {}, `${s.ok ? '✓' : '✗'} ${fn.name || 'tool'}(${fn.arguments || ''}) on ${s.server} — ${Math.round(s.duration_ms || 0)} ms`),
            h('pre', {}, s.content || '')), out);
        }
        for (const tc of delta.tool_calls || []) {
          let line = tools.get(tc.index);
          if (!line) { line = h('div', { class: 'tool' }); tools.set(tc.index, line); el.insertBefore(line, out); line.dataset.name = ''; line.dataset.args = ''; }
          if (tc.function && tc.function.name) line.dataset.name += tc.function.name;
          if (tc.function && tc.function.arguments) line.dataset.args += tc.function.arguments;
          line.textContent = `→ calling ${line.dataset.name}(${line.dataset.args})`;
        }
        if (delta.content) { out.textContent += delta.content; log.scrollTop = log.scrollHeight; }
      });
      if (sources && sources.length) el.append(sourcesList(sources));
      loadSessions();
    } catch (err) {
      if (err.name === 'AbortError') out.textContent += ' [stopped]';
      else showError(input, err);
    } finally {
      el.removeAttribute('aria-busy');
      send.disabled = false;
      stop.hidden = true;
    }
  };
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); ask(); } });
  const form = h('form', { id: 'chat-form', onsubmit: (e) => { e.preventDefault(); ask(); } },
    h('div', { class: 'row' }, mWrap, ragLabel, dbWrap, toolWrap, maxWrap),
    log,
    h('div', { class: 'compose' }, input, h('div', { class: 'field' }, send, stop)));
  main.append(h('div', { class: 'chat' }, sessionsBox, h('section', { class: 'card' }, form)));
  await loadSessions();
  input.focus();
}

// ---------- models ----------
async function modelsPage() {
  main.append(h('h1', {}, 'Models'));
  const loadedBox = h('section', { class: 'card', id: 'loaded-models' }, h('h2', {}, 'In memory'));
  const cacheBox = h('section', { class: 'card table-wrap', id: 'cached-models' }, h('h2', {}, 'Cached'));
  const [nameWrap, nameInput] = field('Model (org/name or org/name:QUANT)', h('input', { name: 'model_name', required: true, autocomplete: 'off' }), 'grow');
  const bar = h('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'Download progress' });
  const status = h('span', { role: 'status', id: 'download-status' });
  const go1 = h('button', {}, 'Download');
  main.append(h('form', { class: 'card', id: 'download-form', onsubmit: async (e) => {
    e.preventDefault();
    clearError(nameInput);
    go1.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = 'starting';
    try {
      const r = await api('POST', '/v1/models/download', { model_name: nameInput.value.trim() }, { raw: true });
      await readEvents(r, (ev) => {
        if (ev.event === 'progress') {
          bar.max = ev.total || 1; bar.value = ev.downloaded || 0;
          status.textContent = `${ev.file || ''} ${bytes(ev.downloaded)} of ${bytes(ev.total)} (${ev.percent}%)`;
        } else if (ev.event === 'complete' || ev.event === 'done') {
          bar.value = bar.max; status.textContent = 'downloaded';
        } else if (ev.event === 'error') {
          throw new ApiError(ev.status || 500, ev.message);
        }
      });
      loadModels();
    } catch (err) { status.textContent = ''; bar.hidden = true; showError(nameInput, err); } finally { go1.disabled = false; }
  } }, h('h2', {}, 'Download from the model hub'), h('div', { class: 'row' }, nameWrap, go1), h('p', {}, bar, ' ', status)), loadedBox, cacheBox);

  async function loadModels() {
    const [cached, loaded] = await Promise.all([api('GET', '/v1/models'), api('GET', '/v1/models/loaded')]);
    if (!view.alive) return;
    cacheBox.replaceChildren(h('h2', {}, 'Cached'), (cached.data || []).length ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Model'), h('th', { class: 'num' }, 'Size'), h('th', { class: 'hide-s' }, 'Files'), h('th', {}, ''))),
      h('tbody', {}, cached.data.map((m) => h('tr', { 'data-model': m.model_id }, h('td', {}, m.model_id), h('td', { class: 'num' }, m.size_human),
        h('td', { class: 'hide-s' }, (m.files || []).join(', ')),
        h('td', {}, h('button', { class: 'danger', 'aria-label': `Delete ${m.model_id}`, onclick: async (e) => {
          if (!confirm(`Delete ${m.model_id} from the cache?`)) return;
          try { await api('DELETE', `/v1/models/${m.model_id.split('/').map(enc).join('/')}`); loadModels(); } catch (err) { showError(e.target, err); }
        } }, 'Delete')))))) : h('p', { class: 'muted' }, 'The cache is empty.'));
    const rows = (loaded.models || []).map((m) => h('tr', {}, h('td', {}, m.id), h('td', {}, m.kind), h('td', { class: 'num' }, bytes(m.weights_bytes)),
      h('td', { class: 'num' }, `${m.running} / ${m.queued}`), h('td', { class: 'num' }, `${m.idle_s} s`)));
    loadedBox.replaceChildren(h('h2', {}, 'In memory'),
      h('p', { class: 'muted' }, loaded.resident_bytes ? `Server resident memory: ${bytes(loaded.resident_bytes)}` : ''),
      rows.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Model'), h('th', {}, 'Kind'), h('th', { class: 'num' }, 'Weights'), h('th', { class: 'num' }, 'Running / queued'), h('th', { class: 'num' }, 'Idle'))), h('tbody', {}, rows))
        : h('p', { class: 'muted' }, 'No chat model is loaded; one loads on its first request.'));
  }
  await loadModels();
}

// ---------- status ----------
async function statusPage() {
  main.append(h('h1', {}, 'Status'));
  const healthBox = h('section', { class: 'card table-wrap', id: 'health' }, h('h2', {}, 'Health'));
  const diskBox = h('section', { class: 'card', id: 'disk' }, h('h2', {}, 'Disk'));
  const eventsBox = h('section', { class: 'card table-wrap', id: 'events' }, h('h2', {}, 'Recent events'));
  main.append(healthBox, diskBox, eventsBox);
  const ns = namespace();
  const [health, disk, projects] = await Promise.all([
    api('GET', '/health'), api('GET', '/v1/system/disk').catch((e) => ({ error: e })), api('GET', `/v1/projects/${enc(ns)}`).catch(() => ({ projects: [] }))]);
  healthBox.append(h('p', {}, 'Overall: ', h('strong', { class: health.status === 'healthy' ? 'ok' : 'warn' }, health.status)),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Component'), h('th', {}, 'Status'), h('th', {}, 'Message'), h('th', { class: 'num' }, 'Latency'))),
      h('tbody', {}, (health.components || []).map((c) => h('tr', { 'data-component': c.name }, h('td', {}, c.name),
        h('td', { class: c.status === 'healthy' ? 'ok' : 'warn' }, c.status), h('td', {}, c.message || ''), h('td', { class: 'num' }, `${Number(c.latency_ms || 0).toFixed(1)} ms`))))));
  if (disk.error) showError(diskBox, disk.error);
  else {
    const kv = [];
    for (const [k, v] of Object.entries(disk)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const d = v;
        kv.push(h('dt', {}, k), h('dd', {}, d.path ? `${d.path}: ` : '', d.free_bytes !== undefined ? `${bytes(d.free_bytes)} free of ${bytes(d.total_bytes)}` : JSON.stringify(d)));
      } else kv.push(h('dt', {}, k), h('dd', {}, String(v)));
    }
    diskBox.append(h('dl', { class: 'kv' }, kv));
  }
  const lists = await Promise.all((projects.projects || []).map((p) =>
    api('GET', `/v1/projects/${enc(p.namespace)}/${enc(p.name)}/event_logs?limit=10`).then((r) => (r.events || []).map((e) => Object.assign(e, { project: p.name }))).catch(() => [])));
  const events = lists.flat().sort((a, b) => String(b.timestamp).localeCompare(String(a.timestamp))).slice(0, 30);
  eventsBox.append(h('p', { class: 'muted' }, `Namespace ${ns}, the latest 30 across its projects.`),
    events.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Project'), h('th', {}, 'Event'), h('th', {}, 'Summary'), h('th', { class: 'num' }, 'Duration'))),
      h('tbody', {}, events.map((e) => {
        const s = e.summary || {};
        const rest = Object.entries(s).filter(([k]) => k !== 'duration_ms').map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
        return h('tr', {}, h('td', {}, when(e.timestamp)), h('td', {}, e.project), h('td', {}, e.type), h('td', {}, rest),
          h('td', { class: 'num' }, s.duration_ms !== undefined ? `${Number(s.duration_ms).toFixed(0)} ms` : ''));
      }))) : h('p', { class: 'muted' }, 'No events yet.'));
}

render();
