// Holds the recorded SERVER (and INTERNAL) span equal to OpenTelemetry's tracer's span for
// the same inputs: two Tracings alike, each with its own copy of one seeded id generator,
// one making its spans as Meshlet's span records, the other through the tracer (the same
// SpanDeps without span recording, which is the path taken before the records).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import {
  type Attributes,
  type Context,
  defaultTextMapGetter,
  type MeterProvider,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { IdGenerator, InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord } from '../src/client-span-record.js';
import {
  createTracing,
  encodeTraceLine,
  GovernanceErrorType,
  type ServerSpan,
  Traced,
  TracePropagation,
  type Tracing,
} from '../src/index.js';
import { inInternalSpan } from '../src/internal-span.js';
import { type InboundHeaders, simpleParent } from '../src/propagation.js';
import { startServerSpan } from '../src/server-span.js';
import { SPAN_DEPS, type SpanDeps } from '../src/span-deps.js';
import { SpanRecord, spanRecording } from '../src/span-record.js';
import { memoryExporter } from './servers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

/** Ids from a seeded generator (mulberry32): two generators with one seed draw the same ids. */
class SeededIds implements IdGenerator {
  #state: number;
  constructor(seed: number) {
    this.#state = seed;
  }
  #hex(chars: number): string {
    let out = '';
    while (out.length < chars) {
      this.#state = (this.#state + 0x6d2b79f5) | 0;
      let t = this.#state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out += ((t ^ (t >>> 14)) >>> 0).toString(16).padStart(8, '0');
    }
    return out.slice(0, chars);
  }
  generateTraceId(): string {
    return this.#hex(32);
  }
  generateSpanId(): string {
    return this.#hex(16);
  }
}

/** A MeterProvider that keeps what its histograms record. */
function recordingMeter(): { provider: MeterProvider; records: [string, number, Attributes | undefined][] } {
  const records: [string, number, Attributes | undefined][] = [];
  const provider = {
    getMeter: () => ({
      createHistogram: (name: string) => ({ record: (v: number, a?: Attributes) => records.push([name, v, a]) }),
    }),
  } as unknown as MeterProvider;
  return { provider, records };
}

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

interface Side {
  readonly tracing: Tracing;
  readonly deps: SpanDeps;
  readonly exporter: InMemorySpanExporter;
  readonly clock: ManualClock;
  readonly histograms: [string, number, Attributes | undefined][];
}

/** Two Tracings alike: `mine` records its own spans, `theirs` has OpenTelemetry's tracer make them. */
function pair(sampleRatio: number, seed = 7, propagation?: 'b3multi') {
  const side = (recorded: boolean): Side => {
    const exporter = memoryExporter();
    const clock = new ManualClock(1000);
    const meter = recordingMeter();
    const tracing = createTracing({
      service: 'orders',
      version: '1.2.3',
      sampleRatio,
      exporters: [exporter],
      idGenerator: new SeededIds(seed),
      clock,
      meterProvider: meter.provider,
      ...(propagation ? { propagation: { emit: [propagation] } } : {}),
    });
    open.push(tracing);
    const own = (tracing as unknown as { [SPAN_DEPS]: SpanDeps })[SPAN_DEPS];
    assert.ok(own.spanRecording, 'a Tracing made by createTracing records its SERVER spans');
    const deps: SpanDeps = recorded ? own : { ...own, spanRecording: undefined };
    return { tracing, deps, exporter, clock, histograms: meter.records };
  };
  return { mine: side(true), theirs: side(false) };
}

/** What an exporter sees of a span, times aside. */
function view(s: ReadableSpan) {
  const sc = s.spanContext();
  return {
    name: s.name,
    kind: s.kind,
    attributes: Object.entries(s.attributes),
    status: s.status,
    traceId: sc.traceId,
    spanId: sc.spanId,
    traceFlags: sc.traceFlags,
    traceState: sc.traceState?.serialize(),
    parent: s.parentSpanContext
      ? {
          traceId: s.parentSpanContext.traceId,
          spanId: s.parentSpanContext.spanId,
          isRemote: s.parentSpanContext.isRemote,
          traceFlags: s.parentSpanContext.traceFlags,
        }
      : undefined,
    events: s.events.map((e) => ({ ...e, time: undefined })),
    links: s.links,
    dropped: [s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount],
    scope: s.instrumentationScope,
    resource: s.resource.attributes,
    ended: s.ended,
  };
}

