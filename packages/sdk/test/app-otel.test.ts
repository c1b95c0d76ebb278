// An application's own OpenTelemetry beside the mesh's tracing: a global context manager
// (AsyncLocalStorage, what sdk-trace-node registers), a global tracer provider and W3C
// propagator, and a client instrumentation simulated as @opentelemetry/instrumentation-undici
// does it on `undici:request:create` (a CLIENT span child of the active context, its trace
// context added to the request with `addHeader`; tracing suppressed: no span, no header).
// Real servers on 127.0.0.1: a request comes into a mesh handler, which starts an app span
// and calls another service inside it.
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer, testInstance } from '@meshlet/core/testing';
import { type Context, type ContextManager, context, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from '../src/index.js';

class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A) {
    return this.#als.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    return this;
  }
}

const CALLER = '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01';
const appExporter = new InMemorySpanExporter();
const appProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: appExporter })] });
const appTracer = appProvider.getTracer('app');
const clientTracer = appProvider.getTracer('instrumentation-undici');
/** The traceparent headers each request to `echo` came with (every one, in order). */
const received: (string[] | undefined)[] = [];
let echoCalls = 0;
const registry = new InMemoryRegistry();
const servers: TestServer[] = [];

/** What @opentelemetry/instrumentation-undici does when undici makes a request. */
function onRequestCreated(message: unknown): void {
  const { request: req } = message as { request: { method: string; addHeader(k: string, v: string): void } };
  const active = context.active();
  const span = clientTracer.startSpan(req.method, { kind: SpanKind.CLIENT }, active);
  const headers: Record<string, string> = {};
  propagation.inject(trace.setSpan(active, span), headers);
  for (const [k, v] of Object.entries(headers)) req.addHeader(k, v);
  span.end();
}

before(async () => {
  context.setGlobalContextManager(new AlsContextManager());
  trace.setGlobalTracerProvider(appProvider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  diagnostics.subscribe('undici:request:create', onRequestCreated);
  // echo answers 503 to the first call it is sent, then 200: two attempts under the retry rule.
  const echo = await listen((req, res) => {
    received.push(req.headersDistinct.traceparent);
    res.statusCode = echoCalls++ === 0 ? 503 : 200;
    res.end('ok');
  });
  servers.push(echo);
  await registry.register(testInstance('echo', 'echo-0', echo.port));
  await registry.register(testInstance('echo', 'echo-1', echo.port));
});
after(async () => {
  diagnostics.unsubscribe('undici:request:create', onRequestCreated);
  for (const s of servers) await s.close();
  context.disable();
  trace.disable();
  propagation.disable();
});

/** A mesh `front` whose handler calls echo inside an app span; a request to it with the caller's trace. */
async function frontCalled(mesh: Mesh): Promise<void> {
  await mesh.rules.apply(JSON.stringify({ service: 'echo', breaker: { retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 1 } } } }), {
    author: 'test',
  });
  const front = await listen(
    mesh.httpHandler(async (_req, res) => {
      await appTracer.startActiveSpan('app-work', async (span) => {
        await (await mesh.fetch('http://echo/')).text();
        span.end();
      });
      res.end('done');
    }),
  );
  servers.push(front);
  received.length = 0;
  echoCalls = 0;
  appExporter.reset();
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: front.port, path: '/', headers: { traceparent: CALLER } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}

const only = (spans: readonly ReadableSpan[], name: string): ReadableSpan => {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `one span named ${name}: ${found.length}`);
  return found[0] as ReadableSpan;
};

describe('an application with its own OpenTelemetry', () => {
  it('mesh tracing on: one traceparent per attempt, the mesh CLIENT span child of the app span, child of the SERVER span', async () => {
    const meshExporter = new InMemorySpanExporter();
    const mesh = createMesh({
      service: 'front',
      port: 1,
      registry,
      rules: new InMemoryKvStore(),
      logger: new MemoryLogger(),
      tracing: { exporters: [meshExporter], metrics: false, batch: { delayMs: 1 } },
    });
    await frontCalled(mesh);
    await mesh.tracing?.forceFlush();
    const meshSpans = meshExporter.getFinishedSpans();
    const server = meshSpans.filter((s) => s.kind === SpanKind.SERVER);
    const clients = meshSpans.filter((s) => s.kind === SpanKind.CLIENT);
    const appWork = only(appExporter.getFinishedSpans(), 'app-work');
    // The app's instrumentation recorded nothing for the mesh's attempts.
    assert.deepEqual(
      appExporter.getFinishedSpans().map((s) => s.name),
      ['app-work'],
    );
    assert.equal(server.length, 1);
    assert.equal(clients.length, 2, 'one CLIENT span per attempt');
    const serverId = server[0]?.spanContext().spanId;
    assert.equal(appWork.spanContext().traceId, 'a'.repeat(32));
    assert.equal(appWork.parentSpanContext?.spanId, serverId, 'the app span is a child of the mesh SERVER span');
    assert.deepEqual(
      received,
      clients.map((c) => [`00-${'a'.repeat(32)}-${c.spanContext().spanId}-01`]),
      "each attempt sent one traceparent: its own CLIENT span's",
    );
    for (const c of clients)
      assert.equal(c.parentSpanContext?.spanId, appWork.spanContext().spanId, 'a CLIENT span is a child of the app span');
    await mesh.close();
  });

  it('mesh tracing off: the app traces the call alone (its span, its one traceparent); the caller’s is not passed on beside it', async () => {
    const mesh = createMesh({ service: 'front', port: 1, registry, rules: new InMemoryKvStore(), logger: new MemoryLogger() });
    await frontCalled(mesh);
    const spans = appExporter.getFinishedSpans();
    const clients = spans.filter((s) => s.kind === SpanKind.CLIENT);
    const appWork = only(spans, 'app-work');
    assert.equal(clients.length, 2, "the app's instrumentation spans each attempt");
    assert.deepEqual(
      received,
      clients.map((c) => [`00-${c.spanContext().traceId}-${c.spanContext().spanId}-01`]),
    );
    for (const c of clients) assert.equal(c.parentSpanContext?.spanId, appWork.spanContext().spanId);
    await mesh.close();
  });
});
