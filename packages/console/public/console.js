// The Meshlet console's page: plain DOM, no framework, no build step. Everything it shows
// comes from the console's JSON API on the same origin; every change is a POST that
// carries this session's CSRF token in the x-meshlet-csrf header.

const CSRF_HEADER = 'x-meshlet-csrf';
let csrf = '';
let pollTimer = 0;
/** The rules editor's state: the revision it was loaded at (compare-and-set), and whether it was edited. */
let editor = { service: '', revision: 0, dirty: false };

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element: h('td', { class: 'ok' }, 'text', child...). Text is always set as text, never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'width')
      el.style.width = v; // through the CSSOM: the page's CSP allows no inline style attribute
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    headers[CSRF_HEADER] = csrf;
  }
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const data = await res.json().catch(() => ({ error: { code: 'MESHLET_CONSOLE_FAILURE', message: `HTTP ${res.status}` } }));
  if (res.status === 401 && path !== '/api/login') showLogin();
  if (!res.ok) {
    const err = new Error(data.error?.message ?? `HTTP ${res.status}`);
    err.code = data.error?.code;
    err.path = data.error?.path;
    err.status = res.status;
    throw err;
  }
  return data;
}

function showLogin() {
  clearInterval(pollTimer);
  $('#login').hidden = false;
  $('#view').replaceChildren();
  $('#logout').hidden = true;
  $('#who').textContent = '';
}

async function start() {
  $('#login').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('#login-error').textContent = '';
    try {
      const s = await api('POST', '/api/login', { token: $('#login-token').value, author: $('#login-author').value });
      $('#login-token').value = '';
      await loggedIn(s);
    } catch (err) {
      $('#login-error').textContent = err.message;
    }
  });
  $('#logout').addEventListener('click', async () => {
    await api('POST', '/api/logout', {}).catch(() => {});
    csrf = '';
    showLogin();
  });
  window.addEventListener('hashchange', route);
  try {
    await loggedIn(await api('GET', '/api/session'));
  } catch {
    showLogin();
  }
}

async function loggedIn(session) {
  csrf = session.csrf;
  $('#login').hidden = true;
  $('#logout').hidden = false;
  $('#who').textContent = `signed in as ${session.author}`;
  if (session.store) $('#where').textContent = session.store;
  await route();
}

/** #/ — services; #/service/<name>/<tab> — one service. */
async function route() {
  clearInterval(pollTimer);
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'service' && parts[1]) {
    await serviceView(decodeURIComponent(parts[1]), parts[2] ?? 'instances');
  } else {
    await servicesView();
    pollTimer = setInterval(() => servicesView().catch(() => {}), 3000);
  }
}

async function servicesView() {
  const data = await api('GET', '/api/services');
  $('#where').textContent = `rules: ${data.store} · instances: ${data.registry ?? 'none'}`;
  $('#view').replaceChildren(
    h('h1', {}, 'Services'),
    h(
      'table',
      { id: 'services' },
      h(
        'tr',
        {},
        h('th', {}, 'service'),
        h('th', {}, 'instances'),
        h('th', {}, 'passing'),
        h('th', {}, 'versions'),
        h('th', {}, 'rules revision'),
      ),
      data.services.map((s) =>
        h(
          'tr',
          {},
          h('td', {}, h('a', { href: `#/service/${encodeURIComponent(s.name)}/instances` }, s.name)),
          h('td', {}, s.instances),
          h('td', { class: s.passing < s.instances ? 'warn' : '' }, s.passing),
          h('td', {}, s.versions.join(', ') || '-'),
          h('td', {}, s.revision || 'none'),
        ),
      ),
    ),
    data.services.length === 0 ? h('p', { class: 'muted' }, 'No services: none registered and none with rules.') : null,
  );
}

const TABS = [
  ['instances', 'Instances'],
  ['rules', 'Rules'],
  ['gray', 'Gray release'],
  ['history', 'History'],
];

