// What instances, the registry and the store can make the console do: every answer bounded
// however much they say, one instance's nonsense costing only its own row, and the registry
// asked a few services at a time. Fake instances and registries on 127.0.0.1.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ADMIN_CONCURRENCY, type RegistryView } from '@meshlet/cli';
import { FileKvStore, InMemoryKvStore, type Instance, MemoryLogger, RULES_HISTORY_PREFIX, RuleRepository } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import {
  HISTORY_PAGE,
  MAX_ANSWER_ENTRIES,
  MAX_INSTANCE_ENTRIES,
  MAX_SERVICES_LISTED,
  MAX_TOPOLOGY_SERVICES,
  type RunningConsole,
  STORE_READS_AT_ONCE,
  startConsole,
} from '../src/index.js';

const TOKEN = 'console-test-token-0123456789';
const ADMIN_TOKEN = 'admin-test-token-0123456789';

const instance = (service: string, id: string, port: number): Instance => ({
  id,
  service,
  address: '127.0.0.1',
  port,
  tags: [],
  metadata: { 'meshlet-admin': '/_meshlet' },
  health: 'passing',
});

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** An admin endpoint answering `/status` and `/metrics` as given. */
async function adminEndpoint(answer: { status?: string; metrics?: string }) {
  const s = await listen((req: IncomingMessage, res: ServerResponse) => {
    res.end(req.url?.endsWith('/metrics') ? (answer.metrics ?? '') : (answer.status ?? '{}'));
  });
  cleanup.push(() => s.close());
  return s.port;
}

