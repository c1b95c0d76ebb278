import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { buildTopology, createTracing, readTraceLog, type Tracing } from '../src/index.js';
import { listen, memoryExporter, traced, tracedFetch } from './servers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const ROOT = '00f067aa0ba902b7';

// gateway -> orders (W3C) -> inventory (B3 multi, as to a Sleuth service); gateway -> payments (down).
describe('three services over node:http', () => {
  const exporter = memoryExporter();
  let dir: string;
  let tracings: Tracing[] = [];
  const closers: (() => Promise<void>)[] = [];
  let gatewayPort = 0;
  let logs: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-trace-'));
    const make = (service: string, emit: ('w3c' | 'b3multi')[] = ['w3c']) =>
      createTracing({ service, exporters: [exporter], log: { path: join(dir, `${service}.jsonl`) }, propagation: { emit } });
    const [gateway, orders, inventory] = [make('gateway'), make('orders', ['b3multi']), make('inventory')];
    tracings = [gateway, orders, inventory];
    logs = ['gateway', 'orders', 'inventory'].map((s) => join(dir, `${s}.jsonl`));

    const inv = await listen(traced(inventory, '/stock/:sku', async () => ({ status: 200, body: 'ok' })));
    const ord = await listen(
      traced(orders, '/orders/:id', async () => {
        const res = await tracedFetch(orders, 'inventory', `http://127.0.0.1:${inv.port}/stock/7`);
        return { status: 200, body: await res.text() };
      }),
    );
    const gw = await listen(
      traced(gateway, '/checkout', async () => {
        const res = await tracedFetch(gateway, 'orders', `http://127.0.0.1:${ord.port}/orders/42`);
        const body = await res.text();
        await tracedFetch(gateway, 'payments', 'http://127.0.0.1:1/pay').catch(() => undefined);
        return { status: 200, body };
      }),
    );
    closers.push(gw.close, ord.close, inv.close);
    gatewayPort = gw.port;
  });

  after(async () => {
    for (const c of closers) await c();
    for (const t of tracings) await t.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it('links the spans of one request into one trace, parent to child across services', async () => {
    const res = await fetch(`http://127.0.0.1:${gatewayPort}/checkout`, { headers: { traceparent: `00-${TRACE}-${ROOT}-01` } });
    assert.equal(await res.text(), 'ok');
    for (const t of tracings) await t.forceFlush();
    const spans = exporter.getFinishedSpans();
    const service = (s: ReadableSpan) => s.resource.attributes['service.name'];
    const find = (svc: string, kind: SpanKind, peer?: string) => {
      const s = spans.find(
        (x) => service(x) === svc && x.kind === kind && (peer === undefined || x.attributes['service.peer.name'] === peer),
      );
      assert.ok(s, `no ${SpanKind[kind]} span in ${svc}`);
      return s;
    };
    const gwServer = find('gateway', SpanKind.SERVER);
    const gwToOrders = find('gateway', SpanKind.CLIENT, 'orders');
    const gwToPayments = find('gateway', SpanKind.CLIENT, 'payments');
    const ordServer = find('orders', SpanKind.SERVER);
    const ordToInv = find('orders', SpanKind.CLIENT, 'inventory');
    const invServer = find('inventory', SpanKind.SERVER);

    assert.equal(spans.length, 6);
    for (const s of spans) assert.equal(s.spanContext().traceId, TRACE);
    assert.equal(gwServer.parentSpanContext?.spanId, ROOT);
    assert.equal(gwServer.name, 'GET /checkout');
    const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
    assert.equal(parentOf(gwToOrders), gwServer.spanContext().spanId);
    assert.equal(parentOf(gwToPayments), gwServer.spanContext().spanId);
    assert.equal(parentOf(ordServer), gwToOrders.spanContext().spanId);
    assert.equal(parentOf(ordToInv), ordServer.spanContext().spanId);
    // orders spoke B3 multi to inventory; inventory still continued the trace.
    assert.equal(parentOf(invServer), ordToInv.spanContext().spanId);
    assert.equal(invServer.name, 'GET /stock/:sku');
    assert.equal(invServer.attributes['url.path'], '/stock/7');
    assert.equal(gwToPayments.attributes['error.type'], 'TypeError');
  });

  it('builds the dependency graph from the three trace logs after shutdown', async () => {
    for (const t of tracings) await t.shutdown();
    const { spans, badLines } = await readTraceLog(logs);
    assert.equal(badLines, 0);
    assert.equal(spans.length, 6);
    const edges = buildTopology(spans).map(({ from, to, calls, errors }) => ({ from, to, calls, errors }));
    assert.deepEqual(edges, [
      { from: 'gateway', to: 'orders', calls: 1, errors: 0 },
      { from: 'gateway', to: 'payments', calls: 1, errors: 1 },
      { from: 'orders', to: 'inventory', calls: 1, errors: 0 },
    ]);
  });
});