/** A trace log line with its times zeroed. */
const line = (spans: ReadableSpan[]) => encodeTraceLine(spans).replace(/"(start|end)?[tT]imeUnixNano":"\d+"/g, '"$1TimeUnixNano":"0"');

/** The trace context a span handle gives its children. */
const contextOf = (s: ServerSpan) => {
  const sc = trace.getSpanContext(s.context);
  return { ...sc, traceState: sc?.traceState?.serialize() };
};

/** What both sides ended, compared: spans, trace log, metrics. Returns mine. */
async function sameOutput(mine: Side, theirs: Side): Promise<ReadableSpan[]> {
  await mine.tracing.forceFlush();
  await theirs.tracing.forceFlush();
  const a = mine.exporter.getFinishedSpans() as ReadableSpan[];
  const b = theirs.exporter.getFinishedSpans() as ReadableSpan[];
  assert.deepEqual(a.map(view), b.map(view));
  for (const s of a) assert.ok(s instanceof SpanRecord, "the span is Meshlet's own record");
  for (const s of b) assert.ok(!(s instanceof ClientSpanRecord), "the other side's span is OpenTelemetry's");
  if (a.length > 0) assert.equal(line(a), line(b));
  assert.equal(mine.tracing.serverMetrics?.render(), theirs.tracing.serverMetrics?.render());
  assert.deepEqual(mine.histograms, theirs.histograms);
  return a;
}

/** One request on each side, the same steps. */
function both(
  sides: { mine: Side; theirs: Side },
  headers: Record<string, string>,
  steps: (span: ServerSpan, side: Side) => void,
  method = 'GET',
  route: string | undefined = '/orders/:id',
  info = { target: '/orders/42?fields=id', caller: 'edge', rulesRevision: 3 },
): [ServerSpan, ServerSpan] {
  const run = (side: Side) => {
    const span = startServerSpan(side.deps, headers, method, route, info);
    side.clock.advance(12);
    steps(span, side);
    return span;
  };
  const a = run(sides.mine);
  const b = run(sides.theirs);
  assert.deepEqual(contextOf(a), contextOf(b));
  assert.equal(a.recording, b.recording);
  return [a, b];
}

