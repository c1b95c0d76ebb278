// An upstream process dies (SIGKILL: its port closes) while the registry cannot tell — the
// in-memory registry keeps listing it, as a Consul agent that is down would. Under a steady
// load from a bounded loop, the caller sees 0 failed calls with the default settings and no
// rules (retry on another instance when nothing was sent or, for idempotent calls, when the
// connection broke; outlier ejection), and with breaker rules in force. POSTs to an instance
// that is already dead are sent again elsewhere, never twice to a live one. With nearby
// routing, a retry leaves the caller's zone when the zone's only instance is dead.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Instance } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';
import { startUpstream, type UpstreamProcess } from './upstream-process.js';

const TOTAL = 600;
const CONCURRENCY = 8;
/** The upstream is killed once this many calls have completed. */
const KILL_AFTER = 150;

type Client = 'fetch' | 'request';

const started: UpstreamProcess[] = [];
const meshes: Mesh[] = [];
after(async () => {
  for (const m of meshes) await m.close();
  for (const u of started) await u.kill();
});

async function fleet(service: string, zones: string[]): Promise<{ registry: InMemoryRegistry; ups: UpstreamProcess[] }> {
  const registry = new InMemoryRegistry();
  const ups: UpstreamProcess[] = [];
  for (const [i, zone] of zones.entries()) {
    const up = await startUpstream(`${service}-${i}`);
    started.push(up);
    ups.push(up);
    const instance: Instance = {
      id: up.name,
      service,
      address: '127.0.0.1',
      port: up.port,
      tags: [],
      metadata: zone ? { zone } : {},
      health: 'passing',
    };
    await registry.register(instance);
  }
  return { registry, ups };
}

function caller(registry: InMemoryRegistry, zone?: string): Mesh {
  const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore(), ...(zone ? { metadata: { zone } } : {}) });
  meshes.push(mesh);
  return mesh;
}

