// A governed call refused before anything was sent (a breaker open, no instance) gets one
// CLIENT span for the logical call, through mesh.fetch and mesh.request alike; a call that
// sent attempts gets their spans only. The executor tells the pipeline (the call's
// `rejected`), so the call's promise carries no step for it. Real upstream on 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CircuitOpenError } from '@meshlet/breaker';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger, NoInstanceError } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from '../src/index.js';

describe('refusal spans', () => {
  const exporter = new InMemorySpanExporter();
  let upstream: TestServer;
  let ok: TestServer;
  let mesh: Mesh;
  /** Store revision of lone's rule document, whose route section finds no instance. */
  let loneRevision = 0;

  before(async () => {
    upstream = await listen((_req, res) => {
      res.statusCode = 503;
      res.end('down');
    });
    ok = await listen((_req, res) => res.end('ok'));
    const registry = new InMemoryRegistry();
    await registry.register({
      id: 'up-0',
      service: 'up',
      address: '127.0.0.1',
      port: upstream.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    // A service whose one instance is in no lane the rule sends to: routing finds nothing.
    await registry.register({
      id: 'lone-0',
      service: 'lone',
      address: '127.0.0.1',
      port: upstream.port,
      tags: [],
      metadata: { version: 'v1' },
      health: 'passing',
    });
    const rules = new InMemoryKvStore();
    await rules.put(
      'meshlet/rules/up',
      JSON.stringify({ service: 'up', breaker: { rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 600_000 }] } }),
    );
    // A service breaker with a static fallback (one service per client): its refusal is answered, not thrown.
    for (const service of ['fb-fetch', 'fb-request']) {
      await registry.register({
        id: `${service}-0`,
        service,
        address: '127.0.0.1',
        port: upstream.port,
        tags: [],
        metadata: {},
        health: 'passing',
      });
      const fallback = { status: 299, body: 'from the fallback' };
      const breaker = { rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 600_000, fallback }] };
      await rules.put(`meshlet/rules/${service}`, JSON.stringify({ service, breaker }));
    }
    // Two instances of `ej` that fail (their breakers open on one failure) and one that answers.
    for (const [id, port] of [
      ['ej-1', upstream.port],
      ['ej-2', upstream.port],
      ['ej-3', ok.port],
    ] as const)
      await registry.register({ id, service: 'ej', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
    await rules.put(
      'meshlet/rules/ej',
      JSON.stringify({
        service: 'ej',
        breaker: { rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 600_000, maxEjectionPercent: 100 }] },
      }),
    );
    await rules.put(
      'meshlet/rules/lone',
      JSON.stringify({ service: 'lone', route: { rules: [], default: [{ group: { version: 'v9' }, weight: 100 }] } }),
    );
    loneRevision = (await rules.get('meshlet/rules/lone'))?.revision ?? 0;
    mesh = createMesh({
      service: 'caller',
      registry,
      rules,
      logger: new MemoryLogger(),
      // Round robin named: ej's calls go round, so both failing instances are tried within six (the default
      // balancer draws at random, and one in 17 runs missed one).
      route: { loadBalancer: { type: 'roundRobin' } },
      tracing: { exporters: [exporter], metrics: false },
    });
  });

  after(async () => {
    await mesh.close();
    await upstream.close();
    await ok.close();
  });

  async function spans(): Promise<{ error: unknown; instance: unknown }[]> {
    await mesh.tracing?.forceFlush();
    const out = exporter
      .getFinishedSpans()
      .map((s) => ({ error: s.attributes['error.type'], instance: s.attributes['io.meshlet.instance'] }));
    exporter.reset();
    return out;
  }

  const clients = {
    fetch: (url: string) => mesh.fetch(url).then((r) => r.status),
    request: (url: string) =>
      mesh.request(url).then(async (r) => {
        await r.body.dump();
        return r.statusCode;
      }),
  };

  it('a call that was sent has its attempt span only, even when the answer opens the breaker', async () => {
    assert.equal(await clients.fetch('http://up/x'), 503);
    const sent = await spans();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.instance, 'up-0');
  });

  it("routing's skipping of instances whose breakers are open is on the attempt span", async () => {
    // Until both failing instances were tried once (and ejected), calls go round; then ej-3 alone answers.
    for (let i = 0; i < 6; i++) await clients.fetch('http://ej/x');
    await spans();
    assert.equal(await clients.fetch('http://ej/x'), 200);
    await mesh.tracing?.forceFlush();
    const attrs = exporter.getFinishedSpans().map((s) => s.attributes);
    exporter.reset();
    assert.equal(attrs.length, 1, JSON.stringify(attrs));
    assert.equal(attrs[0]?.['io.meshlet.instance'], 'ej-3');
    assert.equal(attrs[0]?.['io.meshlet.route.ejected'], 2);
    assert.equal(attrs[0]?.['io.meshlet.route.ejected_ids'], 'ej-1 ej-2');
  });

  for (const [name, call] of Object.entries(clients)) {
    it(`${name}: a breaker's refusal is one span for the logical call, with the error`, async () => {
      await assert.rejects(call('http://up/x'), CircuitOpenError);
      assert.deepEqual(await spans(), [{ error: 'circuit_open', instance: undefined }]);
    });

    it(`${name}: a refusal the fallback answered is one span for the logical call, naming the breaker and the fallback`, async () => {
      // The first call is sent and its 503 opens the breaker; the next is refused and answered.
      assert.equal(await call(`http://fb-${name}/x`), 503);
      await spans();
      assert.equal(await call(`http://fb-${name}/x`), 299);
      await mesh.tracing?.forceFlush();
      const got = exporter.getFinishedSpans().map((s) => ({
        status: s.attributes['http.response.status_code'],
        error: s.attributes['error.type'],
        level: s.attributes['io.meshlet.circuit.level'],
        state: s.attributes['io.meshlet.circuit.state'],
        fallback: s.attributes['io.meshlet.fallback'],
        instance: s.attributes['io.meshlet.instance'],
      }));
      exporter.reset();
      assert.deepEqual(got, [{ status: 299, error: undefined, level: 'service', state: 'open', fallback: 'breaker', instance: undefined }]);
    });

    it(`${name}: no instance to send to is one span for the logical call, with the error`, async () => {
      await assert.rejects(call('http://lone/x'), NoInstanceError);
      await mesh.tracing?.forceFlush();
      // The revision of the rule document whose route section found nothing, as a routed call's span has it.
      assert.deepEqual(
        exporter.getFinishedSpans().map((s) => s.attributes['io.meshlet.rules.revision']),
        [loneRevision],
      );
      assert.ok(loneRevision > 0);
      assert.deepEqual(await spans(), [{ error: 'no_instance', instance: undefined }]);
    });
  }
});
