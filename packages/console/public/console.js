// The Meshlet console's page: plain DOM, no framework, no build step. Everything it shows
// comes from the console's JSON API on the same origin; every change is a POST that
// carries this session's CSRF token in the x-meshlet-csrf header.

const CSRF_HEADER = 'x-meshlet-csrf';
let csrf = '';
let pollTimer = 0;
/** Which page's polling is live: a page change starts a new one, and the old one stops. */
let pollRun = 0;
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
    // Sizes through the CSSOM: the page's CSP allows no inline style attribute.
    else if (k === 'width') el.style.width = v;
    else if (k === 'height') el.style.height = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/**
 * Refreshes the page `ms` after each answer (never a second request before the first is
 * answered, however slow the console is), until the page changes. `refresh(current)` should
 * draw only while `current()` says the page is still the one it polls for.
 */
function poll(refresh, ms) {
  const run = ++pollRun;
  const current = () => run === pollRun;
  const tick = async () => {
    if (!current()) return;
    try {
      await refresh(current);
    } catch {}
    if (current()) pollTimer = setTimeout(tick, ms);
  };
  pollTimer = setTimeout(tick, ms);
}

function stopPolling() {
  pollRun++;
  clearTimeout(pollTimer);
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
  stopPolling();
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
  stopPolling();
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'explain') {
    await explainView(parts[1] ?? '');
  } else if (parts[0] === 'topology') {
    await topologyView();
    poll(topologyView, 3000);
  } else if (parts[0] === 'service' && parts[1]) {
    await serviceView(decodeURIComponent(parts[1]), parts[2] ?? 'instances');
  } else {
    await servicesView();
    poll(servicesView, 3000);
  }
}

async function servicesView(current = () => true) {
  const data = await api('GET', '/api/services');
  if (!current()) return;
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
    ...(data.services.length === 0 ? [h('p', { class: 'muted' }, 'No services: none registered and none with rules.')] : []),
    ...(data.notListed
      ? [
          h(
            'p',
            { class: 'warn', id: 'not-listed' },
            `${data.notListed} more services not listed (the first ${data.services.length} by name are).`,
          ),
        ]
      : []),
  );
}