/** One call by `client`; resolves with the answering upstream's name, rejects on a failed call or a non-200. */
async function call(mesh: Mesh, client: Client, url: string, method: string, id: string): Promise<string> {
  const headers = { 'x-request-id': id };
  const body = method === 'POST' ? `order ${id}` : undefined;
  if (client === 'fetch') {
    const res = await mesh.fetch(url, { method, headers, ...(body ? { body } : {}) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    return text;
  }
  const res = await mesh.request(url, { method: method as 'GET', headers, ...(body ? { body } : {}) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
  return text;
}

interface LoadResult {
  ok: number;
  failed: number;
  errors: string[];
  answeredBy: Map<string, number>;
}

/** TOTAL calls from CONCURRENCY workers; `atCompleted(n)` runs when n calls have completed. */
async function steadyLoad(run: (n: number) => Promise<string>, atCompleted: (done: number) => void = () => {}): Promise<LoadResult> {
  const result: LoadResult = { ok: 0, failed: 0, errors: [], answeredBy: new Map() };
  let issued = 0;
  let done = 0;
  const worker = async () => {
    while (issued < TOTAL) {
      const n = issued++;
      try {
        const by = await run(n);
        result.ok++;
        result.answeredBy.set(by, (result.answeredBy.get(by) ?? 0) + 1);
      } catch (err) {
        result.failed++;
        if (result.errors.length < 5) result.errors.push(String((err as Error).cause ?? err));
      }
      atCompleted(++done);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return result;
}

const instanceState = (mesh: Mesh, id: string) => mesh.breakers.snapshot().find((s) => s.breaker.instance === id)?.state;

const RULES = {
  breaker: {
    rules: [{ level: 'instance', consecutiveFailures: 3, sleepWindowMs: 60_000, maxEjectionPercent: 50 }],
    retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 } },
    timeoutMs: 5_000,
  },
};

describe('an upstream killed under a steady load while the registry still lists it', () => {
  const rows: { client: Client; rules: boolean }[] = [
    { client: 'fetch', rules: false },
    { client: 'request', rules: false },
    { client: 'fetch', rules: true },
    { client: 'request', rules: true },
  ];
  for (const { client, rules } of rows) {
    it(`mesh.${client}, ${rules ? 'breaker rules in force' : 'no rules, default settings'}: 0 failed calls, the dead instance ejected`, async () => {
      const service = `dead-${client}-${rules ? 'rules' : 'defaults'}`;
      const { registry, ups } = await fleet(service, ['', '', '']);
      const mesh = caller(registry);
      if (rules) {
        await mesh.rules.apply(JSON.stringify({ service, ...RULES }), { author: 'test' });
        await mesh.rulesInForce(service);
      }
      const victim = ups[0] as UpstreamProcess;
      let killed: Promise<void> | undefined;
      const result = await steadyLoad(
        (n) => call(mesh, client, `http://${service}/work`, 'GET', `${n}`),
        (done) => {
          if (done === KILL_AFTER) killed = victim.kill();
        },
      );
      await killed;
      assert.equal(result.failed, 0, `${result.failed} of ${TOTAL} failed: ${result.errors.join('; ')}`);
      assert.equal(result.ok, TOTAL);
      // The registry never learnt: the instance is still listed, and routing left it out itself.
      assert.equal((await registry.healthyInstances(service)).length, 3);
      assert.equal(instanceState(mesh, victim.name), 'open');
      // The two live instances answered the rest.
      assert.ok((result.answeredBy.get(ups[1]?.name as string) ?? 0) > 0);
      assert.ok((result.answeredBy.get(ups[2]?.name as string) ?? 0) > 0);
    });
  }
});

describe('POSTs to an instance that is already dead', () => {
  for (const client of ['fetch', 'request'] as const) {
    it(`mesh.${client}, no rules: every POST answered, each reached exactly one live instance once`, async () => {
      const service = `post-${client}`;
      const { registry, ups } = await fleet(service, ['', '', '']);
      const mesh = caller(registry);
      await (ups[0] as UpstreamProcess).kill();
      const result = await steadyLoad((n) => call(mesh, client, `http://${service}/orders`, 'POST', `p${n}`));
      assert.equal(result.failed, 0, `${result.failed} of ${TOTAL} failed: ${result.errors.join('; ')}`);
      const seen = [...(ups[1]?.seen ?? []), ...(ups[2]?.seen ?? [])].sort();
      assert.equal(seen.length, TOTAL, 'no POST was sent twice');
      assert.equal(new Set(seen).size, TOTAL);
      assert.equal(instanceState(mesh, ups[0]?.name as string), 'open');
    });
  }
});

describe('nearby routing: the zone’s only instance dies', () => {
  const rows: { client: Client; rules: boolean }[] = [
    { client: 'fetch', rules: false },
    { client: 'request', rules: false },
    { client: 'fetch', rules: true },
    { client: 'request', rules: true },
  ];
  for (const { client, rules } of rows) {
    it(`mesh.${client}, ${rules ? 'breaker rules in force' : 'no rules'}: retries fail over to the other zone, 0 failed calls`, async () => {
      const service = `zone-${client}-${rules ? 'rules' : 'defaults'}`;
      // The caller runs in zone a; zone a has one instance, zone b two.
      const { registry, ups } = await fleet(service, ['a', 'b', 'b']);
      const mesh = caller(registry, 'a');
      if (rules) {
        await mesh.rules.apply(JSON.stringify({ service, ...RULES }), { author: 'test' });
        await mesh.rulesInForce(service);
      }
      const local = ups[0] as UpstreamProcess;
      // Before the kill, every call stays in the zone.
      assert.equal(await call(mesh, client, `http://${service}/`, 'GET', 'warm'), local.name);
      let killed: Promise<void> | undefined;
      const gets = await steadyLoad(
        (n) => call(mesh, client, `http://${service}/`, 'GET', `g${n}`),
        (done) => {
          if (done === KILL_AFTER) killed = local.kill();
        },
      );
      await killed;
      assert.equal(gets.failed, 0, `${gets.failed} of ${TOTAL} GETs failed: ${gets.errors.join('; ')}`);
      assert.ok((gets.answeredBy.get(local.name) ?? 0) >= KILL_AFTER - CONCURRENCY, 'the zone took the calls while it lived');
      // POSTs after the death: nothing was sent to zone a, so each is sent once to zone b.
      const before = (ups[1]?.seen.length ?? 0) + (ups[2]?.seen.length ?? 0);
      const posts = await steadyLoad((n) => call(mesh, client, `http://${service}/`, 'POST', `z${n}`));
      assert.equal(posts.failed, 0, `${posts.failed} of ${TOTAL} POSTs failed: ${posts.errors.join('; ')}`);
      assert.equal((ups[1]?.seen.length ?? 0) + (ups[2]?.seen.length ?? 0) - before, TOTAL);
    });
  }
});

describe('a connection that breaks once the request was sent', () => {
  for (const client of ['fetch', 'request'] as const) {
    it(`mesh.${client}: a POST is never sent twice; a GET is sent again elsewhere`, async () => {
      const service = `breaks-${client}`;
      // The first instance reads the whole request, then drops the connection without an answer.
      const got = { dropper: [] as string[], healthy: [] as string[] };
      const dropper = await listen((req) => {
        req.resume();
        req.on('end', () => {
          got.dropper.push(`${req.method} ${req.headers['x-request-id']}`);
          req.socket.destroy();
        });
      });
      const healthy = await listen((req, res) => {
        req.resume();
        req.on('end', () => {
          got.healthy.push(`${req.method} ${req.headers['x-request-id']}`);
          res.end('healthy');
        });
      });
      const registry = new InMemoryRegistry();
      for (const [id, s] of [
        ['dropper', dropper],
        ['healthy', healthy],
      ] as const) {
        await registry.register({ id, service, address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' });
      }
      const mesh = caller(registry);
      try {
        // Round robin starts at the first instance: call until the dropper has had a POST.
        let failedPosts = 0;
        for (let i = 0; got.dropper.length === 0 && i < 10; i++) {
          await call(mesh, client, `http://${service}/`, 'POST', `post-${i}`).catch(() => failedPosts++);
        }
        assert.equal(got.dropper.length, 1, 'the dropper took one POST');
        assert.equal(failedPosts, 1, 'and that POST failed: it may have been acted on');
        const [, postId] = (got.dropper[0] as string).split(' ');
        assert.equal(got.healthy.includes(`POST ${postId}`), false, 'the POST was not sent again to the other instance');
        // A GET the dropper takes is sent again to the other instance and answered.
        const before = got.dropper.length;
        for (let i = 0; got.dropper.length === before && i < 10; i++) {
          assert.equal(await call(mesh, client, `http://${service}/`, 'GET', `get-${i}`), 'healthy');
        }
        const [, getId] = (got.dropper.at(-1) as string).split(' ');
        assert.equal(got.healthy.includes(`GET ${getId}`), true, 'the GET was retried on the other instance');
      } finally {
        await dropper.close();
        await healthy.close();
      }
    });
  }
});
