// Against a real Consul dev agent: TSF's circuit breaker, authority and warm-up documents,
// written as TSF's console writes them under TSF's keys, govern real calls between real
// meshes. (Route, rate limit and affinity: consul.integration.test.ts.)
import assert from 'node:assert/strict';
import type { RequestListener } from 'node:http';
import { describe, it } from 'node:test';
import { ManualClock, MemoryLogger } from '@meshlet/core';
import { ConsulRegistry } from '@meshlet/registry';
import { createMesh, type Mesh, type MeshOptions, ruleKinds, withTags } from 'meshlet';
import { readTsfWarmup, TSF_BREAKER_PROBES, TsfRuleStore, tsfMetadata, tsfRuleKey } from '../src/index.js';
import { consulEstate, listen, NS, seeded, until } from './consul-helpers.js';
import { fixture } from './fixtures.js';

/** The revision of `key` whose conversion `store` has in force (0: none). */
function inForce(store: TsfRuleStore, key: string): number {
  return store.status.find((s) => s.key === key)?.inForce ?? 0;
}

/** What a rejected governed call throws (CircuitOpenError), read without importing the breaker package. */
interface CircuitOpen {
  readonly code: string;
  readonly level: string;
  readonly service: string;
  readonly api: string | undefined;
  readonly retryAfter: number;
}

