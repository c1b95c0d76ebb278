// Auth, tag dialects, fault injection, warm-up and the admin endpoint, through createMesh
// on real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { meshKey } from '@meshlet/auth';
import {
  createContext,
  InMemoryKvStore,
  InMemoryRegistry,
  ManualClock,
  MemoryLogger,
  runWithContext,
  seededRandom,
  withTags,
} from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

type Echo = { headers: Record<string, string | undefined>; caller?: string };

describe('service auth through the mesh', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const key = meshKey('k1', randomBytes(32).toString('base64'));
  const auth = { keys: [key] };
  let payment: Mesh;
  let server: Awaited<ReturnType<typeof listen>>;
  before(async () => {
    payment = createMesh({ service: 'payment', registry, rules, auth, logger: new MemoryLogger() });
    server = await listen(payment.httpHandler((_req, res) => res.end(JSON.stringify({ caller: payment.contextOf(_req).caller.service }))));
    await payment.register({ port: server.port });
    await rules.put(
      'meshlet/rules/payment',
      JSON.stringify({
        service: 'payment',
        auth: {
          rules: [
            { name: 'no-checkout', action: 'deny', services: ['checkout'] },
            { name: 'no-anonymous', action: 'deny', identity: 'anonymous' },
          ],
        },
      }),
    );
  });
  after(async () => {
    await server.close();
    await payment.close();
  });

  it('a signed call from an allowed service passes; the denied service gets 403 naming the rule', async () => {
    const orders = createMesh({ service: 'orders', registry, rules, auth, logger: new MemoryLogger() });
    const checkout = createMesh({ service: 'checkout', registry, rules, auth, logger: new MemoryLogger() });
    assert.equal((await orders.fetch('http://payment/pay')).status, 200);
    const denied = await checkout.fetch('http://payment/pay');
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as { rule: string }).rule, 'no-checkout');
    await orders.close();
    await checkout.close();
  });

  it('a hand-written caller header is anonymous, so it cannot pass for another service', async () => {
    const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/pay`, { headers: { 'x-meshlet-caller': 'service=orders' } });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { rule: string }).rule, 'no-anonymous');
  });

  it('with auth on, source.* tags (TSF caller fields) come from the verified identity only, and stop at this hop', async () => {
    // ledger calls audit on: what audit receives shows whether ledger's caller travelled on.
    const audit = await listen((req, res) =>
      res.end(JSON.stringify({ tags: req.headers['x-meshlet-tags'] ?? '', tsf: req.headers['tsf-tags'] ?? '' })),
    );
    await registry.register({
      id: 'audit-1',
      service: 'audit',
      address: '127.0.0.1',
      port: audit.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    const ledger = createMesh({
      service: 'ledger',
      registry,
      rules,
      auth,
      dialects: { emit: ['meshlet', 'tsf'] },
      logger: new MemoryLogger(),
    });
    const ledgerServer = await listen(
      ledger.httpHandler(async (_req, res) => res.end(await (await ledger.fetch('http://audit/log')).text())),
    );
    const orders = createMesh({
      service: 'orders',
      registry,
      rules,
      auth,
      dialects: { emit: ['meshlet', 'tsf'], tsf: { identity: { serviceName: 'billing' } } },
      logger: new MemoryLogger(),
    });
    const billing = createMesh({ service: 'billing', registry, rules, auth, logger: new MemoryLogger() });
    try {
      await ledger.register({ port: ledgerServer.port });
      await rules.put(
        'meshlet/rules/ledger',
        JSON.stringify({
          service: 'ledger',
          auth: {
            default: 'deny',
            rules: [{ name: 'billing-only', action: 'allow', when: [{ tag: 'source.service.name', op: 'equals', value: 'billing' }] }],
          },
        }),
      );
      const url = `http://127.0.0.1:${ledgerServer.port}/entries`;
      const typed = [
        { 'tsf-metadata': encodeURIComponent(JSON.stringify({ sn: 'billing' })) },
        { 'x-meshlet-tags': 'source.service.name=billing' },
      ];
      for (const headers of typed) assert.equal((await globalThis.fetch(url, { headers })).status, 403, JSON.stringify(headers));
      // A signed caller that claims another name in TSF's header is still itself.
      assert.equal((await orders.fetch('http://ledger/entries')).status, 403);
      const allowed = await withTags({ tier: 'vip' }, () => billing.fetch('http://ledger/entries'));
      assert.equal(allowed.status, 200);
      const downstream = (await allowed.json()) as { tags: string; tsf: string };
      assert.equal(downstream.tags, 'tier=vip', 'the request’s own tags go on');
      assert.doesNotMatch(downstream.tsf, /source\./, 'ledger’s caller does not travel to audit');
      // Callers in turn: each request gets its own caller's source tags (made once per identity).
      assert.equal((await orders.fetch('http://ledger/entries')).status, 403);
      assert.equal((await billing.fetch('http://ledger/entries')).status, 200);
      assert.equal((await orders.fetch('http://ledger/entries')).status, 403);
    } finally {
      await orders.close();
      await billing.close();
      await ledgerServer.close();
      await ledger.close();
      await audit.close();
    }
  });

  it('a mesh with another key is anonymous too', async () => {
    const stranger = createMesh({
      service: 'orders',
      registry,
      rules,
      auth: { keys: [meshKey('k1', randomBytes(32).toString('base64'))] },
      logger: new MemoryLogger(),
    });
    assert.equal((await stranger.fetch('http://payment/pay')).status, 403);
    await stranger.close();
  });
});

