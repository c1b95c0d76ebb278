// The console in a real browser (Debian's Chromium through playwright-core), on a real
// Consul agent, with real meshes on 127.0.0.1 registered there: log in with the token,
// apply a gray rule through the page, watch the split the traffic shows, roll back in one
// click, find the change in the history. Fails, never skips, without Chromium or Consul
// (scripts/chromium.sh installs the one, scripts/install-consul.sh builds the other).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConsulRegistryView } from '@meshlet/cli';
import { RULES_HISTORY_PREFIX, RuleRepository } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, type Mesh, fetch as meshFetch } from 'meshlet';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { HISTORY_PAGE, type RunningConsole, startConsole } from '../src/index.js';

const TOKEN = 'browser-test-console-token-0123';
const ADMIN_TOKEN = 'browser-test-admin-token-0123456';
/** Where the README's screenshots go, with `MESHLET_SCREENSHOTS=1` (off by default: a test run leaves the tree clean). */
const DOCS = fileURLToPath(new URL('../../../../docs/', import.meta.url));

/** The flags the project runs Chromium with: no sandbox (CI containers), nothing phoning home. */
export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function chromiumPath(): string {
  const path = process.env.MESHLET_CHROMIUM;
  if (!path || !existsSync(path)) {
    throw new Error(
      `MESHLET_CHROMIUM must name a Chromium binary (got ${JSON.stringify(path)}): run scripts/chromium.sh, or npm test, which does`,
    );
  }
  return path;
}

const baseline = {
  service: 'user-service',
  description: 'all traffic on v1.20',
  route: { default: [{ group: { version: '1.20.0' }, weight: 100 }] },
};
const grayRoute = {
  // Beta users, none in the test's traffic: a sticky rule the gray page shows as such.
  rules: [
    {
      name: 'beta',
      when: [{ tag: 'user-tier', op: 'equals', value: 'beta' }],
      stickyBy: 'user-id',
      destinations: [
        { group: { version: '1.21.0' }, weight: 50 },
        { group: { version: '1.20.0' }, weight: 50 },
      ],
    },
  ],
  default: [
    { group: { version: '1.21.0' }, weight: 20 },
    { group: { version: '1.20.0' }, weight: 80 },
  ],
};

/** Polls a condition (no fixed sleep decides anything); fails after `attempts`. */
async function waitFor(condition: () => Promise<boolean>, what: string, attempts = 600): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The page's document, inside page functions (serialised into the page; this package compiles without the DOM types). */
interface PageDocument {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): { length: number };
}

interface Running {
  mesh: Mesh;
  server: Server;
}

