import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type Context, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord } from '../src/client-span-record.js';
import { createTracing, startRpcClientSpan, startRpcServerSpan, type Tracing } from '../src/index.js';
import { memoryExporter } from './servers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

function setup(sampleRatio: number, propagation?: 'b3') {
  const exporter = memoryExporter();
  const tracing = createTracing({
    service: 'orders',
    sampleRatio,
    exporters: [exporter],
    ...(propagation ? { propagation: { emit: [propagation] } } : {}),
  });
  open.push(tracing);
  // The same Tracing without its own parts: startRpcClientSpan takes OpenTelemetry's tracer.
  const otel = { tracer: tracing.tracer, propagation: tracing.propagation, active: () => tracing.active() };
  return { tracing, otel, exporter };
}

const attributes = () => ({
  'rpc.system': 'grpc',
  'rpc.service': 'demo.Greeter',
  'rpc.method': 'Hello',
  'service.peer.name': 'greeter',
  'server.address': '10.0.0.1',
  'server.port': 50051,
  'io.meshlet.instance': 'greeter-1',
  'io.meshlet.attempt': 1,
});

const parentOf = (flags: TraceFlags): Context =>
  trace.setSpanContext(ROOT_CONTEXT, {
    traceId: TRACE,
    spanId: SPAN,
    traceFlags: flags,
    isRemote: true,
    traceState: new TraceState('vendor=abc'),
  });

/** One call's span: started, its headers written, attributes and an error status set, ended. */
function oneCall(t: Parameters<typeof startRpcClientSpan>[0], parent: Context | undefined): Record<string, string> {
  const span = startRpcClientSpan(t, { name: 'demo.Greeter/Hello', attributes: attributes(), parent });
  const headers: Record<string, string> = {};
  span.inject(headers);
  span.setAttribute('rpc.grpc.status_code', 14);
  span.setStatus({ code: SpanStatusCode.ERROR, message: 'UNAVAILABLE: down' });
  span.setAttribute('error.type', 'UNAVAILABLE');
  span.end();
  // Ended: no more changes.
  span.setAttribute('late', 'x');
  span.end();
  return headers;
}

function view(s: ReadableSpan) {
  return {
    name: s.name,
    kind: s.kind,
    attributes: Object.entries(s.attributes),
    status: s.status,
    traceId: s.spanContext().traceId,
    traceFlags: s.spanContext().traceFlags,
    traceState: s.spanContext().traceState?.serialize(),
    parentSpanId: s.parentSpanContext?.spanId,
    parentTraceId: s.parentSpanContext?.traceId,
    scope: s.instrumentationScope.name,
    resource: s.resource.attributes['service.name'],
    ended: s.ended,
  };
}

describe('startRpcClientSpan', () => {
  it("a sampled caller: a span record equal to OpenTelemetry's span for the same inputs, its context in the metadata", async () => {
    const { tracing, otel, exporter } = setup(1);
    const h1 = oneCall(tracing, parentOf(TraceFlags.SAMPLED));
    const h2 = oneCall(otel, parentOf(TraceFlags.SAMPLED));
    await tracing.forceFlush();
    const [mine, theirs] = exporter.getFinishedSpans() as ReadableSpan[];
    assert.ok(mine instanceof ClientSpanRecord, "the head-sampled path records Meshlet's own span");
    assert.ok(!(theirs instanceof ClientSpanRecord));
    assert.deepEqual(view(mine as ReadableSpan), view(theirs as ReadableSpan));
    assert.equal(mine?.kind, SpanKind.CLIENT);
    assert.deepEqual(mine?.status, { code: SpanStatusCode.ERROR, message: 'UNAVAILABLE: down' });
    assert.equal(mine?.parentSpanContext?.spanId, SPAN);
    assert.equal(mine?.attributes.late, undefined);
    for (const [h, s] of [
      [h1, mine],
      [h2, theirs],
    ] as const) {
      assert.equal(h.traceparent, `00-${TRACE}-${s?.spanContext().spanId}-01`);
      assert.equal(h.tracestate, 'vendor=abc');
    }
  });

  it("a new trace at 100%: a root span record with a fresh trace id, as OpenTelemetry's", async () => {
    const { tracing, otel, exporter } = setup(1);
    const h1 = oneCall(tracing, undefined);
    const h2 = oneCall(otel, ROOT_CONTEXT);
    await tracing.forceFlush();
    const [mine, theirs] = exporter.getFinishedSpans() as ReadableSpan[];
    const a = view(mine as ReadableSpan);
    const b = view(theirs as ReadableSpan);
    assert.notEqual(a.traceId, b.traceId);
    assert.deepEqual({ ...a, traceId: '' }, { ...b, traceId: '' });
    assert.equal(a.parentSpanId, undefined);
    assert.equal(TRACEPARENT.exec(h1.traceparent ?? '')?.[1], a.traceId);
    assert.equal(TRACEPARENT.exec(h2.traceparent ?? '')?.[1], b.traceId);
  });

  it('an unsampled caller: no span recorded by either path, the same trace id, tracestate and flags 00 in the metadata', async () => {
    const { tracing, otel, exporter } = setup(1);
    const h1 = oneCall(tracing, parentOf(TraceFlags.NONE));
    const h2 = oneCall(otel, parentOf(TraceFlags.NONE));
    await tracing.forceFlush();
    assert.equal(exporter.getFinishedSpans().length, 0);
    for (const h of [h1, h2]) {
      const [, traceId, spanId, flags] = TRACEPARENT.exec(h.traceparent ?? '') ?? [];
      assert.equal(traceId, TRACE);
      assert.notEqual(spanId, SPAN);
      assert.equal(flags, '00');
      assert.equal(h.tracestate, 'vendor=abc');
    }
  });

  it('sampleRatio 0, no caller: nothing recorded, a valid unsampled traceparent', async () => {
    const { tracing, exporter } = setup(0);
    const h = oneCall(tracing, undefined);
    await tracing.forceFlush();
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.equal(TRACEPARENT.exec(h.traceparent ?? '')?.[3], '00');
  });

  it("B3 propagation: the span record's context written in B3, as OpenTelemetry's span's", async () => {
    const { tracing, otel, exporter } = setup(1, 'b3');
    const h1 = oneCall(tracing, parentOf(TraceFlags.SAMPLED));
    const h2 = oneCall(otel, parentOf(TraceFlags.SAMPLED));
    await tracing.forceFlush();
    const [mine, theirs] = exporter.getFinishedSpans() as ReadableSpan[];
    assert.equal(h1.b3, `${TRACE}-${mine?.spanContext().spanId}-1`);
    assert.equal(h2.b3, `${TRACE}-${theirs?.spanContext().spanId}-1`);
    assert.deepEqual(Object.keys(h1).sort(), Object.keys(h2).sort());
  });

  it('the active context is the parent when none is given', async () => {
    const { tracing, exporter } = setup(1);
    tracing.run(parentOf(TraceFlags.SAMPLED), () => oneCall(tracing, undefined));
    await tracing.forceFlush();
    assert.equal(exporter.getFinishedSpans()[0]?.parentSpanContext?.spanId, SPAN);
  });
});