describe("the recorded SERVER span is OpenTelemetry's", () => {
  it('a sampled remote caller (W3C, tracestate): name, kind, attributes in order, ids, parent, status, events, resource, scope, log, metrics', async () => {
    const sides = pair(1);
    const headers = { traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'vendor=abc,other=x', host: 'orders.internal:8080' };
    const failure = Object.assign(new Error('db down'), { code: 'ECONNREFUSED' });
    const [a] = both(
      sides,
      headers,
      (span) => {
        span.setAttribute('io.meshlet.auth', 'admins:allowed');
        // What a handler does with the active span: OpenTelemetry's API on it.
        const active = trace.getSpan(span.run(() => span.context));
        active?.setAttribute('app.user', 'u-1');
        active?.setAttribute('app.flag', true);
        active?.setAttribute('app.bad', (() => 1) as never); // not an attribute value: dropped
        active?.setAttribute('', 'empty key'); // dropped
        active?.setAttribute('app.list', ['a', 'b']);
        active?.setAttribute('app.user', 'u-2'); // set again: keeps its place
        active?.addEvent('cache.miss', { key: 'k1', bad: {} as never });
        active?.recordException(failure);
        span.setRoute('/orders/:orderId');
        span.end(503);
        span.end(200); // once only
        active?.setAttribute('late', 'x'); // ended: no more changes
      },
      'get',
    );
    assert.equal(a.recording, false);
    const [mine] = await sameOutput(sides.mine, sides.theirs);
    assert.ok(mine);
    assert.equal(mine.kind, SpanKind.SERVER);
    assert.equal(mine.name, 'GET /orders/:orderId');
    assert.equal(mine.spanContext().traceId, TRACE);
    assert.equal(mine.parentSpanContext?.spanId, SPAN);
    assert.equal(mine.parentSpanContext?.isRemote, true);
    assert.equal(mine.spanContext().traceState?.serialize(), 'vendor=abc,other=x');
    assert.deepEqual(mine.status, { code: SpanStatusCode.ERROR });
    assert.equal(mine.attributes['error.type'], '503');
    assert.equal(mine.attributes['http.request.method_original'], 'get');
    assert.equal(mine.attributes['app.bad'], undefined);
    assert.deepEqual(
      mine.events.map((e) => e.name),
      ['cache.miss', 'exception'],
    );
    assert.equal(mine.events[1]?.attributes?.['exception.type'], 'ECONNREFUSED');
    const json = JSON.parse(encodeTraceLine([mine])).resourceSpans[0].scopeSpans[0].spans[0];
    assert.equal(json.kind, 2, 'OTLP SPAN_KIND_SERVER');
    assert.equal(json.flags, 0x301, 'sampled, remote parent');
  });

  it('a new root at sampleRatio 1: the same ids from the same generator; a 4xx is not an error on the server side', async () => {
    const sides = pair(1);
    both(sides, { host: '[::1]:9000' }, (span) => span.end(404), 'POST', undefined, {
      target: '/orders',
      caller: 'edge',
      rulesRevision: 0,
    });
    const [mine] = await sameOutput(sides.mine, sides.theirs);
    assert.equal(mine?.parentSpanContext, undefined);
    assert.equal(mine?.spanContext().traceFlags, TraceFlags.SAMPLED);
    assert.deepEqual(mine?.status, { code: SpanStatusCode.UNSET });
    assert.equal(mine?.attributes['server.address'], '[::1]');
  });

  it('sampleRatio 0.3, new roots: the same requests sampled, with the same ids, as by the tracer', async () => {
    const sides = pair(0.3, 42);
    let sampled = 0;
    for (let i = 0; i < 60; i++) {
      const [a] = both(sides, {}, (span) => span.end(200));
      if (trace.getSpanContext(a.context)?.traceFlags === TraceFlags.SAMPLED) sampled++;
    }
    const mine = await sameOutput(sides.mine, sides.theirs);
    assert.equal(mine.length, sampled);
    assert.ok(sampled > 0 && sampled < 60, `some sampled, some not: ${sampled}`);
  });

  it('a caller that did not sample, and sampleRatio 0 with no caller: no span on either side, the same contexts and metrics', async () => {
    const sides = pair(1);
    both(sides, { traceparent: `00-${TRACE}-${SPAN}-00`, tracestate: 'vendor=abc' }, (span) => span.end(200));
    assert.equal((await sameOutput(sides.mine, sides.theirs)).length, 0);
    const zero = pair(0);
    both(zero, {}, (span) => span.end(500));
    assert.equal((await sameOutput(zero.mine, zero.theirs)).length, 0);
    // A sampled caller is followed at ratio 0.
    both(zero, { traceparent: `00-${TRACE}-${SPAN}-01` }, (span) => span.end(200));
    assert.equal((await sameOutput(zero.mine, zero.theirs)).length, 1);
  });

  it('B3 headers (single and multi): the caller continued as by the tracer', async () => {
    const sides = pair(1, 3, 'b3multi');
    both(sides, { b3: `${TRACE}-${SPAN}-1` }, (span) => span.end(200));
    both(sides, { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' }, (span) => span.end(200));
    // 64-bit B3 trace id: padded as OpenTelemetry's propagator pads it.
    both(sides, { b3: `a3ce929d0e0e4736-${SPAN}-1` }, (span) => span.end(200));
    const mine = await sameOutput(sides.mine, sides.theirs);
    assert.equal(mine.length, 3);
    assert.equal(mine[2]?.spanContext().traceId, '0000000000000000a3ce929d0e0e4736');
  });

  it('governance outcomes: rate_limited and auth_denied in error.type, the status unset; an error thrown: its type and message', async () => {
    const sides = pair(1);
    const caller = { traceparent: `00-${TRACE}-${SPAN}-01` };
    both(sides, caller, (span) => {
      span.setOutcome(GovernanceErrorType.rateLimited);
      span.setAttribute('io.meshlet.limiter', 'per-caller:rejected');
      span.end(429);
    });
    both(sides, caller, (span) => {
      span.setAttribute('io.meshlet.auth', '(default):denied');
      span.setOutcome(GovernanceErrorType.authDenied);
      span.end(403);
    });
    both(sides, caller, (span) => span.end(500, Object.assign(new Error('boom'), { code: 'E_BOOM' })));
    const mine = await sameOutput(sides.mine, sides.theirs);
    assert.deepEqual(
      mine.map((s) => [s.attributes['error.type'], s.status.code]),
      [
        ['rate_limited', SpanStatusCode.UNSET],
        ['auth_denied', SpanStatusCode.UNSET],
        ['_OTHER', SpanStatusCode.ERROR],
      ],
    );
    assert.equal(mine[2]?.status.message, 'boom');
  });

  it("OpenTelemetry's limits on what the app adds: 128 attributes, 128 events (the oldest dropped), links, with the dropped counts", async () => {
    const sides = pair(1);
    both(sides, { traceparent: `00-${TRACE}-${SPAN}-01` }, (span) => {
      const active = trace.getSpan(span.context);
      for (let i = 0; i < 130; i++) active?.setAttribute(`app.a${i}`, i % 2 ? `v${i}` : i);
      active?.setAttributes({ 'app.a0': 'again', 'app.obj': { nested: [1, 'x'] } as never, 'app.null': null as never });
      for (let i = 0; i < 130; i++) active?.addEvent(`e${i}`, i % 2 ? { n: i } : undefined);
      for (let i = 0; i < 130; i++) active?.addLink({ context: { traceId: TRACE, spanId: SPAN, traceFlags: 1 }, attributes: { i } });
      span.end(200);
    });
    const [mine] = await sameOutput(sides.mine, sides.theirs);
    assert.equal(Object.keys(mine?.attributes ?? {}).length, 128);
    assert.ok((mine?.droppedAttributesCount ?? 0) > 0);
    assert.equal(mine?.events.length, 128);
    assert.equal(mine?.droppedEventsCount, 2);
    assert.equal(mine?.events[0]?.name, 'e2');
    assert.equal(mine?.links.length, 128);
    assert.equal(mine?.droppedLinksCount, 2);
  });

  it("takes the limits from the SDK tracer's own; a tracer without them (or with a value length limit) keeps its spans", () => {
    const tracing = createTracing({ service: 'orders', exporters: [memoryExporter()] });
    open.push(tracing);
    const own = (tracing as unknown as { [SPAN_DEPS]: SpanDeps })[SPAN_DEPS];
    const made = spanRecording(own.tracer, own.sampler, own.records, true);
    assert.equal(made?.limits.attributeCountLimit, 128);
    const limited = { _spanLimits: { attributeCountLimit: 5, attributeValueLengthLimit: Number.POSITIVE_INFINITY } };
    assert.equal(spanRecording(limited as never, own.sampler, own.records, true)?.limits.attributeCountLimit, 5);
    assert.equal(spanRecording({ _spanLimits: { attributeValueLengthLimit: 10 } } as never, own.sampler, own.records, true), undefined);
    // A later SDK without the field: the limits are unknown, the tracer applies them.
    assert.equal(spanRecording({} as never, own.sampler, own.records, true), undefined);
  });

  it('is the parent of the CLIENT spans made while handling the request, and of the INTERNAL ones', async () => {
    const sides = pair(1);
    const children = (span: ServerSpan, side: Side) => {
      const headers: Record<string, string> = {};
      span.run(() => {
        const client = side.tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1:8080/stock/1', service: 'stock' });
        client.inject(headers);
        client.end(200);
      });
      assert.match(headers.traceparent ?? '', new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
      span.end(200);
    };
    both(sides, { traceparent: `00-${TRACE}-${SPAN}-01` }, children);
    await sides.mine.tracing.forceFlush();
    const spans = sides.mine.exporter.getFinishedSpans();
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.ok(server instanceof SpanRecord);
    assert.equal(client?.parentSpanContext?.spanId, server.spanContext().spanId);
    assert.equal(client?.spanContext().traceId, TRACE);
  });
});

describe('server.address and server.port from the Host header', () => {
  it('reads each Host, one after another and again (the last one is kept)', async () => {
    const { mine } = pair(1);
    const hosts: [string, string, number | undefined][] = [
      ['orders.internal:8080', 'orders.internal', 8080],
      ['orders.internal:8080', 'orders.internal', 8080],
      ['[::1]:9000', '[::1]', 9000],
      ['[::1]', '[::1]', undefined],
      ['example.com', 'example.com', undefined],
      ['h:abc', 'h', undefined],
      ['orders.internal:8080', 'orders.internal', 8080],
    ];
    for (const [host] of hosts) startServerSpan(mine.deps, { host }, 'GET', '/x').end(200);
    await mine.tracing.forceFlush();
    assert.deepEqual(
      mine.exporter.getFinishedSpans().map((s) => [s.attributes['server.address'], s.attributes['server.port']]),
      hosts.map(([, address, port]) => [address, port]),
    );
  });
});

describe("the recorded INTERNAL span (inSpan, @Traced) is OpenTelemetry's", () => {
  const inBoth = async (sides: { mine: Side; theirs: Side }, parent: Record<string, string>, fail: boolean) => {
    for (const side of [sides.mine, sides.theirs]) {
      const server = startServerSpan(side.deps, parent, 'GET', '/x');
      await server.run(() =>
        inInternalSpan(
          side.deps,
          'Orders.load',
          async () => {
            trace.getSpan(side.tracing.active())?.setAttribute('app.rows', 3);
            if (fail) throw Object.assign(new Error('no rows'), { code: 'E_EMPTY' });
            return 1;
          },
          { 'code.function.name': 'Orders.load', 'app.bad': undefined as never, 'app.n': 1 },
        ).catch(() => 0),
      );
      server.end(200);
    }
  };

  it('under a sampled server span, under a new root, failing: the same spans', async () => {
    const sides = pair(1, 11);
    await inBoth(sides, { traceparent: `00-${TRACE}-${SPAN}-01` }, false);
    await inBoth(sides, {}, true);
    const mine = await sameOutput(sides.mine, sides.theirs);
    const internal = mine.filter((s) => s.kind === SpanKind.INTERNAL);
    assert.equal(internal.length, 2);
    assert.deepEqual(internal[1]?.status, { code: SpanStatusCode.ERROR, message: 'no rows' });
    assert.equal(internal[1]?.attributes['error.type'], '_OTHER');
    const server = mine.find((s) => s.kind === SpanKind.SERVER);
    assert.equal(internal[0]?.parentSpanContext?.spanId, server?.spanContext().spanId);
    assert.notEqual(internal[0]?.parentSpanContext?.isRemote, true);
  });

  it('ratio 0.5 and an unsampled caller: the same decisions, nothing recorded where the tracer records nothing', async () => {
    const sides = pair(0.5, 5);
    for (let i = 0; i < 20; i++) await inBoth(sides, {}, i % 3 === 0);
    await inBoth(sides, { traceparent: `00-${TRACE}-${SPAN}-00` }, false);
    const mine = await sameOutput(sides.mine, sides.theirs);
    assert.ok(mine.length > 0 && mine.length < 40);
  });

  it('@Traced records its INTERNAL span as a span record', async () => {
    const { mine } = pair(1);
    class Orders {
      @Traced({ tracing: mine.tracing })
      async load(): Promise<number> {
        return 1;
      }
    }
    assert.equal(await new Orders().load(), 1);
    await mine.tracing.forceFlush();
    const [span] = mine.exporter.getFinishedSpans();
    assert.ok(span instanceof SpanRecord);
    assert.equal(span.kind, SpanKind.INTERNAL);
    assert.equal(span.name, 'Orders.load');
    assert.deepEqual(span.attributes, { 'code.function.name': 'Orders.load' });
  });
});

describe('the simple inbound parent (no propagators)', () => {
  const tp = `00-${TRACE}-${SPAN}-01`;
  const taken: Record<string, string | string[] | undefined>[] = [
    {},
    { host: 'x' },
    { traceparent: tp },
    { traceparent: `00-${TRACE}-${SPAN}-00` },
    { traceparent: tp, tracestate: 'vendor=abc,other=x' },
    { traceparent: tp, tracestate: '' },
    { traceparent: tp, b3: `${'1'.repeat(32)}-${'2'.repeat(16)}-1` }, // W3C wins
    { traceparent: `00-${TRACE}-${'0'.repeat(15)}1-01` },
  ];
  const left: Record<string, string | string[] | undefined>[] = [
    { traceparent: `00-${TRACE.toUpperCase()}-${SPAN}-01` },
    { traceparent: `00-${'0'.repeat(32)}-${SPAN}-01` },
    { traceparent: `00-${TRACE}-${'0'.repeat(16)}-01` },
    { traceparent: `ff-${TRACE}-${SPAN}-01` },
    { traceparent: `01-${TRACE}-${SPAN}-01-extra` },
    { traceparent: `00-${TRACE}-${SPAN}-01-extra` },
    { traceparent: ` ${tp}` },
    { traceparent: `${tp} ` },
    { traceparent: `00-${TRACE}-${SPAN}-03` },
    { traceparent: `00-${TRACE}-${SPAN}-0g` },
    { traceparent: `00-${TRACE}_${SPAN}-01` },
    { traceparent: [tp, tp] },
    { traceparent: tp, tracestate: ['a=1', 'b=2'] },
    { traceparent: tp, baggage: 'user=alice' },
    { baggage: 'user=alice' },
    { b3: `${TRACE}-${SPAN}-1` },
    { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' },
    { traceparent: 'garbage', b3: `${TRACE}-${SPAN}-1` },
  ];
  const p = new TracePropagation();
  const seen = (ctx: ReturnType<typeof p.extract>) => ({
    span: trace.getSpanContext(ctx),
    baggage: propagation.getBaggage(ctx)?.getAllEntries(),
  });

  // The reference for the simple cases: OpenTelemetry's W3C propagator itself (no baggage
  // in them; W3C wins over B3), not TracePropagation, whose extract tries simpleParent first.
  const w3c = new W3CTraceContextPropagator();
  const byPropagator = (h: Record<string, string | string[] | undefined>) => w3c.extract(ROOT_CONTEXT, h, defaultTextMapGetter);

  it("gives the propagators' context for the simple cases, and leaves every other case to them", () => {
    for (const h of taken) {
      const ctx = simpleParent(h);
      assert.ok(ctx, `taken: ${JSON.stringify(h)}`);
      assert.deepEqual(seen(ctx), seen(byPropagator(h)), JSON.stringify(h));
      // TracePropagation.extract (what HTTP and gRPC servers call) gives the same.
      assert.deepEqual(seen(p.extract(h)), seen(byPropagator(h)), `extract: ${JSON.stringify(h)}`);
    }
    assert.equal(simpleParent({}), ROOT_CONTEXT);
    for (const h of left) assert.equal(simpleParent(h), undefined, `left: ${JSON.stringify(h)}`);
    assert.equal(simpleParent(new Headers({ traceparent: tp })), undefined);
  });

  it('extractByPropagators (the SERVER span, once simpleParent said no) gives what extract gives, in every case', () => {
    for (const h of [...taken, ...left]) assert.deepEqual(seen(p.extractByPropagators(h)), seen(p.extract(h)), JSON.stringify(h));
    for (const h of taken) assert.deepEqual(seen(p.extractByPropagators(h)), seen(byPropagator(h)), JSON.stringify(h));
  });

  it('the SERVER span asks simpleParent once: the headers it leaves go to the propagators alone', () => {
    const { mine } = pair(1);
    const calls: string[] = [];
    class Counting extends TracePropagation {
      override extract(headers: InboundHeaders, base?: Context): Context {
        calls.push('extract');
        return super.extract(headers, base);
      }
      override extractByPropagators(headers: InboundHeaders, base?: Context): Context {
        calls.push('propagators');
        return super.extractByPropagators(headers, base);
      }
    }
    const deps: SpanDeps = { ...mine.deps, propagation: new Counting() };
    for (const h of left) {
      calls.length = 0;
      startServerSpan(deps, h, 'GET', '/x').end(200);
      assert.deepEqual(calls, ['propagators'], JSON.stringify(h));
    }
    calls.length = 0;
    startServerSpan(deps, { traceparent: tp }, 'GET', '/x').end(200);
    assert.deepEqual(calls, [], 'the simple case reads no propagator');
  });
});
