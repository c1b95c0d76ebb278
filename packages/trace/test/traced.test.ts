import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { createTracing, Traced } from '../src/index.js';
import { byName, memoryExporter } from './servers.js';

describe('@Traced()', () => {
  it('gives a method its own span (standard decorator), parent of calls made inside it', async () => {
    const exporter = memoryExporter();
    const tracing = createTracing({ service: 'svc', exporters: [exporter] });
    class Orders {
      @Traced()
      async place(id: string): Promise<string> {
        tracing.startClientSpan(undefined, { method: 'POST', url: 'http://pay/charge', service: 'pay' }).end(200);
        return `placed ${id}`;
      }

      @Traced({ name: 'orders.fail', tracing })
      async fail(): Promise<never> {
        throw new Error('nope');
      }
    }
    const orders = new Orders();
    const server = tracing.startServerSpan({}, 'POST', '/orders');
    assert.equal(await server.run(() => orders.place('7')), 'placed 7');
    server.end(200);
    await assert.rejects(orders.fail(), /nope/);
    await tracing.forceFlush();
    const spans = exporter.getFinishedSpans();
    const place = byName(spans, 'Orders.place');
    assert.equal(place.kind, SpanKind.INTERNAL);
    assert.equal(place.attributes['code.function.name'], 'Orders.place');
    assert.equal(place.parentSpanContext?.spanId, byName(spans, 'POST /orders').spanContext().spanId);
    assert.equal(byName(spans, 'POST').parentSpanContext?.spanId, place.spanContext().spanId);
    const fail = byName(spans, 'orders.fail');
    assert.equal(fail.status.code, SpanStatusCode.ERROR);
    assert.equal(fail.attributes['error.type'], '_OTHER');
    await tracing.shutdown();
  });

  it('works as a legacy experimentalDecorators decorator (target, key, descriptor)', async () => {
    const exporter = memoryExporter();
    const tracing = createTracing({ service: 'svc', exporters: [exporter] });
    class Legacy {
      async load(n: number): Promise<number> {
        return n * 2;
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(Legacy.prototype, 'load') as PropertyDescriptor;
    const decorated = Traced({ tracing })(Legacy.prototype, 'load', descriptor);
    Object.defineProperty(Legacy.prototype, 'load', decorated);
    assert.equal(await new Legacy().load(21), 42);
    await tracing.forceFlush();
    assert.deepEqual(
      exporter.getFinishedSpans().map((s) => s.name),
      ['Legacy.load'],
    );
    await tracing.shutdown();
    assert.throws(() => Traced()(Legacy.prototype, 'x', { value: 1 }), TypeError);
  });

  it('runs the method untraced when there is no tracing', async () => {
    const tracing = createTracing({ service: 'svc' });
    await tracing.shutdown(); // no tracing is the default any more
    class Plain {
      @Traced()
      async ping(): Promise<string> {
        return 'pong';
      }
    }
    assert.equal(await new Plain().ping(), 'pong');
  });

  it("records through the tracing serving the request (its server span's, or run's), not the one created last", async () => {
    const ea = memoryExporter();
    const eb = memoryExporter();
    const a = createTracing({ service: 'svc-a', exporters: [ea] });
    const b = createTracing({ service: 'svc-b', exporters: [eb] }); // created last
    class Orders {
      @Traced()
      async place(): Promise<void> {}
    }
    const orders = new Orders();
    const server = a.startServerSpan({}, 'POST', '/orders');
    await server.run(() => orders.place());
    server.end(200);
    // Tracing.run (what the gRPC server runs a call's handler in) says whose it is too.
    const caller = a.propagation.extract({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
    await a.run(caller, () => orders.place());
    await orders.place(); // outside any request: the last created
    await a.forceFlush();
    await b.forceFlush();
    const names = (e: typeof ea) => e.getFinishedSpans().map((s) => `${s.resource.attributes['service.name']} ${s.name}`);
    assert.deepEqual(names(ea), ['svc-a Orders.place', 'svc-a POST /orders', 'svc-a Orders.place']);
    assert.deepEqual(names(eb), ['svc-b Orders.place']);
    await a.shutdown();
    await b.shutdown();
  });
});

it('refuses a misspelt option, an empty name and a tracing that is not one, naming the field', () => {
  for (const [options, field] of [
    [{ nmae: 'x' }, '@Traced.nmae'],
    [{ name: '' }, '@Traced.name'],
    [{ tracing: {} }, '@Traced.tracing'],
  ] as const)
    assert.throws(
      () => Traced(options as never),
      (e: unknown) => (e as { code?: string }).code === 'MESHLET_BAD_OPTION' && (e as Error).message.startsWith(`${field}: `),
    );
});