/** A console on a directory store (`store(dir)`) with `registry`, logged in: `get(path)` answers status and JSON. */
async function consoleWith(registry: RegistryView, store = (dir: string) => new FileKvStore(dir)) {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-console-bounds-'));
  const kv = store(dir);
  const running: RunningConsole = await startConsole({
    kv,
    storeDescription: `directory ${dir}`,
    kinds: RULE_KINDS,
    registry,
    adminToken: ADMIN_TOKEN,
    token: TOKEN,
    port: 0,
    logger: new MemoryLogger(),
  });
  cleanup.push(
    () => rm(dir, { recursive: true, force: true }),
    () => running.close(),
  );
  const origin = running.url.replace(/\/$/, '');
  const login = await fetch(`${origin}/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin },
    body: JSON.stringify({ token: TOKEN, author: 'alice' }),
  });
  assert.equal(login.status, 200);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
  const get = async <T = Record<string, unknown>>(path: string): Promise<{ status: number; body: T; bytes: number }> => {
    const res = await fetch(`${origin}${path}`, { headers: { cookie } });
    const text = await res.text();
    return { status: res.status, body: JSON.parse(text) as T, bytes: text.length };
  };
  return { kv, get };
}

interface InstanceAnswer {
  id: string;
  admin: {
    ok: boolean;
    reason?: string;
    breakers?: { name: string }[];
    breakersNotShown?: number;
    rules?: { service: string }[];
    rulesNotShown?: number;
  };
}

describe('console: an instance whose admin status is not a status', () => {
  it('shows that instance as unusable, and the rest of every page works', async () => {
    const good = await adminEndpoint({ status: '{"service":"orders"}' });
    const bodies = ['null', '[1]', '"x"', '{"breakers":[null]}', '{"breakers":"x"}', '{"rules":5}', '{"limiter":"x","degraded":7}'];
    const bad = await Promise.all(bodies.map((status) => adminEndpoint({ status })));
    const orders = [instance('orders', 'orders-good', good), ...bad.map((port, k) => instance('orders', `orders-bad-${k}`, port))];
    const { get } = await consoleWith({
      description: 'fake',
      services: async () => ['orders', 'payments'],
      instances: async (s) => (s === 'orders' ? orders : []),
    });
    const service = await get<{ instances: InstanceAnswer[] }>('/api/service?service=orders');
    assert.equal(service.status, 200);
    assert.deepEqual(
      service.body.instances.map((i) => [i.id, i.admin.ok, i.admin.reason ?? i.admin.breakers?.length]),
      [
        ['orders-good', true, 0],
        ['orders-bad-0', false, 'not a status'],
        ['orders-bad-1', false, 'not a status'],
        ['orders-bad-2', false, 'not a status'],
        ['orders-bad-3', true, 1],
        ['orders-bad-4', true, 0],
        ['orders-bad-5', true, 0],
        ['orders-bad-6', true, 0],
      ],
    );
    // Every service's limits page reads every caller's status (the breakers of calls to it).
    for (const s of ['orders', 'payments']) assert.equal((await get(`/api/limits?service=${s}`)).status, 200, s);
  });
});

describe('console: bounds', () => {
  it('shows at most MAX_INSTANCE_ENTRIES breakers and rules per instance, MAX_ANSWER_ENTRIES in an answer, counting the rest, names cut', async () => {
    const many = 3 * MAX_INSTANCE_ENTRIES;
    const status = JSON.stringify({
      breakers: Array.from({ length: many }, (_, k) => ({
        breaker: { level: 'service', service: `s${k}${'x'.repeat(5_000)}` },
        state: 'open',
      })),
      rules: Array.from({ length: many }, (_, k) => ({ service: `s${k}`, revision: k })),
    });
    const port = await adminEndpoint({ status });
    const count = Math.ceil(MAX_ANSWER_ENTRIES / MAX_INSTANCE_ENTRIES) + 5;
    const list = Array.from({ length: count }, (_, k) => instance('orders', `orders-${String(k).padStart(3, '0')}`, port));
    const { get } = await consoleWith({ description: 'fake', services: async () => ['orders'], instances: async () => list });
    const { status: code, body, bytes } = await get<{ instances: InstanceAnswer[] }>('/api/service?service=orders');
    assert.equal(code, 200);
    const first = body.instances[0]?.admin;
    assert.equal(first?.breakers?.length, MAX_INSTANCE_ENTRIES);
    assert.equal(first?.breakersNotShown, many - MAX_INSTANCE_ENTRIES);
    assert.ok((first?.breakers?.[0]?.name.length ?? Infinity) <= 200);
    let shown = 0;
    for (const i of body.instances) shown += (i.admin.breakers?.length ?? 0) + (i.admin.rules?.length ?? 0);
    assert.equal(shown, MAX_ANSWER_ENTRIES);
    const last = body.instances.at(-1)?.admin;
    assert.deepEqual([last?.breakers?.length, last?.breakersNotShown, last?.rulesNotShown], [0, many, many]);
    assert.ok(bytes < 2 * 1024 * 1024, `${bytes} bytes`);
  });

  it('draws only registered services, at most MAX_TOPOLOGY_SERVICES, counting the calls to others', async () => {
    // One caller whose metrics name thousands of services nobody registered, and one that is.
    let metrics = 'meshlet_client_requests_total{service="payments"} 7\n';
    for (let k = 0; k < 5_000; k++) metrics += `meshlet_client_requests_total{service="ghost-${k}"} 1\n`;
    const port = await adminEndpoint({ metrics });
    const registered = ['orders', 'payments', ...Array.from({ length: MAX_TOPOLOGY_SERVICES }, (_, k) => `zz-${k}`)];
    const { get } = await consoleWith({
      description: 'fake',
      services: async () => registered,
      instances: async (s) => (s === 'orders' ? [instance('orders', 'orders-1', port)] : []),
    });
    const { status, body } = await get<{
      services: string[];
      edges: { from: string; to: string; requests: number }[];
      notShown: { services: number; called: number };
    }>('/api/topology');
    assert.equal(status, 200);
    assert.equal(body.services.length, MAX_TOPOLOGY_SERVICES);
    assert.deepEqual(
      body.edges.map((e) => [e.from, e.to, e.requests]),
      [['orders', 'payments', 7]],
    );
    assert.deepEqual(body.notShown, { services: registered.length - MAX_TOPOLOGY_SERVICES, called: MAX_SERVICES_LISTED });
  });

  it(`lists at most MAX_SERVICES_LISTED services, asking the registry ${STORE_READS_AT_ONCE} at a time`, async () => {
    const names = Array.from({ length: MAX_SERVICES_LISTED + 5 }, (_, k) => `svc-${String(k).padStart(5, '0')}`);
    let inFlight = 0;
    let most = 0;
    const { get } = await consoleWith({
      description: 'fake',
      services: async () => names,
      instances: async () => {
        most = Math.max(most, ++inFlight);
        // Yield to the event loop: every call started at once would be in flight here.
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
        return [];
      },
    });
    const { status, body } = await get<{ services: { name: string }[]; notListed: number }>('/api/services');
    assert.equal(status, 200);
    assert.equal(body.services.length, MAX_SERVICES_LISTED);
    assert.equal(body.notListed, 5);
    // The store's reads share the slots: fewer may be the registry's.
    assert.ok(most > 1 && most <= STORE_READS_AT_ONCE, `${most} at once`);
  });
});

describe('console: one admin client', () => {
  it(`asks admin endpoints ${ADMIN_CONCURRENCY} at a time over all its pages, not per page`, async () => {
    // 20 instances: a service page asks each for its status and its metrics, 40 fetches.
    const orders = Array.from({ length: 20 }, (_, k) => instance('orders', `orders-${k}`, 1000 + k));
    let registryReads = 0;
    let openRegistry!: () => void;
    const registryOpen = new Promise<void>((resolve) => {
      openRegistry = resolve;
    });
    const running = await startConsole({
      // In memory: after the registry answers, a page reaches its admin fetches without I/O.
      kv: new InMemoryKvStore(),
      storeDescription: 'memory',
      kinds: RULE_KINDS,
      registry: {
        description: 'fake',
        services: async () => ['orders'],
        instances: async () => {
          registryReads++;
          await registryOpen;
          return orders;
        },
      },
      adminToken: ADMIN_TOKEN,
      token: TOKEN,
      port: 0,
      logger: new MemoryLogger(),
    });
    cleanup.push(() => running.close());
    const origin = running.url.replace(/\/$/, '');
    const login = await fetch(`${origin}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ token: TOKEN, author: 'alice' }),
    });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    // Admin fetches are held here (the console's own go through), counted when made.
    const realFetch = globalThis.fetch;
    const held: (() => void)[] = [];
    let releaseAll = false;
    let adminFetches = 0;
    globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
      if (String(input).startsWith(origin)) return realFetch(input, init);
      adminFetches++;
      if (!releaseAll) await new Promise<void>((resolve) => held.push(resolve));
      return new Response('{}');
    }) as typeof fetch;
    try {
      const page = () => realFetch(`${origin}/api/service?service=orders`, { headers: { cookie } });
      const pages = Promise.all([page(), page()]);
      while (registryReads < 2) await new Promise((resolve) => setImmediate(resolve));
      openRegistry();
      // Both pages now make their admin fetches in microtasks: a turn of the loop sees them all made.
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(adminFetches, ADMIN_CONCURRENCY);
      releaseAll = true;
      for (const release of held) release();
      assert.deepEqual(
        (await pages).map((r) => r.status),
        [200, 200],
      );
      assert.equal(adminFetches, 80);
    } finally {
      globalThis.fetch = realFetch;
    }
  });
});