describe('TSF breaker, authority and warm-up documents in a real Consul govern Meshlet calls', () => {
  const estate = consulEstate();
  const { meshes, servers } = estate;

  const registry = (logger: MemoryLogger) => new ConsulRegistry({ address: estate.agent.address, waitSeconds: 2, logger });
  const mesh = (options: Omit<MeshOptions, 'registry' | 'logger'>) => {
    const logger = new MemoryLogger();
    const m = createMesh({ ...options, registry: registry(logger), logger });
    meshes.push(m);
    return m;
  };
  /** A registered instance of `options.service` answering with `listener` behind the mesh's handler. */
  const serve = async (options: Omit<MeshOptions, 'registry' | 'logger'>, listener: RequestListener) => {
    const m = mesh(options);
    const { server, port } = await listen(m.httpHandler(listener));
    servers.push(server);
    await m.register({ port });
    return { mesh: m, port };
  };

  it('an API-level breaker from circuitbreaker/<ns>/checkout/<ns>/payment/data opens GET /pay only, fails it fast, and closes after TSF’s probes', async () => {
    let failing = true;
    const hits: Record<string, number> = {};
    await serve(
      {
        service: 'payment',
        instanceId: 'payment-1',
        metadata: tsfMetadata({ applicationId: 'application-p1', groupId: 'group-p1', namespaceId: NS }),
      },
      (req, res) => {
        const api = `${req.method} ${req.url}`;
        hits[api] = (hits[api] ?? 0) + 1;
        if (req.url === '/pay' && failing) {
          res.statusCode = 503;
          res.end('payment backend down');
          return;
        }
        res.end('ok');
      },
    );

    // What TSF's console writes for checkout's calls to payment (polaris-java CircuitBreakerRule):
    // an API rule on GET /pay, judged over 10 s, at least 4 calls, 50 % failures, open 5 s.
    const breakerKey = tsfRuleKey.circuitbreaker(NS, 'checkout', NS, 'payment');
    assert.equal(breakerKey, `circuitbreaker/${NS}/checkout/${NS}/payment/data`);
    await estate.kv.put(
      breakerKey,
      `ruleId: circuitbreaker-pay00001
microserviceId: ms-checkout01
microserviceName: checkout
namespaceId: ${NS}
targetServiceName: payment
targetNamespaceId: ${NS}
isolationLevel: API
updateTime: '2024-05-01 10:00:00'
effectTime: 1714557600000
strategyList:
- strategyId: cb-strategy-pay1
  ruleId: circuitbreaker-pay00001
  slidingWindowSize: 10
  minimumNumberOfCalls: 4
  failureRateThreshold: 50
  waitDurationInOpenState: 5
  apiList:
  - apiId: api-pay00001
    method: GET
    path: /pay
    strategyId: cb-strategy-pay1
`,
    );

    // The breaker's window and open state run on this clock: time moves only when told.
    const clock = new ManualClock(1_714_557_600_000);
    const store = new TsfRuleStore({
      kv: estate.kv,
      identity: { serviceName: 'checkout', namespaceId: NS },
      kinds: ruleKinds,
      logger: new MemoryLogger(),
    });
    const checkout = mesh({ service: 'checkout', rules: store, clock });
    assert.equal((await checkout.fetch('http://payment/status')).status, 200);
    await until('the breaker in force', () => inForce(store, breakerKey) > 0);
    const status = store.status.find((s) => s.key === breakerKey);
    assert.equal(status?.error, undefined);
    await until('the API breaker built from it', () => checkout.breakers.breaker('api', 'payment', 'GET /pay') !== undefined);
    const payBreaker = () => checkout.breakers.breaker('api', 'payment', 'GET /pay');
    assert.equal(checkout.breakers.breaker('service', 'payment'), undefined, 'an API rule makes no service breaker');

    // Below minimumNumberOfCalls the failures only count: every call reaches payment.
    for (let i = 0; i < 3; i++) assert.equal((await checkout.fetch('http://payment/pay')).status, 503);
    assert.equal(payBreaker()?.state, 'closed');
    // The 4th failure of 4 (100 % ≥ 50 %) trips it.
    assert.equal((await checkout.fetch('http://payment/pay')).status, 503);
    assert.equal(hits['GET /pay'], 4);
    assert.equal(payBreaker()?.state, 'open');

    // Open: GET /pay fails fast with the circuit-open error, without reaching payment…
    await assert.rejects(checkout.fetch('http://payment/pay'), (err: CircuitOpen) => {
      assert.equal(err.code, 'MESHLET_CIRCUIT_OPEN');
      assert.equal(err.level, 'api');
      assert.equal(err.service, 'payment');
      assert.equal(err.api, 'GET /pay');
      assert.equal(err.retryAfter, 5000, 'waitDurationInOpenState 5 s');
      return true;
    });
    assert.equal(hits['GET /pay'], 4);
    // …while the other APIs of payment still go through.
    assert.equal((await checkout.fetch('http://payment/status')).status, 200);
    assert.equal((await checkout.fetch('http://payment/pay', { method: 'POST' })).status, 503, 'POST /pay is not in the apiList');
    assert.equal(hits['POST /pay'], 1);
    assert.equal(payBreaker()?.state, 'open');

    // Still open a millisecond before waitDurationInOpenState is over.
    clock.advance(4999);
    await assert.rejects(checkout.fetch('http://payment/pay'), { code: 'MESHLET_CIRCUIT_OPEN' });
    assert.equal(hits['GET /pay'], 4);

    // Payment recovers; once the 5 s are over, TSF's probes go through and close the breaker.
    failing = false;
    clock.advance(1);
    for (let i = 0; i < TSF_BREAKER_PROBES; i++) {
      assert.equal(payBreaker()?.state === 'closed', false, `still probing before success ${i + 1}`);
      assert.equal((await checkout.fetch('http://payment/pay')).status, 200);
    }
    assert.equal(hits['GET /pay'], 4 + TSF_BREAKER_PROBES);
    assert.equal(payBreaker()?.state, 'closed');
    assert.equal((await checkout.fetch('http://payment/pay')).status, 200);
  });

  it('an authority allow list on source.service.name from authority/<ns>/ledger/data: billing gets 200, orders 403', async () => {
    // The unsigned TSF estate: no mesh keys (`auth`) on any mesh here, so the caller's
    // `source.*` tags come from the `tsf-metadata` header each caller's TSF dialect sends.
    // With `auth` keys on, the SDK takes `source.*` from the verified identity only
    // (packages/sdk/test/estate.test.ts covers that case).
    const authorityKey = tsfRuleKey.authority(NS, 'ledger');
    await estate.kv.put(
      authorityKey,
      `- rules:
  - ruleId: auth-rule-billing1
    ruleName: billing-only
    isEnabled: '1'
    tags:
    - tagId: 6101
      tagType: S
      tagField: source.service.name
      tagOperator: EQUAL
      tagValue: billing
    tagProgram: '{6101}'
  ruleProgram: '{auth-rule-billing1}'
  type: W
`,
    );
    const ledgerStore = new TsfRuleStore({
      kv: estate.kv,
      identity: { serviceName: 'ledger', namespaceId: NS, groupId: 'group-l1' },
      kinds: ruleKinds,
      logger: new MemoryLogger(),
    });
    let served = 0;
    const ledger = await serve(
      {
        service: 'ledger',
        instanceId: 'ledger-1',
        rules: ledgerStore,
        metadata: tsfMetadata({ applicationId: 'application-l1', groupId: 'group-l1', namespaceId: NS }),
      },
      (_req, res) => {
        served++;
        res.end('entries');
      },
    );
    await until('the authority in force', () => inForce(ledgerStore, authorityKey) > 0);
    assert.equal(ledgerStore.status.find((s) => s.key === authorityKey)?.error, undefined);

    // A TSF caller: the TSF dialect emitted, with this process's identity for `tsf-metadata`.
    const caller = (service: string, groupId: string) =>
      mesh({
        service,
        metadata: tsfMetadata({ applicationId: `application-${service}`, groupId, namespaceId: NS }),
        dialects: { emit: ['meshlet', 'tsf'], tsf: { identity: { serviceName: service, groupId, namespaceId: NS } } },
      });
    const orders = caller('orders', 'group-o1');
    const billing = caller('billing', 'group-b1');
    // Untagged calls (outside any request) carry `tsf-metadata` as well as tagged ones.
    const denied = await orders.fetch('http://ledger/entries');
    assert.equal(denied.status, 403);
    const body = (await denied.json()) as { code: string; service: string; rule: string };
    assert.equal(body.code, 'MESHLET_AUTH_DENIED');
    assert.equal(body.service, 'ledger');
    assert.equal(body.rule, '(default)', 'a W list denies whatever no rule allows');
    assert.equal(served, 0);

    const allowed = await billing.fetch('http://ledger/entries');
    assert.equal(allowed.status, 200);
    assert.equal(await allowed.text(), 'entries');
    assert.equal(served, 1);
    const tagged = await withTags({ 'user-tier': 'vip' }, () => billing.fetch('http://ledger/entries'));
    assert.equal(tagged.status, 200);
    assert.equal(served, 2);

    // Without TSF's caller header there is no source.service.name: denied as well.
    assert.equal((await globalThis.fetch(`http://127.0.0.1:${ledger.port}/entries`)).status, 403);
    assert.equal(served, 2);
  });

  it('warm-up from warmup/<ns>/<group>/data: a just-registered instance gets a small share, then TSF’s curve, then its full share', async () => {
    // TSF's console: group-s-new warms up over 120 s with curvature 2 (weight × (uptime/120 s)²).
    await estate.kv.put(tsfRuleKey.warmup(NS, 'group-s-new'), fixture('warmup.yaml'));
    const warmup = await readTsfWarmup(estate.kv, NS, 'group-s-new');
    assert.deepEqual(warmup, { windowMs: 120_000, floor: 0, curvature: 2 });
    if (!warmup) return;

    // One clock for every process here: registration times (`registered-at`) and the
    // caller's ramp are read from it, and it moves only when told.
    const clock = new ManualClock(1_714_557_600_000);
    const stock = (group: string) =>
      serve(
        {
          service: 'stock',
          instanceId: `stock-${group}`,
          clock,
          metadata: tsfMetadata({ applicationId: 'application-s1', groupId: group, namespaceId: NS }),
        },
        (_req, res) => res.end(group),
      );
    await stock('group-s-old');
    clock.advance(3_600_000); // the old instance has been up an hour
    const fresh = await stock('group-s-new');
    assert.equal(fresh.mesh.instance?.metadata['registered-at'], String(clock.now()));

    const store = new TsfRuleStore({
      kv: estate.kv,
      identity: { serviceName: 'shop', namespaceId: NS },
      kinds: ruleKinds,
      logger: new MemoryLogger(),
    });
    // Two callers on the same instances and clock: one drawing at random by weight, one on
    // the default balancer (least requests, which with calls one at a time follows weight).
    const callers = {
      random: mesh({ service: 'shop', rules: store, clock, warmup, route: { random: seeded(29), loadBalancer: { type: 'random' } } }),
      'the default balancer': mesh({ service: 'shop', rules: store, clock, warmup, route: { random: seeded(31) } }),
    };
    const shop = callers.random;
    const N = 400;
    const share = async (caller: Mesh) => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < N; i++) {
        const body = await (await caller.fetch('http://stock/item')).text();
        counts[body] = (counts[body] ?? 0) + 1;
      }
      assert.equal((counts['group-s-old'] ?? 0) + (counts['group-s-new'] ?? 0), N, JSON.stringify(counts));
      return counts['group-s-new'] ?? 0;
    };
    /** Asserts that each caller's share of N is within 4.5 standard deviations of a binomial(N, p) draw. */
    const near = async (p: number, what: string) => {
      const tolerance = 4.5 * Math.sqrt(N * p * (1 - p));
      for (const [name, caller] of Object.entries(callers)) {
        const got = await share(caller);
        assert.ok(Math.abs(got - N * p) <= tolerance, `${what}, ${name}: ${got} of ${N}, expected ${N * p} ± ${tolerance.toFixed(1)}`);
      }
    };
    // Consul has both, each with the registration time the SDK put in its metadata.
    const registered = Object.fromEntries(
      (await shop.registry.healthyInstances('stock')).map((i) => [i.metadata.TSF_GROUP_ID, Number(i.metadata['registered-at'])]),
    );
    assert.deepEqual(registered, { 'group-s-old': clock.now() - 3_600_000, 'group-s-new': clock.now() });

    // Just registered: weight max(1, 100 × 0²) = 1 against the old instance's 100.
    await near(1 / 101, 'at registration');
    // Half-way: 100 × 0.5² = 25 against 100.
    clock.advance(60_000);
    await near(25 / 125, 'half-way through the warm-up');
    // After warmupTime: its full weight, an even split.
    clock.advance(60_000);
    await near(1 / 2, 'after the warm-up');
  });
});
