// The per-destination adaptive limit (`ratelimit.outboundAdaptive`) through createMesh, on a
// real upstream on 127.0.0.1: calls over a destination's limit are refused at once with
// OutboundLimitError (nothing sent), through fetch and request alike; other destinations
// and destinations turned off are not limited; counted in the admin status and /metrics;
// a bad option is named by field.
import assert from 'node:assert/strict';
import { get, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { InMemoryRegistry, MemoryLogger, RuleValidationError } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { BulkheadFullError, createMesh, type Mesh, OutboundLimitError } from '../src/index.js';

const TOKEN = 'outbound-admin-token-0123456789';

/** Requests an upstream holds until the test answers them; counts every one it saw. */
class Held {
  seen = 0;
  readonly #waiting: ((h: { finish(): void }) => void)[] = [];
  readonly #early: { finish(): void }[] = [];
  arrive(_req: IncomingMessage, res: ServerResponse): void {
    this.seen++;
    const h = { finish: () => res.end('done') };
    const w = this.#waiting.shift();
    if (w) w(h);
    else this.#early.push(h);
  }
  next(): Promise<{ finish(): void }> {
    const e = this.#early.shift();
    return e ? Promise.resolve(e) : new Promise((r) => this.#waiting.push(r));
  }
}

function adminGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false, headers: adminAuthorization(TOKEN, port) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('outbound adaptive limit, on real servers', () => {
  const registry = new InMemoryRegistry();
  const held = new Held();
  const upstreams: Awaited<ReturnType<typeof listen>>[] = [];
  let caller: Mesh;
  let admin: Awaited<ReturnType<typeof listen>>;
  const exporter = new InMemorySpanExporter();

  before(async () => {
    for (const service of ['inventory', 'pricing', 'audit']) {
      const server = await listen((req, res) => (service === 'inventory' ? held.arrive(req, res) : res.end(service)));
      upstreams.push(server);
      await registry.register({
        id: `${service}-0`,
        service,
        address: '127.0.0.1',
        port: server.port,
        tags: [],
        metadata: {},
        health: 'passing',
      });
    }
    caller = createMesh({
      service: 'shop',
      registry,
      logger: new MemoryLogger(),
      admin: { token: TOKEN },
      tracing: { exporters: [exporter], metrics: false },
      ratelimit: {
        outboundAdaptive: {
          // Pinned at 2 (floor = ceiling) so that the test knows the limit.
          defaults: { minLimit: 2, maxLimit: 2, initialLimit: 2 },
          services: { audit: false },
        },
      },
    });
    admin = await listen(caller.httpHandler((_req, res) => res.end('shop')));
    await caller.register({ port: admin.port });
  });
  after(async () => {
    await caller.close();
    await admin.close();
    for (const s of upstreams) await s.close();
  });

  it('refuses the call over the limit at once with OutboundLimitError, through fetch and request; admits again when a slot frees', async () => {
    const first = caller.fetch('http://inventory/stock');
    const a = await held.next();
    const second = caller.request('http://inventory/stock');
    const b = await held.next();
    for (const client of ['fetch', 'request'] as const) {
      const refused = await (client === 'fetch' ? caller.fetch('http://inventory/stock') : caller.request('http://inventory/stock')).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(refused instanceof OutboundLimitError, `${client}: typed error`);
      assert.equal(refused.code, 'MESHLET_OUTBOUND_LIMITED');
      assert.equal(refused.service, 'inventory');
      assert.equal(refused.limit, 2);
    }
    assert.equal(held.seen, 2, 'the refused calls were never sent');
    // Refused before routing, as a bulkhead refuses: a CLIENT span for the logical call says so.
    await caller.tracing?.forceFlush();
    const refusedSpans = exporter.getFinishedSpans().filter((s) => s.attributes['error.type'] === 'OutboundLimitError');
    assert.equal(refusedSpans.length, 2, 'one rejection span per refused call');
    // Other destinations have limits of their own; `audit: false` has none.
    assert.equal(await (await caller.fetch('http://pricing/p')).text(), 'pricing');
    assert.equal(await (await caller.fetch('http://audit/a')).text(), 'audit');

    const status = JSON.parse(await adminGet(admin.port, '/_meshlet/status'));
    const byService = Object.fromEntries(
      (status.outboundAdaptive as { service: string; limit: number; inFlight: number; refused: number; admitted: number }[]).map((s) => [
        s.service,
        s,
      ]),
    );
    assert.deepEqual(Object.keys(byService), ['inventory', 'pricing'], 'audit has no limit');
    assert.equal(byService.inventory?.limit, 2);
    assert.equal(byService.inventory?.inFlight, 2);
    assert.equal(byService.inventory?.refused, 2);
    assert.equal(byService.inventory?.admitted, 2);
    const metrics = await adminGet(admin.port, '/_meshlet/metrics');
    assert.match(metrics, /^meshlet_outbound_adaptive_limit\{service="inventory"\} 2$/m);
    assert.match(metrics, /^meshlet_outbound_adaptive_in_flight\{service="inventory"\} 2$/m);
    assert.match(metrics, /^meshlet_outbound_adaptive_refused_total\{service="inventory"\} 2$/m);
    assert.match(metrics, /^meshlet_outbound_adaptive_refused_total\{service="pricing"\} 0$/m);

    a.finish();
    b.finish();
    assert.equal(await (await first).text(), 'done');
    assert.equal(await (await second).body.text(), 'done');
    const third = caller.fetch('http://inventory/stock');
    (await held.next()).finish();
    assert.equal((await third).status, 200, 'admitted again');
    assert.equal(
      JSON.parse(await adminGet(admin.port, '/_meshlet/status')).outboundAdaptive[0].inFlight,
      0,
      'every slot given back when the calls answered',
    );
  });

  it('a bad option fails createMesh, naming the field', () => {
    const rows: [option: unknown, path: string][] = [
      [{ defaults: { minLimit: 0 } }, 'ratelimit.outboundAdaptive.defaults.minLimit'],
      [{ services: { Orders: {} } }, 'ratelimit.outboundAdaptive.services.Orders'],
      [{ services: { orders: { tolerance: 0.5 } } }, 'ratelimit.outboundAdaptive.services.orders.tolerance'],
      [{ only: ['ok', 7] }, 'ratelimit.outboundAdaptive.only[1]'],
      [{ limit: 5 }, 'ratelimit.outboundAdaptive.limit'],
    ];
    for (const [option, path] of rows)
      assert.throws(
        () =>
          createMesh({
            service: 'bad',
            registry: new InMemoryRegistry(),
            logger: new MemoryLogger(),
            ratelimit: { outboundAdaptive: option as true },
          }),
        (e: unknown) => e instanceof RuleValidationError && e.path === path,
        JSON.stringify(option),
      );
  });
});

describe('client bulkhead beside the adaptive limit, on a real server', () => {
  it('the bulkhead refuses first (it is outside the limit): BulkheadFullError through fetch and request, nothing sent, the limit never asked', async () => {
    const registry = new InMemoryRegistry();
    const held = new Held();
    const server = await listen((req, res) => held.arrive(req, res));
    await registry.register({
      id: 'inventory-0',
      service: 'inventory',
      address: '127.0.0.1',
      port: server.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    const caller = createMesh({
      service: 'shop',
      registry,
      logger: new MemoryLogger(),
      admin: { token: TOKEN },
      ratelimit: {
        bulkheads: { services: { inventory: { maxConcurrent: 1 } } },
        outboundAdaptive: { defaults: { minLimit: 2, maxLimit: 2, initialLimit: 2 } },
      },
    });
    const admin = await listen(caller.httpHandler((_req, res) => res.end('shop')));
    await caller.register({ port: admin.port });
    try {
      const first = caller.fetch('http://inventory/stock');
      const a = await held.next();
      for (const client of ['fetch', 'request'] as const) {
        const refused = await (client === 'fetch' ? caller.fetch('http://inventory/stock') : caller.request('http://inventory/stock')).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(refused instanceof BulkheadFullError, `${client}: ${String(refused)}`);
        assert.equal(refused.code, 'MESHLET_BULKHEAD_FULL');
        assert.equal(refused.service, 'inventory');
      }
      assert.equal(held.seen, 1, 'the refused calls were never sent');
      const limit = JSON.parse(await adminGet(admin.port, '/_meshlet/status')).outboundAdaptive[0];
      assert.deepEqual(
        [limit.service, limit.admitted, limit.refused],
        ['inventory', 1, 0],
        'the limit saw only the call the bulkhead let through',
      );
      a.finish();
      assert.equal(await (await first).text(), 'done');
      const second = caller.request('http://inventory/stock');
      (await held.next()).finish();
      assert.equal(await (await second).body.text(), 'done', 'the slot came back');
    } finally {
      await caller.close();
      await admin.close();
      await server.close();
    }
  });
});