const TABS = [
  ['instances', 'Instances'],
  ['rules', 'Rules'],
  ['gray', 'Gray release'],
  ['history', 'History'],
  ['limits', 'Limits'],
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
  if (tab === 'limits') {
    const show = async (current = () => true) => {
      const d = await api('GET', `/api/limits?service=${encodeURIComponent(service)}`);
      if (!current()) return;
      $('#revision').textContent = `rules revision ${d.revision || 'none'}`;
      body.replaceChildren(limitsTab(d));
    };
    await show();
    poll(show, 2000);
    return;
  }
  render(data);
  // Live views refresh themselves; the rules editor and the history do not (they would lose what is typed, or opened).
  if (tab === 'instances' || tab === 'gray') {
    let shown = data;
    poll(async (current) => {
      if (document.activeElement?.tagName === 'INPUT') return; // do not replace a field being typed in
      // The history comes back only when the rules changed since the one shown was read.
      const d = await api('GET', `/api/service?service=${encodeURIComponent(service)}&historyAt=${shown.rules.revision}`);
      if (d.history === undefined) Object.assign(d, { history: shown.history, olderVersions: shown.olderVersions });
      shown = d;
      if (current() && document.activeElement?.tagName !== 'INPUT') render(d);
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
        h('td', {}, i.warmup ?? (i.registeredAt ? `registered ${new Date(i.registeredAt).toLocaleTimeString()}` : '-')),
        h(
          'td',
          { class: a.ok ? (a.degraded.length ? 'warn' : 'ok') : 'muted' },
          a.ok ? (a.degraded.length ? `degraded: ${a.degraded.join(', ')}` : 'ok') : a.reason,
        ),
        h(
          'td',
          {},
          a.ok
            ? a.breakers.length || a.breakersNotShown
              ? [
                  a.breakers.map((b) => h('span', { class: `pill ${b.state}` }, `${b.name} ${b.state}`)),
                  a.breakersNotShown ? h('span', { class: 'muted' }, ` and ${a.breakersNotShown} more`) : null,
                ]
              : 'none yet'
            : '-',
        ),
        h('td', {}, a.ok && a.inFlight !== null ? a.inFlight : '-'),
        h('td', {}, a.ok && a.limiter ? `${a.limiter.allowed} allowed, ${a.limiter.refused} refused` : '-'),
        h(
          'td',
          {},
          a.ok
            ? a.rules.map((r) => `${r.service}@${r.revision}${r.lastError ? ` (rejected at ${r.lastError.path})` : ''}`).join(' ') +
                (a.rulesNotShown ? ` and ${a.rulesNotShown} more` : '')
            : '-',
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
              // Who gets which group: by this tag's value, the same group every time (text, never markup).
              r.stickyBy ? h('div', { class: 'muted sticky' }, `sticky by ${r.stickyBy}`) : null,
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

function limitsTab(d) {
  const max = Math.max(1, ...[...d.over.allowed, ...d.over.refused, ...d.over.shadow].map((x) => x.delta));
  const bars = (steps, cls) =>
    h(
      'div',
      { class: 'spark', id: `spark-${cls}` },
      steps.map((x) =>
        h('span', { class: cls, height: `${Math.round((60 * x.delta) / max)}px`, title: `${x.delta} in ${x.seconds.toFixed(1)} s` }),
      ),
    );
  return h(
    'div',
    {},
    h('h2', {}, 'Rules'),
    d.rules.length
      ? h(
          'ul',
          { id: 'limit-rules' },
          d.rules.map((r) => h('li', {}, h('code', {}, r))),
        )
      : h('p', { class: 'muted', id: 'limit-rules' }, 'No ratelimit rules for this service.'),
    d.mode === 'shadow'
      ? h('p', { class: 'warn', id: 'limit-mode' }, 'Shadow mode: these rules are evaluated and counted, not enforced.')
      : h('p', { class: 'muted', id: 'limit-mode' }, 'Enforced.'),
    h(
      'h2',
      {},
      `Admitted ${d.totals.allowed}, refused ${d.totals.refused}, would have refused ${d.totals.shadowRefused} (shadow) since the instances started`,
    ),
    h(
      'p',
      { id: 'shadow-kinds' },
      'Shadow decisions counted by these instances (every kind, all destinations): ',
      ['route', 'ratelimit', 'auth', 'breaker', 'fault'].map((k) => h('span', { 'data-kind': k }, `${k} ${d.totals.shadow?.[k] ?? 0} `)),
    ),
    h('h2', {}, 'Per rule'),
    ruleLimitsTable(d.byRule ?? []),
    h('h2', {}, 'Outbound adaptive limits of these instances, per destination'),
    outboundLimitsTable(d.outbound ?? []),
    h('h2', {}, 'Breakers of calls to this service: what happened, and what would have'),
    breakerShadowTable(d.breakers),
    h('h2', {}, 'The whole service over time'),
    h('p', { class: 'muted' }, 'Admitted per poll of this page (every 2 s):'),
    bars(d.over.allowed, 'allowed'),
    h('p', { class: 'muted' }, 'Refused per poll:'),
    bars(d.over.refused, 'refused'),
    h('p', { class: 'muted' }, 'Would have refused (shadow mode) per poll:'),
    bars(d.over.shadow, 'refused'),
    h(
      'table',
      { id: 'limits' },
      h(
        'tr',
        {},
        ['instance', 'version', 'admin', 'admitted', 'refused', 'would have refused', 'in flight', 'degraded'].map((t) => h('th', {}, t)),
      ),
      d.instances.map((i) =>
        h(
          'tr',
          { 'data-instance': i.id },
          h('td', {}, i.id),
          h('td', {}, i.version ?? '-'),
          h('td', {}, i.admin),
          h('td', { class: 'allowed' }, i.allowed ?? '-'),
          h('td', { class: 'refused' }, i.refused ?? '-'),
          h('td', { class: 'shadow' }, i.shadowRefused ?? '-'),
          h('td', {}, i.inFlight ?? '-'),
          h('td', { class: i.degraded ? 'warn' : '' }, i.degraded ? 'yes (local share)' : 'no'),
        ),
      ),
    ),
  );
}

/** Each instance's adaptive limit per destination it calls: limit, in flight, refused, refused per poll. */
function outboundLimitsTable(rows) {
  if (rows.length === 0)
    return h(
      'p',
      { class: 'muted', id: 'outbound-limits' },
      'No outbound adaptive limits (ratelimit.outboundAdaptive is off, or no call made yet).',
    );
  return h(
    'table',
    { id: 'outbound-limits' },
    h(
      'tr',
      {},
      ['instance', 'destination', 'limit', 'in flight', 'admitted', 'refused', 'refused per poll'].map((t) => h('th', {}, t)),
    ),
    rows.map((r) =>
      h(
        'tr',
        { 'data-instance': r.instance, 'data-service': r.service },
        h('td', {}, r.instance),
        h('td', {}, r.service),
        h('td', { class: 'limit' }, `${r.limit}${r.probing ? ' (probing)' : ''}`),
        h('td', { class: 'in-flight' }, r.inFlight),
        h('td', { class: 'allowed' }, r.admitted),
        h('td', { class: r.refused > 0 ? 'refused bad' : 'refused' }, r.refused),
        h('td', {}, miniSpark(r.over.refused, 'refused', Math.max(1, ...r.over.refused.map((x) => x.delta)))),
      ),
    ),
  );
}

/** A small sparkline of a counter's increases per poll, scaled to `max`. */
function miniSpark(steps, cls, max, id) {
  return h(
    'div',
    { class: 'spark mini', id },
    steps.map((x) =>
      h('span', { class: cls, height: `${Math.round((24 * x.delta) / max)}px`, title: `${x.delta} in ${x.seconds.toFixed(1)} s` }),
    ),
  );
}

/** One row per rate limit rule (summed over the instances): its counts and its admitted / refused series. */
function ruleLimitsTable(rules) {
  if (rules.length === 0)
    return h('p', { class: 'muted', id: 'rule-limits' }, 'No per-rule counts: no rules in force, or instances too old to report them.');
  return h(
    'table',
    { id: 'rule-limits' },
    h(
      'tr',
      {},
      ['rule', 'admitted', 'refused', 'would have refused', 'admitted per poll', 'refused (or would have) per poll'].map((t) =>
        h('th', {}, t),
      ),
    ),
    rules.map((r) => {
      const refusing = r.over.refused.map((x, i) => ({ ...x, delta: x.delta + (r.over.shadow[i]?.delta ?? 0) }));
      const max = Math.max(1, ...r.over.allowed.map((x) => x.delta), ...refusing.map((x) => x.delta));
      const recent = refusing.slice(-3).reduce((n, x) => n + x.delta, 0);
      return h(
        'tr',
        { 'data-rule': r.name },
        h('td', {}, h('code', {}, r.name)),
        h('td', { class: 'allowed' }, r.allowed),
        h('td', { class: r.refused > 0 ? 'refused bad' : 'refused' }, r.refused),
        h('td', { class: r.shadowRefused > 0 ? 'shadow warn' : 'shadow' }, r.shadowRefused),
        h('td', {}, miniSpark(r.over.allowed, 'allowed', max)),
        h('td', { class: 'recent', 'data-recent': recent }, miniSpark(refusing, 'refused', max)),
      );
    }),
  );
}

/** Breakers of calls to this service, from its callers: what the enforced breakers did beside what a shadow section would have. */
function breakerShadowTable(b) {
  if (!b || b.callers === 0)
    return h(
      'p',
      { class: 'muted', id: 'breaker-shadow' },
      'No caller reports breakers for this service (admin endpoints answering: none call it yet).',
    );
  const s = b.shadow;
  const row = (what, happened, would) =>
    h(
      'tr',
      {},
      h('td', {}, what),
      h('td', { class: 'happened' }, happened ?? '-'),
      h('td', { class: would ? 'would warn' : 'would' }, would ?? '-'),
    );
  return h(
    'div',
    {},
    h(
      'p',
      { class: s ? 'warn' : 'muted' },
      s
        ? `The breaker section is in shadow mode: ${b.callers} caller instance(s) governed by the safe defaults, counting what it would have done.`
        : `Enforced (no breaker section in shadow mode), from ${b.callers} caller instance(s).`,
    ),
    h(
      'table',
      { id: 'breaker-shadow' },
      h(
        'tr',
        {},
        ['', 'what happened', 'what the shadow section would have done'].map((t) => h('th', {}, t)),
      ),
      row('breakers opened', b.opened, s?.wouldOpen),
      row('calls rejected', b.rejected, s?.wouldReject),
      row('attempts to an instance it would have ejected', null, s?.wouldExclude),
      row('attempts over its timeoutMs', null, s?.wouldTimeOut),
    ),
  );
}

const SVG_NS = 'http://www.w3.org/2000/svg';
/** An SVG element; attributes, never a style. */
function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * Each service's column: its distance from a service nothing calls (breadth first, so linear
 * in services and edges); services only in cycles start from the first of them by name.
 */
function depths(services, edges) {
  const calls = new Map(services.map((n) => [n, []]));
  const called = new Set();
  for (const e of edges) {
    if (e.from === e.to || !calls.has(e.from) || !calls.has(e.to)) continue;
    calls.get(e.from).push(e.to);
    called.add(e.to);
  }
  const depth = new Map();
  const walk = (roots) => {
    const queue = roots.filter((n) => !depth.has(n));
    for (const n of queue) depth.set(n, 0);
    for (let k = 0; k < queue.length; k++) {
      for (const to of calls.get(queue[k])) {
        if (depth.has(to)) continue;
        depth.set(to, depth.get(queue[k]) + 1);
        queue.push(to);
      }
    }
  };
  walk(services.filter((n) => !called.has(n)));
  for (const n of services) if (!depth.has(n)) walk([n]);
  return depth;
}

async function topologyView(current = () => true) {
  const d = await api('GET', '/api/topology');
  if (!current()) return;
  // Columns by depth, callers left of what they call.
  const depth = depths(d.services, d.edges);
  const columns = new Map();
  for (const n of d.services) {
    const c = Math.min(depth.get(n) ?? 0, 10);
    if (!columns.has(c)) columns.set(c, []);
    columns.get(c).push(n);
  }
  const pos = new Map();
  for (const [c, names] of columns) {
    for (const [k, n] of names.entries()) pos.set(n, { x: 20 + c * 400, y: 20 + k * 80 });
  }
  const width = 20 + Math.max(0, ...columns.keys()) * 400 + 200;
  const height = 40 + Math.max(1, ...[...columns.values()].map((v) => v.length)) * 80;
  const svg = svgEl('svg', {
    class: 'topology',
    id: 'topology-graph',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': 'who calls whom',
  });
  const marker = svgEl('marker', {
    id: 'arrow',
    viewBox: '0 0 10 10',
    refX: 10,
    refY: 5,
    markerWidth: 8,
    markerHeight: 8,
    orient: 'auto-start-reverse',
  });
  marker.append(svgEl('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8c959f' }));
  const defs = svgEl('defs');
  defs.append(marker);
  svg.append(defs);
  for (const e of d.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const [x1, y1, x2, y2] = [a.x + 180, a.y + 22, b.x, b.y + 22];
    svg.append(svgEl('line', { x1, y1, x2, y2, 'marker-end': 'url(#arrow)', class: e.errorRate > 0.05 ? 'failing' : '' }));
    const rate = e.rate === null ? '' : `, ${e.rate.toFixed(1)}/s`;
    svg.append(
      svgEl(
        'text',
        { x: Math.min(x1, x2) + 12, y: (y1 + y2) / 2 - 8, class: 'edge' },
        `${e.requests} calls${rate}, ${(100 * e.errorRate).toFixed(1)}% errors`,
      ),
    );
  }
  for (const [n, p] of pos) {
    svg.append(svgEl('rect', { x: p.x, y: p.y, width: 180, height: 44, rx: 6 }));
    svg.append(svgEl('text', { x: p.x + 10, y: p.y + 27 }, n));
  }
  $('#view').replaceChildren(
    h('h1', {}, 'Topology'),
    h(
      'p',
      { class: 'muted' },
      `who calls whom, from the client metrics of ${d.measured} of ${d.instances} instances; rates between the last two polls`,
    ),
    ...(d.notShown?.services || d.notShown?.called
      ? [
          h(
            'p',
            { class: 'warn', id: 'topology-not-shown' },
            `Not shown: ${d.notShown.services} more registered services (the first ${d.services.length} by name are shown), and calls to ${d.notShown.called} services that are not among them.`,
          ),
        ]
      : []),
    svg,
    h(
      'table',
      { id: 'edges' },
      h(
        'tr',
        {},
        ['caller', 'called', 'calls', 'per second', 'error rate'].map((t) => h('th', {}, t)),
      ),
      d.edges.map((e) =>
        h(
          'tr',
          { 'data-edge': `${e.from}>${e.to}` },
          h('td', {}, e.from),
          h('td', {}, e.to),
          h('td', { class: 'requests' }, e.requests),
          h('td', {}, e.rate === null ? '-' : e.rate.toFixed(1)),
          h('td', { class: e.errorRate > 0.05 ? 'bad' : '' }, `${(100 * e.errorRate).toFixed(1)}%`),
        ),
      ),
    ),
  );
}

async function explainView(trace) {
  const input = h('input', {
    id: 'explain-trace',
    value: trace,
    placeholder: '32 hex digits of a traceparent',
    size: 40,
    'aria-label': 'trace id',
  });
  const out = h('div', { id: 'explain-out' });
  const form = h(
    'form',
    {
      class: 'row',
      onsubmit: (e) => {
        e.preventDefault();
        location.hash = `#/explain/${encodeURIComponent(input.value.trim())}`;
      },
    },
    input,
    h('button', { type: 'submit' }, 'Explain'),
  );
  $('#view').replaceChildren(
    h('h1', {}, 'Explain a request'),
    h('p', { class: 'muted' }, 'What Meshlet decided at each hop of one trace, from the trace logs the console was given (--trace-log).'),
    form,
    out,
  );
  if (!trace) return;
  try {
    const d = await api('GET', `/api/explain?trace=${encodeURIComponent(trace)}`);
    out.replaceChildren(
      h(
        'table',
        { id: 'explain' },
        h(
          'tr',
          {},
          ['hop', 'status', 'ms', 'what decided'].map((t) => h('th', {}, t)),
        ),
        d.hops.map((hop) =>
          h(
            'tr',
            {},
            h('td', { class: `depth-${Math.min(hop.depth, 8)}` }, `${'· '.repeat(hop.depth)}${hop.service} ${hop.side} ${hop.name}`),
            h('td', {}, hop.status ?? '-'),
            h('td', {}, hop.durationMs.toFixed(1)),
            h(
              'td',
              {},
              h(
                'ul',
                {},
                hop.decisions.map((x) => h('li', {}, x)),
              ),
            ),
          ),
        ),
      ),
      d.badLines ? h('p', { class: 'warn' }, `${d.badLines} unreadable lines skipped`) : '',
    );
  } catch (err) {
    out.replaceChildren(h('p', { class: 'error' }, err.message));
  }
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

/** The newest versions come with the service; older ones a page at a time, each version's diff when it is opened. */
function historyTab(d) {
  if (d.history.length === 0) return h('p', { class: 'muted' }, 'No history: no rules were ever applied.');
  const reason = h('input', { class: 'reason', id: 'history-reason', placeholder: 'reason for a rollback', 'aria-label': 'reason' });
  const inForce = d.history.at(-1).version;
  const row = (v) => {
    const change = h('details', {}, h('summary', {}, 'diff'));
    change.addEventListener(
      'toggle',
      async () => {
        try {
          const r = await api('GET', `/api/diff?service=${encodeURIComponent(d.service)}&version=${v.version}`);
          change.append(diffView(r.diff));
        } catch (err) {
          change.append(h('p', { class: 'error' }, err.message));
        }
      },
      { once: true },
    );
    return h(
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
      h('td', {}, change),
      h(
        'td',
        {},
        v.version === inForce
          ? h('span', { class: 'muted' }, 'in force')
          : h('button', { class: 'secondary', onclick: () => rollback(d, v.version, reason.value) }, `Roll back to ${v.version}`),
      ),
    );
  };
  const table = h(
    'table',
    { id: 'history' },
    h(
      'tr',
      {},
      ['version', 'when', 'author', 'action', 'reason', 'change', ''].map((t) => h('th', {}, t)),
    ),
    [...d.history].reverse().map(row),
  );
  const more = h('div', { class: 'row' });
  const olderThan = (oldest, count) => {
    if (count === 0) return more.replaceChildren();
    const button = h('button', { class: 'secondary', id: 'history-more' }, `Load older versions (${count} more)`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const page = await api('GET', `/api/history?service=${encodeURIComponent(d.service)}&before=${oldest}`);
        table.append(...[...page.history].reverse().map(row));
        olderThan(page.history[0]?.version ?? oldest, page.history.length ? page.olderVersions : 0);
      } catch (err) {
        button.disabled = false;
        status(err.message, 'error');
      }
    });
    more.replaceChildren(button);
  };
  olderThan(d.history[0].version, d.olderVersions ?? 0);
  return h('div', {}, h('div', { class: 'row' }, 'Reason for a rollback:', reason), table, more);
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