describe('console: the live tabs’ poll', () => {
  it('reads the rule history only when the rules changed since the history the page shows', async () => {
    const historyReads: string[] = [];
    class CountingStore extends FileKvStore {
      override async list(prefix: string) {
        if (prefix.startsWith(RULES_HISTORY_PREFIX)) historyReads.push(prefix);
        return super.list(prefix);
      }
    }
    const registry = { description: 'fake', services: async () => ['orders'], instances: async () => [] };
    const { kv, get } = await consoleWith(registry, (dir) => new CountingStore(dir));
    const repo = new RuleRepository({ kv, kinds: RULE_KINDS.map((k) => k.kind) });
    const apply = (n: number) =>
      repo.apply(JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'service', consecutiveFailures: n }] } }), {
        author: 'a',
      });
    await apply(1);
    await apply(2);
    type Answer = { rules: { revision: number }; history?: { version: number }[]; olderVersions?: number };
    historyReads.length = 0;
    const first = await get<Answer>('/api/service?service=orders');
    assert.deepEqual([first.body.history?.length, historyReads.length], [2, 1]);
    const polled = await get<Answer>(`/api/service?service=orders&historyAt=${first.body.rules.revision}`);
    assert.equal(polled.status, 200);
    assert.deepEqual(
      [polled.body.rules.revision, polled.body.history, polled.body.olderVersions],
      [first.body.rules.revision, undefined, undefined],
    );
    assert.equal(historyReads.length, 1);
    await apply(3);
    historyReads.length = 0;
    const changed = await get<Answer>(`/api/service?service=orders&historyAt=${first.body.rules.revision}`);
    assert.deepEqual([changed.body.history?.at(-1)?.version, changed.body.olderVersions, historyReads.length], [3, 0, 1]);
    for (const bad of ['x', '-1', '', '1.5']) {
      const refused = await get<{ error: { code: string; path: string } }>(`/api/service?service=orders&historyAt=${bad}`);
      assert.deepEqual(
        [refused.status, refused.body.error.code, refused.body.error.path],
        [400, 'MESHLET_CONSOLE_BAD_REQUEST', 'historyAt'],
      );
    }
  });
});