describe('the console in Chromium, on Consul', () => {
  let agent: ConsulAgent;
  let console_: RunningConsole;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const running: Running[] = [];
  let gateway: Mesh;
  let gatewayUrl: string;
  const registries: ConsulRegistry[] = [];
  const pageErrors: string[] = [];
  let traceDir: string;

  async function service(name: string, version: string, id: string, downstream?: string): Promise<Running> {
    const registry = new ConsulRegistry({ address: agent.address, healthCheck: { type: 'http', interval: '2s' } });
    registries.push(registry);
    const mesh = createMesh({
      service: name,
      version,
      instanceId: id,
      registry,
      rules: new ConsulKvStore({ address: agent.address }),
      admin: { token: ADMIN_TOKEN },
      tracing: { log: { path: join(traceDir, `${id}.jsonl`) }, batch: { delayMs: 10 } },
      metadata: { zone: 'zone-a' },
      // A caller limits its calls per destination: the Limits page shows the limit.
      ...(downstream ? { ratelimit: { outboundAdaptive: true } } : {}),
    });
    const server = createServer(
      mesh.httpHandler(async (_req, res) => {
        if (!downstream) {
          res.end(JSON.stringify({ version }));
          return;
        }
        const answer = await meshFetch(`http://${downstream}/`);
        res.end(await answer.text());
      }),
    );
    server.listen(0, '127.0.0.1');
    await mesh.serve(server, { signals: [], deregisterDelayMs: 0, drainTimeoutMs: 1_000 });
    const r = { mesh, server };
    running.push(r);
    return r;
  }

  /** Sends n requests through the gateway and counts the versions that answered. */
  async function traffic(n: number): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const { version } = (await (await globalThis.fetch(gatewayUrl)).json()) as { version: string };
      counts[version] = (counts[version] ?? 0) + 1;
    }
    return counts;
  }

  /** Waits until the gray page's live table shows these request counts. */
  const liveShows = (expected: Record<string, number>) =>
    page.waitForFunction((want) => {
      const n = (v: string) =>
        Number(
          (globalThis as unknown as { document: PageDocument }).document.querySelector(`#live-split tr[data-version="${v}"] .requests`)
            ?.textContent ?? -1,
        );
      return Object.entries(want).every(([v, c]) => n(v) === c);
    }, expected);

  const shot = async (name: string) => {
    // Every main page passes through here: nothing on it reads null, undefined or NaN.
    assert.doesNotMatch(await page.innerText('#view'), /\bnull\b|\bundefined\b|\bNaN\b/, name);
    if (process.env.MESHLET_SCREENSHOTS !== '1') return;
    await mkdir(DOCS, { recursive: true });
    await page.screenshot({ path: join(DOCS, name), fullPage: true });
  };

  before(async () => {
    const executablePath = chromiumPath();
    traceDir = await mkdtemp(join(tmpdir(), 'meshlet-console-traces-'));
    agent = await startConsulAgent();
    const kv = new ConsulKvStore({ address: agent.address });
    const kinds = RULE_KINDS;
    await new RuleRepository({ kv, kinds: kinds.map((k) => k.kind) }).apply(JSON.stringify(baseline), {
      author: 'setup',
      reason: 'start with all traffic on v1.20',
    });
    await service('user-service', '1.20.0', 'user-a');
    await service('user-service', '1.21.0', 'user-c');
    // Both passing in Consul before the gateway first looks them up.
    const view = new ConsulRegistryView({ address: agent.address });
    await waitFor(
      async () => (await view.instances('user-service')).filter((i) => i.health === 'passing').length === 2,
      'user-service passing',
    );
    const g = await service('gateway', '1.0.0', 'gateway-1', 'user-service');
    gateway = g.mesh;
    gatewayUrl = `http://127.0.0.1:${gateway.instance?.port}/`;
    await gateway.rulesInForce('user-service');
    console_ = await startConsole({
      kv,
      storeDescription: `consul ${agent.address}`,
      kinds,
      registry: new ConsulRegistryView({ address: agent.address }),
      adminToken: ADMIN_TOKEN,
      adminTimeoutMs: 20_000,
      traceLogs: ['gateway-1', 'user-a', 'user-c'].map((id) => join(traceDir, `${id}.jsonl`)),
      token: TOKEN,
      port: 0,
    });
    profile = await mkdtemp(join(tmpdir(), 'meshlet-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 800 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    // Script errors and CSP violations fail the test (a blocked style or script is a broken page).
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 401/.test(m.text())) pageErrors.push(m.text());
    });
  });

  after(async () => {
    await context?.close();
    await console_?.close();
    for (const r of running.reverse()) await r.mesh.shutdown();
    for (const r of registries) await r.close();
    await agent?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
    if (traceDir) await rm(traceDir, { recursive: true, force: true });
  });

  it('logs in, applies a gray rule, sees the split, rolls back in one click, finds the change in the history', async () => {
    // Log in with the token.
    await page.goto(console_.url);
    await page.fill('#login-token', 'not-the-token-at-all');
    await page.fill('#login-author', 'alice');
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#login-error:text("not the console token")');
    await page.fill('#login-token', TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#services a:text("user-service")');
    await page.waitForSelector('#who:text("signed in as alice")');
    await shot('console-services.png');

    // Instances with their live state from the admin endpoints.
    await page.click('#services a:text("user-service")');
    await page.waitForSelector('#instances tr:has-text("user-c")');
    await page.waitForFunction(
      () => (globalThis as unknown as { document: PageDocument }).document.querySelectorAll('#instances td.ok').length >= 4,
    );
    const row = await page.textContent('#instances tr:has-text("user-c")');
    assert.match(row ?? '', /1\.21\.0/);
    assert.match(row ?? '', /zone-a/);
    await shot('console-instances.png');

    // The rules editor: an invalid split is refused as you type, by the CLI's validator.
    await page.click('.tabs a:text("Rules")');
    await page.waitForSelector('#section-route');
    const broken = {
      default: [
        { group: { version: '1.21.0' }, weight: 20 },
        { group: { version: '1.20.0' }, weight: 70 },
      ],
    };
    await page.fill('#section-route', JSON.stringify(broken, null, 2));
    await page.waitForSelector('#verdict.error:text("sum to 100")');
    assert.equal(await page.isDisabled('#apply'), true);
    await page.fill('#section-route', JSON.stringify(grayRoute, null, 2));
    await page.waitForSelector('#verdict.ok');
    await page.waitForSelector('#diff:has-text("1.21.0")');
    await page.fill('#apply-reason', 'gray: 20% to v1.21');
    await shot('console-rules.png');
    await page.click('#apply');

    // The gray page: the rules' split, then the traffic's.
    await page.waitForSelector('#rule-split:has-text("version=1.21.0: 20%")');
    assert.equal(await page.textContent('#rule-split tr:has-text("beta") .sticky'), 'sticky by user-id');
    const gray = await gateway.rulesInForce('user-service');
    await page.waitForSelector(`text=since revision ${gray.revision} was seen`);
    const sent = await traffic(200);
    assert.ok((sent['1.21.0'] ?? 0) > 0 && (sent['1.20.0'] ?? 0) > 0, JSON.stringify(sent));
    await liveShows({ '1.21.0': sent['1.21.0'] ?? 0, '1.20.0': sent['1.20.0'] ?? 0 });
    await shot('console-gray.png');

    // One click back to the rule that kept everything on v1.20.
    await page.click('#wayback');
    await page.waitForSelector('#rule-split:has-text("version=1.20.0: 100%")');
    const back = await gateway.rulesInForce('user-service');
    assert.ok(back.revision > gray.revision);
    await page.waitForSelector(`text=since revision ${back.revision} was seen`);
    const after = await traffic(100);
    assert.deepEqual(after, { '1.20.0': 100 });
    await liveShows({ '1.20.0': 100, '1.21.0': 0 });

    // The history: who, why, and what changed.
    await page.click('.tabs a:text("History")');
    await page.waitForSelector('#history tr[data-version="3"]');
    const applied = await page.textContent('#history tr[data-version="2"]');
    assert.match(applied ?? '', /alice/);
    assert.match(applied ?? '', /gray: 20% to v1\.21/);
    const rolledBack = await page.textContent('#history tr[data-version="3"]');
    assert.match(rolledBack ?? '', /alice/);
    assert.match(rolledBack ?? '', /rollback to v1/);
    await page.click('#history tr[data-version="2"] summary');
    await page.waitForSelector('#history tr[data-version="2"] pre.diff .add:has-text("1.21.0")');
    await shot('console-history.png');

    // Topology from the client metrics: the gateway called user-service 300 times, no errors.
    await page.click('#nav-topology');
    await page.waitForSelector('#edges tr[data-edge="gateway>user-service"] .requests:text-is("300")');
    assert.match((await page.textContent('#edges tr[data-edge="gateway>user-service"]')) ?? '', /0\.0%$/);
    assert.equal(await page.locator('#topology-graph rect').count(), 2);
    await shot('console-topology.png');

    // Limits: what the gateway's limiter admitted, per instance and over time.
    await page.goto(`${console_.url}#/service/gateway/limits`);
    await page.waitForSelector('#limits tr[data-instance="gateway-1"] .allowed:text-is("300")');
    // The gateway's outbound adaptive limit toward user-service: its 300 calls admitted, none refused.
    const outbound = '#outbound-limits tr[data-instance="gateway-1"][data-service="user-service"]';
    await page.waitForSelector(`${outbound} .allowed:text-is("300")`);
    assert.match((await page.textContent(`${outbound} .limit`)) ?? '', /^\d+( \(probing\))?$/);
    assert.equal(await page.textContent(`${outbound} .refused`), '0');
    // A limit in shadow mode: every request admitted, what it would have refused counted.
    const kinds = RULE_KINDS;
    await new RuleRepository({ kv: new ConsulKvStore({ address: agent.address }), kinds: kinds.map((k) => k.kind) }).apply(
      JSON.stringify({
        service: 'gateway',
        ratelimit: { mode: 'shadow', rules: [{ name: 'one-a-minute', rate: 1, unit: 'minute', burst: 1 }] },
      }),
      { author: 'alice', reason: 'try a limit before enforcing it' },
    );
    await gateway.rulesInForce('gateway');
    assert.deepEqual(await traffic(5), { '1.20.0': 5 });
    await page.waitForSelector('#limit-mode:has-text("Shadow mode")');
    await page.waitForSelector('#limits tr[data-instance="gateway-1"] .shadow:text-is("4")');
    await page.waitForSelector('#limits tr[data-instance="gateway-1"] .refused:text-is("0")');
    // Shadow decisions of every kind, counted by the gateway's instances.
    await page.waitForSelector('#shadow-kinds [data-kind="ratelimit"]:text-is("ratelimit 4")');
    await page.waitForSelector('#shadow-kinds [data-kind="breaker"]:text-is("breaker 0")');
    // Per rule: the shadow rule admitted all five, and would have refused four.
    await page.waitForSelector('#rule-limits tr[data-rule="one-a-minute"] .shadow:text-is("4")');
    await page.waitForSelector('#rule-limits tr[data-rule="one-a-minute"] .allowed:text-is("5")');

    // Enforced now, two rules: one refuses what the gateway is sent, the other (POST only) sees nothing.
    await new RuleRepository({ kv: new ConsulKvStore({ address: agent.address }), kinds: kinds.map((k) => k.kind) }).apply(
      JSON.stringify({
        service: 'gateway',
        ratelimit: {
          rules: [
            { name: 'gets-per-minute', api: { method: 'GET', path: '/' }, rate: 1, unit: 'minute', burst: 1 },
            { name: 'posts', api: { method: 'POST', path: '/' }, rate: 100, burst: 100 },
          ],
        },
      }),
      { author: 'alice', reason: 'enforce a limit on GET /' },
    );
    await gateway.rulesInForce('gateway');
    const statuses = async (n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await globalThis.fetch(gatewayUrl)).status);
      return out;
    };
    assert.deepEqual(await statuses(3), [200, 429, 429]);
    await page.waitForSelector('#rule-limits tr[data-rule="gets-per-minute"] .refused:text-is("2")');
    await page.waitForSelector('#rule-limits tr[data-rule="posts"] .refused:text-is("0")');
    // Over time: refused rises for that rule, and its recent series shows it; not for the other.
    assert.deepEqual(await statuses(4), [429, 429, 429, 429]);
    await page.waitForSelector('#rule-limits tr[data-rule="gets-per-minute"] .refused:text-is("6")');
    await page.waitForSelector('#rule-limits tr[data-rule="gets-per-minute"] td.recent:not([data-recent="0"])');
    assert.equal(await page.getAttribute('#rule-limits tr[data-rule="posts"] td.recent', 'data-recent'), '0');
    assert.equal(await page.textContent('#rule-limits tr[data-rule="posts"] .allowed'), '0');
    assert.ok((await page.locator('#rule-limits tr[data-rule="gets-per-minute"] .spark span.refused').count()) > 0);
    await page.waitForSelector('#limits tr[data-instance="gateway-1"] .refused:text-is("6")');
    await shot('console-limits.png');

    // Breakers of calls to user-service, as its caller (the gateway) reports them: a breaker
    // section in shadow mode beside what the enforced defaults did.
    await new RuleRepository({ kv: new ConsulKvStore({ address: agent.address }), kinds: kinds.map((k) => k.kind) }).apply(
      JSON.stringify({
        ...baseline,
        breaker: { mode: 'shadow', rules: [{ level: 'service', consecutiveFailures: 5, sleepWindowMs: 60_000 }] },
      }),
      { author: 'alice', reason: 'watch a breaker before enforcing it' },
    );
    await gateway.rulesInForce('user-service');
    await page.goto(`${console_.url}#/service/user-service/limits`);
    await page.waitForSelector('#breaker-shadow tr:has-text("breakers opened")');
    await page.waitForSelector('text=The breaker section is in shadow mode');
    assert.match((await page.textContent('#breaker-shadow')) ?? '', /calls rejected\s*0\s*0/);

    // Explain one request from the trace logs: the shadow limit, the route, the instance.
    await new RuleRepository({ kv: new ConsulKvStore({ address: agent.address }), kinds: kinds.map((k) => k.kind) }).apply(
      JSON.stringify({
        service: 'gateway',
        ratelimit: { mode: 'shadow', rules: [{ name: 'one-a-minute', rate: 1, unit: 'minute', burst: 1 }] },
      }),
      { author: 'alice', reason: 'back to watching' },
    );
    await gateway.rulesInForce('gateway');
    // A fresh bucket (the rule left the document in between): its one token, so the traced request would be refused.
    assert.equal((await globalThis.fetch(gatewayUrl)).status, 200);
    const trace = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const res = await globalThis.fetch(gatewayUrl, { headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01` } });
    assert.equal(res.status, 200);
    const logged = async (id: string) => (await readFile(join(traceDir, `${id}.jsonl`), 'utf8').catch(() => '')).includes(trace);
    await waitFor(async () => (await logged('gateway-1')) && (await logged('user-a')), 'the trace in the trace logs');
    await page.goto(`${console_.url}#/explain/${trace}`);
    await page.waitForSelector('#explain li:has-text("would refuse (not enforced)")');
    assert.match((await page.textContent('#explain')) ?? '', /shadow: ratelimit rule "one-a-minute" would refuse/);
    // Which version of the gateway's rules decided, by whom and why, and the rule's condition.
    assert.match(
      (await page.textContent('#explain')) ?? '',
      /rules: gateway version 3 \(revision \d+\), apply by alice at [^"]*— "back to watching"/,
    );
    assert.match((await page.textContent('#explain')) ?? '', /would refuse \(not enforced\) — when always \(no condition\)/);
    await page.waitForSelector('#explain li:has-text("instance: user-a")');
    await shot('console-explain.png');

    // Rollback to any version, from the history.
    await page.goto(`${console_.url}#/service/user-service/history`);
    await page.fill('#history-reason', 'gray again');
    await page.click('#history tr[data-version="2"] button');
    // Version 4 put the breaker section in shadow mode; the rollback is version 5.
    await page.waitForSelector('#history tr[data-version="5"]');
    const again = (await page.textContent('#history tr[data-version="5"]')) ?? '';
    assert.match(again, /alice/);
    assert.match(again, /rollback to v2/);
    assert.match(again, /gray again/);
    assert.equal(
      (await new ConsulKvStore({ address: agent.address }).get('meshlet/rules/user-service'))?.value,
      (
        await new RuleRepository({ kv: new ConsulKvStore({ address: agent.address }), kinds: kinds.map((k) => k.kind) }).history(
          'user-service',
        )
      )[1]?.document,
    );
    assert.deepEqual(pageErrors, []);
  });

  it('in the browser, a change without the CSRF token, from another origin or without the token changes nothing', async () => {
    const kv = new ConsulKvStore({ address: agent.address });
    const before = await kv.get('meshlet/rules/user-service');
    const text = JSON.stringify({ ...baseline, description: 'forged' });
    const body = { service: 'user-service', text, revision: before?.revision ?? 0, reason: 'forged' };
    // The logged-in page itself, its cookie sent, but no CSRF header.
    const status = await page.evaluate(
      async (b) =>
        (await fetch('/api/apply', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) })).status,
      body,
    );
    assert.equal(status, 403);
    // Another origin on the same machine (same site: SameSite alone would not stop it) posting with the browser's cookie.
    const evil = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>elsewhere</title>');
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
    try {
      const other = await context.newPage();
      await other.goto(`http://127.0.0.1:${(evil.address() as { port: number }).port}/`);
      const sent = await other.evaluate(
        async ([url, b]) => {
          await fetch(url, {
            method: 'POST',
            mode: 'no-cors',
            credentials: 'include',
            headers: { 'content-type': 'text/plain' },
            body: JSON.stringify(b),
          });
          return true;
        },
        [`${console_.url}api/apply`, body] as const,
      );
      assert.equal(sent, true);
      await other.close();
    } finally {
      evil.close();
    }
    // A fresh browser profile has no session: the page asks for the token, and the API refuses.
    const fresh = await mkdtemp(join(tmpdir(), 'meshlet-chromium-'));
    const stranger = await chromium.launchPersistentContext(fresh, {
      executablePath: chromiumPath(),
      headless: true,
      args: CHROMIUM_FLAGS,
    });
    try {
      const p = stranger.pages()[0] ?? (await stranger.newPage());
      await p.goto(console_.url);
      await p.waitForSelector('#login-token');
      const refused = await p.evaluate(
        async (b) =>
          (
            await fetch('/api/apply', {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-meshlet-csrf': 'guess' },
              body: JSON.stringify(b),
            })
          ).status,
        body,
      );
      assert.equal(refused, 401);
    } finally {
      await stranger.close();
      await rm(fresh, { recursive: true, force: true });
    }
    const afterAll = await kv.get('meshlet/rules/user-service');
    assert.deepEqual([afterAll?.revision, afterAll?.value], [before?.revision, before?.value]);
  });

  it('shows the newest history first, older versions when asked, and a diff when opened', async () => {
    const kv = new ConsulKvStore({ address: agent.address });
    const total = HISTORY_PAGE + 3;
    for (let v = 1; v <= total; v++) {
      const document = JSON.stringify({ service: 'ledger', description: `step ${v}` });
      const entry = { version: v, at: 1_700_000_000_000 + v, author: 'setup', action: 'apply', reason: `step ${v}`, document };
      await kv.put(`${RULES_HISTORY_PREFIX}ledger/${String(v).padStart(10, '0')}`, JSON.stringify(entry));
    }
    await page.goto(`${console_.url}#/service/ledger/history`);
    await page.waitForSelector(`#history tr[data-version="${total}"]`);
    assert.equal(await page.locator('#history tr[data-version]').count(), HISTORY_PAGE);
    assert.equal(await page.textContent('#history-more'), 'Load older versions (3 more)');
    await page.click('#history-more');
    await page.waitForSelector('#history tr[data-version="1"]');
    assert.equal(await page.locator('#history tr[data-version]').count(), total);
    assert.equal(await page.locator('#history-more').count(), 0);
    // Diffs are asked for one at a time, when opened.
    assert.equal(await page.locator('#history pre.diff').count(), 0);
    await page.click('#history tr[data-version="2"] summary');
    await page.waitForSelector('#history tr[data-version="2"] pre.diff .add:has-text("step 2")');
    assert.equal(await page.locator('#history pre.diff').count(), 1);
  });
});