async function serviceView(service, tab) {
  const data = await api('GET', `/api/service?service=${encodeURIComponent(service)}`);
  const body = h('div', { id: `tab-${tab}` });
  $('#view').replaceChildren(
    h('h1', {}, service, ' ', h('span', { class: 'muted', id: 'revision' }, `rules revision ${data.rules.revision || 'none'}`)),
    h(
      'nav',
      { class: 'tabs' },
      TABS.map(([id, label]) =>
        h('a', { href: `#/service/${encodeURIComponent(service)}/${id}`, class: id === tab ? 'active' : '' }, label),
      ),
    ),
    h('div', { id: 'status', role: 'status' }),
    body,
  );
  const render = (d) => {
    $('#revision').textContent = `rules revision ${d.rules.revision || 'none'}`;
    if (tab === 'instances') body.replaceChildren(instancesTab(d));
    else if (tab === 'gray') body.replaceChildren(grayTab(d));
    else if (tab === 'history') body.replaceChildren(historyTab(d));
  };
  if (tab === 'rules') {
    body.replaceChildren(rulesTab(data));
    return;
  }
  render(data);
  // Live views refresh themselves; the rules editor does not (it would lose what is typed).
  if (tab === 'instances' || tab === 'gray') {
    pollTimer = setInterval(async () => {
      if (document.activeElement?.tagName === 'INPUT') return; // do not replace a field being typed in
      try {
        render(await api('GET', `/api/service?service=${encodeURIComponent(service)}`));
      } catch {}
    }, 2000);
  }
}

function instancesTab(d) {
  if (d.instances.length === 0) return h('p', { class: 'muted' }, 'No instances in the registry.');
  return h(
    'table',
    { id: 'instances' },
    h(
      'tr',
      {},
      ['instance', 'address', 'health', 'zone', 'version', 'weight', 'warm-up', 'admin', 'breakers', 'in flight', 'limiter', 'rules'].map(
        (t) => h('th', {}, t),
      ),
    ),
    d.instances.map((i) => {
      const a = i.admin;
      return h(
        'tr',
        {},
        h('td', {}, i.id),
        h('td', {}, i.address),
        h('td', { class: i.health === 'passing' ? 'ok' : 'bad' }, i.health),
        h('td', {}, i.zone ?? '-'),
        h('td', {}, i.version ?? '-'),
        h('td', {}, i.weight ?? '-'),
        h('td', {}, i.warmup ?? '-'),
        h(
          'td',
          { class: a.ok ? (a.degraded.length ? 'warn' : 'ok') : 'muted' },
          a.ok ? (a.degraded.length ? `degraded: ${a.degraded.join(', ')}` : 'ok') : a.reason,
        ),
        h(
          'td',
          {},
          a.ok
            ? a.breakers.length
              ? a.breakers.map((b) => h('span', { class: `pill ${b.state}` }, `${b.name} ${b.state}`))
              : 'none yet'
            : '-',
        ),
        h('td', {}, a.ok && a.inFlight !== null ? a.inFlight : '-'),
        h('td', {}, a.ok && a.limiter ? `${a.limiter.allowed} allowed, ${a.limiter.refused} refused` : '-'),
        h(
          'td',
          {},
          a.ok ? a.rules.map((r) => `${r.service}@${r.revision}${r.lastError ? ` (rejected at ${r.lastError.path})` : ''}`).join(' ') : '-',
        ),
      );
    }),
  );
}

/** One colour per version (or group) for the whole page, so the rules' bar and the traffic's bar agree. */
const colours = new Map();
const colourOf = (key) => {
  if (!colours.has(key)) colours.set(key, colours.size % 5);
  return `c${colours.get(key)}`;
};

function splitBar(parts, id) {
  const total = parts.reduce((n, p) => n + p.value, 0);
  return h(
    'div',
    { class: 'bar', id },
    parts.map((p) =>
      p.value > 0 ? h('span', { class: colourOf(p.key), width: `${(100 * p.value) / total}%`, title: p.label }, p.label) : null,
    ),
  );
}