describe('console: history a page at a time, a diff when asked', () => {
  it('gives the newest HISTORY_PAGE versions without diffs, older ones with ?before=, one diff with /api/diff', async () => {
    const { kv, get } = await consoleWith({ description: 'fake', services: async () => ['orders'], instances: async () => [] });
    const total = HISTORY_PAGE * 2 + 20;
    const doc = (v: number) => JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'service', consecutiveFailures: v }] } });
    for (let v = 1; v <= total; v++) {
      const entry = { version: v, at: 1_000 * v, author: 'setup', action: 'apply', document: doc(v) };
      await kv.put(`${RULES_HISTORY_PREFIX}orders/${String(v).padStart(10, '0')}`, JSON.stringify(entry));
    }
    type Page = { history: { version: number; diff?: string }[]; olderVersions: number };
    const newest = await get<Page>('/api/service?service=orders');
    assert.equal(newest.status, 200);
    assert.deepEqual(
      [newest.body.history.length, newest.body.history[0]?.version, newest.body.history.at(-1)?.version, newest.body.olderVersions],
      [HISTORY_PAGE, total - HISTORY_PAGE + 1, total, total - HISTORY_PAGE],
    );
    assert.equal(newest.body.history[0]?.diff, undefined);
    const older = await get<Page>(`/api/history?service=orders&before=${total - HISTORY_PAGE + 1}`);
    assert.deepEqual(
      [older.body.history.length, older.body.history[0]?.version, older.body.history.at(-1)?.version, older.body.olderVersions],
      [HISTORY_PAGE, 21, total - HISTORY_PAGE, 20],
    );
    const oldest = await get<Page>('/api/history?service=orders&before=21');
    assert.deepEqual([oldest.body.history.length, oldest.body.olderVersions], [20, 0]);

    const diff = await get<{ version: number; diff: string }>('/api/diff?service=orders&version=7');
    assert.equal(diff.status, 200);
    assert.match(diff.body.diff, /-\s+"consecutiveFailures": 6/);
    assert.match(diff.body.diff, /\+\s+"consecutiveFailures": 7/);
    const missing = await get<{ error: { code: string; path: string } }>(`/api/diff?service=orders&version=${total + 1}`);
    assert.deepEqual([missing.status, missing.body.error.code, missing.body.error.path], [404, 'MESHLET_CONSOLE_NOT_FOUND', 'version']);
    const bad = await get<{ error: { path: string } }>('/api/history?service=orders&before=x');
    assert.deepEqual([bad.status, bad.body.error.path], [400, 'before']);
  });
});