describe('startRpcServerSpan', () => {
  const serverAttributes = () => ({
    'rpc.system': 'grpc',
    'rpc.service': 'demo.Greeter',
    'rpc.method': 'Hello',
    'client.address': '10.0.0.9',
    'io.meshlet.caller': 'gateway',
  });
  /** One inbound call's span: started, a status and an attribute set, ended. */
  function oneServerCall(t: Parameters<typeof startRpcServerSpan>[0], parent: Context) {
    const span = startRpcServerSpan(t, { name: 'demo.Greeter/Hello', attributes: serverAttributes(), parent });
    span.setAttribute('rpc.grpc.status_code', 13);
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'INTERNAL: boom' });
    span.end();
    return span;
  }

  it("a sampled caller: a span record (kind SERVER) equal to OpenTelemetry's span for the same inputs", async () => {
    const { tracing, otel, exporter } = setup(1);
    oneServerCall(tracing, parentOf(TraceFlags.SAMPLED));
    oneServerCall(otel, parentOf(TraceFlags.SAMPLED));
    await tracing.forceFlush();
    const [mine, theirs] = exporter.getFinishedSpans() as ReadableSpan[];
    assert.ok(mine instanceof ClientSpanRecord, "Meshlet's own span record, not the tracer's span");
    assert.ok(!(theirs instanceof ClientSpanRecord));
    assert.deepEqual(view(mine as ReadableSpan), view(theirs as ReadableSpan));
    assert.equal(mine?.kind, SpanKind.SERVER);
    assert.equal(mine?.parentSpanContext?.isRemote, true);
  });

  it("a new trace at 100%: a root span record, as OpenTelemetry's", async () => {
    const { tracing, otel, exporter } = setup(1);
    oneServerCall(tracing, ROOT_CONTEXT);
    oneServerCall(otel, ROOT_CONTEXT);
    await tracing.forceFlush();
    const [mine, theirs] = exporter.getFinishedSpans() as ReadableSpan[];
    assert.deepEqual({ ...view(mine as ReadableSpan), traceId: '' }, { ...view(theirs as ReadableSpan), traceId: '' });
    assert.equal(mine?.parentSpanContext, undefined);
  });

  it('an unsampled caller, and sampleRatio 0 with none: nothing recorded by either path; the span context continues the trace unsampled', async () => {
    for (const [ratio, parent] of [
      [1, parentOf(TraceFlags.NONE)],
      [0, ROOT_CONTEXT],
    ] as const) {
      const { tracing, otel, exporter } = setup(ratio);
      const a = oneServerCall(tracing, parent).spanContext();
      const b = oneServerCall(otel, parent).spanContext();
      await tracing.forceFlush();
      assert.equal(exporter.getFinishedSpans().length, 0);
      for (const sc of [a, b]) {
        assert.equal(sc.traceFlags, TraceFlags.NONE);
        if (ratio === 1) assert.equal(sc.traceId, TRACE);
      }
    }
  });
});