function grayTab(d) {
  const out = h('div');
  out.append(h('h2', {}, 'What the rules say'));
  if (d.split.rules.length === 0)
    out.append(h('p', { class: 'muted', id: 'rule-split' }, 'No route rules: every version gets traffic by the load balancer.'));
  else
    out.append(
      h(
        'table',
        { id: 'rule-split' },
        h('tr', {}, h('th', {}, 'rule'), h('th', {}, 'when'), h('th', {}, 'split')),
        d.split.rules.map((r) =>
          h(
            'tr',
            {},
            h('td', {}, r.name),
            h('td', {}, r.when),
            h(
              'td',
              {},
              splitBar(
                r.destinations.map((x) => ({ key: x.group.replace(/^version=/, ''), label: `${x.group}: ${x.weight}%`, value: x.weight })),
              ),
            ),
          ),
        ),
      ),
    );
  const live = d.split.live;
  const total = live.byVersion.reduce((n, v) => n + v.requests, 0);
  out.append(
    h('h2', {}, 'What traffic shows'),
    h(
      'p',
      { class: 'muted' },
      `requests served since revision ${live.revision} was seen at ${new Date(live.since).toLocaleTimeString()}; metrics from ${live.measured} of ${live.instances} instances`,
    ),
  );
  out.append(
    h(
      'table',
      { id: 'live-split' },
      h('tr', {}, h('th', {}, 'version'), h('th', {}, 'requests'), h('th', {}, 'share')),
      live.byVersion.map((v) =>
        h(
          'tr',
          { 'data-version': v.version },
          h('td', {}, v.version),
          h('td', { class: 'requests' }, v.requests),
          h('td', { class: 'share' }, total ? `${((100 * v.requests) / total).toFixed(1)}%` : '-'),
        ),
      ),
    ),
    total
      ? splitBar(
          live.byVersion.map((v) => ({
            key: v.version,
            label: `v${v.version}: ${((100 * v.requests) / total).toFixed(1)}%`,
            value: v.requests,
          })),
          'live-bar',
        )
      : h('p', { class: 'muted' }, 'No requests yet since this revision.'),
  );
  const previous = d.history.at(-2);
  out.append(h('h2', {}, 'The way back'));
  if (!previous) out.append(h('p', { class: 'muted' }, 'Nothing to go back to: this is the first version.'));
  else {
    const reason = h('input', {
      class: 'reason',
      id: 'wayback-reason',
      value: `roll back v${d.history.at(-1).version}`,
      'aria-label': 'reason',
    });
    out.append(
      h(
        'div',
        { class: 'row' },
        h(
          'button',
          { class: 'danger', id: 'wayback', onclick: () => rollback(d, previous.version, reason.value) },
          `Roll back to version ${previous.version}`,
        ),
        reason,
        h(
          'span',
          { class: 'muted' },
          `version ${previous.version}: ${previous.action} by ${previous.author}${previous.reason ? ` (“${previous.reason}”)` : ''}`,
        ),
      ),
    );
  }
  return out;
}

async function rollback(d, to, reason) {
  try {
    const r = await api('POST', '/api/rollback', { service: d.service, to, revision: d.rules.revision, reason });
    status(`rolled back: version ${r.version} restores version ${r.restored}`, 'ok');
    await route();
  } catch (err) {
    status(err.message, 'error');
  }
}

function status(text, cls) {
  const el = $('#status');
  if (el) el.replaceChildren(h('span', { class: cls }, text));
}

function diffView(text, id) {
  if (!text) return h('p', { class: 'muted', id }, 'no change');
  return h(
    'pre',
    { class: 'diff', id },
    text
      .split('\n')
      .map((l) =>
        h('div', { class: l.startsWith('+') && !l.startsWith('+++') ? 'add' : l.startsWith('-') && !l.startsWith('---') ? 'del' : '' }, l),
      ),
  );
}

function historyTab(d) {
  if (d.history.length === 0) return h('p', { class: 'muted' }, 'No history: no rules were ever applied.');
  const reason = h('input', { class: 'reason', id: 'history-reason', placeholder: 'reason for a rollback', 'aria-label': 'reason' });
  return h(
    'div',
    {},
    h('div', { class: 'row' }, 'Reason for a rollback:', reason),
    h(
      'table',
      { id: 'history' },
      h(
        'tr',
        {},
        ['version', 'when', 'author', 'action', 'reason', 'change', ''].map((t) => h('th', {}, t)),
      ),
      [...d.history].reverse().map((v) =>
        h(
          'tr',
          { 'data-version': v.version },
          h('td', {}, v.version),
          h(
            'td',
            {},
            new Date(v.at)
              .toISOString()
              .replace('T', ' ')
              .replace(/\.\d+Z$/, 'Z'),
          ),
          h('td', { class: 'author' }, v.author),
          h('td', {}, v.action === 'rollback' ? `rollback to v${v.restored}` : v.action),
          h('td', { class: 'reason' }, v.reason || '-'),
          h('td', {}, h('details', {}, h('summary', {}, 'diff'), diffView(v.diff))),
          h(
            'td',
            {},
            v.version === d.history.at(-1).version
              ? h('span', { class: 'muted' }, 'in force')
              : h('button', { class: 'secondary', onclick: () => rollback(d, v.version, reason.value) }, `Roll back to ${v.version}`),
          ),
        ),
      ),
    ),
  );
}