describe('tag dialects through the mesh', () => {
  it('reads TSF tags and writes the configured dialects downstream', async () => {
    const registry = new InMemoryRegistry();
    const down = await listen((req, res) => res.end(JSON.stringify({ headers: req.headers })));
    await registry.register({
      id: 'd-1',
      service: 'down',
      address: '127.0.0.1',
      port: down.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    const mesh = createMesh({ service: 'mid', registry, dialects: { emit: ['meshlet', 'polaris'] }, logger: new MemoryLogger() });
    const mid = await listen(
      mesh.httpHandler(async (_req, res) => {
        const r = await mesh.fetch('http://down/x');
        res.end(await r.text());
      }),
    );
    const tsfTags = encodeURIComponent(JSON.stringify([{ k: 'user', v: 'a:b,{c}"ü"', f: ['0'] }]));
    const res = await globalThis.fetch(`http://127.0.0.1:${mid.port}/`, { headers: { 'tsf-tags': tsfTags } });
    const seen = (await res.json()) as Echo;
    assert.equal(seen.headers['x-meshlet-tags'], `user=${encodeURIComponent('a:b,{c}"ü"')}`);
    assert.ok(seen.headers['x-polaris-metadata-transitive-user'], 'the Polaris dialect carries it too');
    await mid.close();
    await down.close();
    await mesh.close();
  });
});

describe('fault injection through the mesh', () => {
  it('aborts the share of calls a fault rule names, without sending them', async () => {
    const registry = new InMemoryRegistry();
    const rules = new InMemoryKvStore();
    let hits = 0;
    const up = await listen((_req, res) => {
      hits++;
      res.end('ok');
    });
    await registry.register({
      id: 'u-1',
      service: 'flaky',
      address: '127.0.0.1',
      port: up.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    await rules.put(
      'meshlet/rules/flaky',
      JSON.stringify({
        service: 'flaky',
        fault: { rules: [{ name: 'chaos', when: [{ tag: 'chaos', op: 'exists' }], percentage: 100, abort: 503 }] },
      }),
    );
    const mesh = createMesh({ service: 'caller', registry, rules, logger: new MemoryLogger() });
    const plain = await mesh.fetch('http://flaky/');
    assert.equal(plain.status, 200);
    const faulted = await runWithContext(createContext({ tags: [['chaos', 'on']] }), () => mesh.fetch('http://flaky/'));
    assert.equal(faulted.status, 503);
    assert.equal(faulted.headers.get('x-meshlet-fault'), 'chaos');
    assert.equal(hits, 1, 'the aborted call never reached the upstream');
    await up.close();
    await mesh.close();
  });
});

describe('warm-up through the mesh', () => {
  it('ramps a new instance’s share on the injected clock', async () => {
    const clock = new ManualClock(1_000_000);
    const registry = new InMemoryRegistry();
    const meta = (registeredAt: number) => ({ 'registered-at': String(registeredAt) });
    const ups = await Promise.all([listen((_q, r) => r.end('old')), listen((_q, r) => r.end('new'))]);
    await registry.register({
      id: 'old',
      service: 'svc',
      address: '127.0.0.1',
      port: ups[0].port,
      tags: [],
      metadata: meta(0),
      health: 'passing',
    });
    await registry.register({
      id: 'new',
      service: 'svc',
      address: '127.0.0.1',
      port: ups[1].port,
      tags: [],
      metadata: meta(clock.now()),
      health: 'passing',
    });
    // The default balancer, on a seeded source: with one call at a time it follows weight.
    const mesh = createMesh({
      service: 'c',
      registry,
      clock,
      warmup: { windowMs: 60_000 },
      route: { random: seededRandom(13) },
      logger: new MemoryLogger(),
    });
    try {
      const n = 400;
      /** Asserts that `new` gets a share of n calls within 4 standard deviations of binomial(n, p). */
      const share = async (p: number, what: string) => {
        let got = 0;
        for (let i = 0; i < n; i++) if ((await (await mesh.fetch('http://svc/')).text()) === 'new') got++;
        const sd = Math.sqrt(n * p * (1 - p));
        assert.ok(Math.abs(got - n * p) <= 4 * sd, `${what}: ${got} of ${n}, expected ${(n * p).toFixed(1)} ± ${(4 * sd).toFixed(1)}`);
      };
      // Just registered: weight 1 (the floor, 1% of 100) against 100.
      await share(1 / 101, 'a just-registered instance gets little');
      clock.advance(60_000);
      await share(1 / 2, 'a warm one gets its full share');
    } finally {
      await mesh.close();
      for (const u of ups) await u.close();
    }
  });
});

describe('admin endpoint through the mesh', () => {
  it("is off unless configured, needs its instance's token, and shows rules and breakers", async () => {
    const registry = new InMemoryRegistry();
    const token = 'a-token-of-24-characters';
    const mesh = createMesh({ service: 'adm', registry, admin: { token }, logger: new MemoryLogger() });
    const server = await listen(mesh.httpHandler((_req, res) => res.end('app')));
    const instance = await mesh.register({ port: server.port });
    assert.equal(instance.metadata['meshlet-admin'], '/_meshlet');
    const base = `http://127.0.0.1:${server.port}/_meshlet/status`;
    assert.equal((await globalThis.fetch(base)).status, 401);
    assert.equal((await globalThis.fetch(base, { headers: { authorization: `Bearer ${token}` } })).status, 401, 'the secret itself');
    const ok = await globalThis.fetch(base, { headers: adminAuthorization(token, server.port) });
    const status = (await ok.json()) as { service: string; rules: { service: string }[]; registry: { mode: string } };
    assert.equal(status.service, 'adm');
    assert.deepEqual(
      status.rules.map((r) => r.service),
      ['adm'],
    );
    assert.equal(status.registry.mode, 'InMemoryRegistry');
    assert.equal(await (await globalThis.fetch(`http://127.0.0.1:${server.port}/other`)).text(), 'app');
    // Closed (deregistered), it still answers at the address it was registered at.
    await mesh.close();
    assert.equal(mesh.instance, undefined);
    assert.equal((await globalThis.fetch(base, { headers: adminAuthorization(token, server.port) })).status, 200);
    await server.close();
  });
});
