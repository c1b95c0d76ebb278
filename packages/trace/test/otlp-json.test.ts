import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { createTracing, encodeTraceLine, encodeTraceLineBytes, encodeTraceRequest, type Tracing } from '../src/index.js';
import { hrTimeToNanoString } from '../src/otlp-json.js';
import { memoryExporter } from './servers.js';

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

async function spansOf(service: string, extra: { version?: string; instanceId?: string } = {}): Promise<ReadableSpan[]> {
  const exporter = memoryExporter();
  const tracing = createTracing({ service, exporters: [exporter], clock: new ManualClock(1_000), ...extra });
  open.push(tracing);
  const server = tracing.startServerSpan(
    { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=a"b,other=x' },
    'GET',
    '/orders/:id',
    { target: '/orders/7?q="x"' },
  );
  await server.run(async () => {
    const ok = tracing.startClientSpan(undefined, {
      method: 'POST',
      url: 'http://user:pw@10.0.0.1:8080/a/b?sig=secret&x=1',
      service: 'inventory',
      route: 'rule "\\ é 😀',
      lane: 'gray',
      instance: 'inv-1',
      attempt: 1,
      breaker: 'closed',
      rulesRevision: 42,
      shadow: 'ratelimit:per-user:would-refuse',
    });
    ok.setAttribute('custom.double', 1.5);
    ok.setAttribute('custom.nan', Number.NaN);
    ok.setAttribute('custom.bool', false);
    ok.setAttribute('custom.array', ['a', 'b\n']);
    ok.setAttribute('custom.numbers', [1, 2.25, -0]);
    ok.end(503);
    tracing.startClientSpan(undefined, { method: 'BREW', url: 'http://10.0.0.2/' }).end({ error: new Error('boom "quoted"\n') });
    await tracing.inSpan('work', async () => {
      trace.getActiveSpan()?.addEvent('evt', { n: 3, s: 'x' });
    });
  });
  server.end(200);
  const internal = tracing.tracer.startSpan('with-event', { kind: SpanKind.INTERNAL }, ROOT_CONTEXT);
  internal.addEvent('first');
  internal.addEvent('second', { at: 'end', list: [true, false] });
  internal.setStatus({ code: 2, message: 'bad \u2028 thing' });
  internal.end();
  await tracing.forceFlush();
  return [...exporter.getFinishedSpans()];
}

describe('encodeTraceLine', () => {
  it('writes exactly JSON.stringify(encodeTraceRequest(spans)): attributes of every type, events, tracestate, statuses, escapes', async () => {
    const spans = await spansOf('orders', { version: '1.2.0', instanceId: 'orders-"1"' });
    assert.ok(spans.length >= 5);
    assert.ok(spans.some((s) => s.events.length > 0));
    const line = encodeTraceLine(spans);
    assert.equal(line, JSON.stringify(encodeTraceRequest(spans)));
    // Cached resource fragment: a second batch of the same resource encodes the same.
    assert.equal(encodeTraceLine(spans.slice(1)), JSON.stringify(encodeTraceRequest(spans.slice(1))));
    assert.doesNotThrow(() => JSON.parse(line));
  });

  it('groups several resources and scopes in one line as the object form does', async () => {
    const a = await spansOf('orders');
    const b = await spansOf('payments');
    const [first] = a;
    assert.ok(first);
    // The same span under another instrumentation scope (with and without a version).
    const otherScope = Object.create(first, { instrumentationScope: { value: { name: 'other@lib', version: '2' } } }) as ReadableSpan;
    const noVersion = Object.create(first, { instrumentationScope: { value: { name: 'bare' } } }) as ReadableSpan;
    const mixed = [b[0], ...a.slice(0, 2), otherScope, ...b.slice(1), noVersion, ...a.slice(2)] as ReadableSpan[];
    const line = encodeTraceLine(mixed);
    assert.equal(line, JSON.stringify(encodeTraceRequest(mixed)));
    const parsed = JSON.parse(line) as { resourceSpans: { scopeSpans: unknown[] }[] };
    assert.equal(parsed.resourceSpans.length, 2);
    assert.equal(parsed.resourceSpans[1]?.scopeSpans.length, 3);
    assert.equal(encodeTraceLine([]), JSON.stringify(encodeTraceRequest([])));
  });

  it('as bytes: the UTF-8 of the same line and its newline, for one or several resources and scopes, empty, and a batch past the first buffer', async () => {
    const a = await spansOf('orders', { version: '1.2.0', instanceId: 'orders-"1"' });
    const b = await spansOf('payments');
    const [first] = a;
    assert.ok(first);
    const otherScope = Object.create(first, { instrumentationScope: { value: { name: 'other@lib', version: '2' } } }) as ReadableSpan;
    const noVersion = Object.create(first, { instrumentationScope: { value: { name: 'bare' } } }) as ReadableSpan;
    // A non-hex id (from a custom id generator) is escaped, not written raw.
    const oddId = Object.create(first, { spanContext: { value: () => ({ ...first.spanContext(), spanId: 'x"y' }) } }) as ReadableSpan;
    const mixed = [b[0], ...a.slice(0, 2), otherScope, ...b.slice(1), noVersion, oddId, ...a.slice(2)] as ReadableSpan[];
    // Many spans with long non-ASCII attributes: more than the first buffer holds.
    const long = Object.create(first, { attributes: { value: { note: 'é😀'.repeat(2000) } } }) as ReadableSpan;
    for (const spans of [a, mixed, [], Array.from({ length: 40 }, () => long), [...mixed, long, ...mixed]]) {
      const want = Buffer.from(`${JSON.stringify(encodeTraceRequest(spans))}\n`);
      assert.deepEqual(encodeTraceLineBytes(spans), want);
      assert.equal(encodeTraceLine(spans), JSON.stringify(encodeTraceRequest(spans)));
    }
  });
});

describe('OTLP/JSON attribute numbers and links', () => {
  it('writes an integer past 2^53 exactly and one past int64 as a double (String gave 1152921504606847000 and "1e+21")', async () => {
    const tracing = createTracing({ service: 'numbers', exporters: [memoryExporter()] });
    open.push(tracing);
    const span = tracing.tracer.startSpan('n', { attributes: { big: 2 ** 60, negative: -(2 ** 62), past: 1e21, huge: -1e30, safe: 42 } });
    span.end();
    const line = encodeTraceLine([span as unknown as ReadableSpan]);
    const kvs = (JSON.parse(line) as { resourceSpans: { scopeSpans: { spans: { attributes: unknown[] }[] }[] }[] }).resourceSpans[0]
      ?.scopeSpans[0]?.spans[0]?.attributes;
    assert.deepEqual(kvs, [
      { key: 'big', value: { intValue: '1152921504606846976' } },
      { key: 'negative', value: { intValue: '-4611686018427387904' } },
      { key: 'past', value: { doubleValue: 1e21 } },
      { key: 'huge', value: { doubleValue: -1e30 } },
      { key: 'safe', value: { intValue: '42' } },
    ]);
    assert.equal(line, JSON.stringify(encodeTraceRequest([span as unknown as ReadableSpan])));
  });

  it("writes a span's links (they were left out), with their attributes and flags", async () => {
    const tracing = createTracing({ service: 'links', exporters: [memoryExporter()] });
    open.push(tracing);
    const context = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true };
    const span = tracing.tracer.startSpan('linked', { links: [{ context, attributes: { why: 'batch' } }] });
    span.end();
    const line = encodeTraceLine([span as unknown as ReadableSpan]);
    const parsed = JSON.parse(line) as { resourceSpans: { scopeSpans: { spans: { links?: unknown }[] }[] }[] };
    assert.deepEqual(parsed.resourceSpans[0]?.scopeSpans[0]?.spans[0]?.links, [
      { traceId: context.traceId, spanId: context.spanId, attributes: [{ key: 'why', value: { stringValue: 'batch' } }], flags: 0x301 },
    ]);
    assert.equal(line, JSON.stringify(encodeTraceRequest([span as unknown as ReadableSpan])));
  });
});

describe('hrTimeToNanoString', () => {
  it('pads the nanoseconds to nine digits after the seconds, as padStart does', () => {
    const nanos = [0, 1, 9, 10, 999, 1_000_000, 12_345_678, 123_456_789, 999_999_999, 1_000_000_000];
    for (let i = 0; i < 500; i++) nanos.push(Math.floor(Math.random() * 10 ** Math.ceil(Math.random() * 9)));
    for (const seconds of [0, 1, 1_796_394_423])
      for (const ns of nanos)
        assert.equal(hrTimeToNanoString([seconds, ns]), seconds === 0 ? String(ns) : `${seconds}${String(ns).padStart(9, '0')}`);
  });
});