function rulesTab(d) {
  editor = { service: d.service, revision: d.rules.revision, dirty: false };
  const boxes = new Map();
  const other = {};
  for (const [k, v] of Object.entries(d.rules.sections)) if (!d.kinds.includes(k)) other[k] = v;
  const box = (name, value, title) => {
    const ta = h('textarea', { id: `section-${name}`, spellcheck: 'false', 'aria-label': `${name} section` });
    ta.value = value === undefined ? '' : JSON.stringify(value, null, 2);
    ta.addEventListener('input', changed);
    boxes.set(name, ta);
    return h('div', { class: 'section' }, h('h3', {}, title), ta);
  };
  const verdict = h('p', { id: 'verdict', class: 'muted' }, 'unchanged');
  const diff = h('div', { id: 'diff-box' });
  const reason = h('input', { class: 'reason', id: 'apply-reason', placeholder: 'why (recorded in the history)', 'aria-label': 'reason' });
  const applyBtn = h('button', { id: 'apply', disabled: true, onclick: apply }, 'Apply');
  let timer = 0;

  function documentText() {
    const doc = { service: d.service };
    // Other fields first, as documents usually have them (description before the sections): a smaller diff.
    const ordered = [...boxes].sort(([a], [b]) => (a === '_other' ? -1 : b === '_other' ? 1 : 0));
    for (const [name, ta] of ordered) {
      const text = ta.value.trim();
      if (text === '') continue;
      let value;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw Object.assign(new Error(`${name === '_other' ? 'other fields' : name}: not JSON (${err.message})`), { section: name });
      }
      if (name === '_other') Object.assign(doc, value);
      else doc[name] = value;
    }
    return JSON.stringify(doc, null, 2);
  }

  function changed() {
    editor.dirty = true;
    clearTimeout(timer);
    timer = setTimeout(validate, 250);
  }

  async function validate() {
    for (const ta of boxes.values()) ta.classList.remove('invalid');
    let text;
    try {
      text = documentText();
    } catch (err) {
      boxes.get(err.section)?.classList.add('invalid');
      verdict.className = 'error';
      verdict.textContent = err.message;
      applyBtn.disabled = true;
      return;
    }
    try {
      const r = await api('POST', '/api/validate', { service: d.service, text });
      if (r.ok) {
        verdict.className = 'ok';
        verdict.textContent = `valid: ${r.sections.join(', ') || 'no sections'}`;
        const dr = await api('POST', '/api/diff', { service: d.service, text });
        diff.replaceChildren(h('h3', {}, `Against what is in force (revision ${dr.revision})`), diffView(dr.diff, 'diff'));
        applyBtn.disabled = !dr.diff;
      } else {
        const section = r.error.path?.split(/[.[]/)[0];
        boxes.get(section)?.classList.add('invalid');
        verdict.className = 'error';
        verdict.textContent = `invalid: ${r.error.path ? `${r.error.path}: ` : ''}${r.error.message}`;
        applyBtn.disabled = true;
      }
    } catch (err) {
      verdict.className = 'error';
      verdict.textContent = err.message;
    }
  }

  async function apply() {
    try {
      const r = await api('POST', '/api/apply', {
        service: d.service,
        text: documentText(),
        revision: editor.revision,
        reason: reason.value,
      });
      status(`applied: version ${r.version} (revision ${r.revision})`, 'ok');
      location.hash = `#/service/${encodeURIComponent(d.service)}/gray`;
    } catch (err) {
      status(err.status === 409 ? `${err.message}` : `not applied: ${err.path ? `${err.path}: ` : ''}${err.message}`, 'error');
    }
  }

  return h(
    'div',
    {},
    h(
      'p',
      { class: 'muted' },
      `Editing revision ${d.rules.revision || 'none (no rules yet)'}. Each section is JSON; it is checked as you type by the same validator as \`meshlet rules validate\`.`,
    ),
    d.kinds.map((k) => box(k, d.rules.sections[k], k)),
    box('_other', Object.keys(other).length ? other : undefined, 'other fields (description…)'),
    verdict,
    diff,
    h('div', { class: 'row' }, reason, applyBtn),
  );
}

start();
