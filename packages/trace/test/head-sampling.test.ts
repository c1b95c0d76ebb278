import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { hrTime, hrTimeToNanoseconds, TraceState } from '@opentelemetry/core';
import { TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace';
import { hrTimeAt, WALL_CHECK_MS, WallAnchors } from '../src/client-span-record.js';
import { PooledIdGenerator } from '../src/head-sampling.js';
import { createTracing, encodeTraceLine, type Tracing } from '../src/index.js';
import { encodeTraceLineBytes } from '../src/otlp-json.js';
import { SpanRecord } from '../src/span-record.js';
import { memoryExporter } from './servers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

function setup(sampleRatio: number, idGenerator?: { generateTraceId(): string; generateSpanId(): string }) {
  const exporter = memoryExporter();
  const tracing = createTracing({ service: 'orders', sampleRatio, exporters: [exporter], ...(idGenerator ? { idGenerator } : {}) });
  open.push(tracing);
  return { tracing, exporter };
}

/** A seeded generator (xorshift32), so that the test draws the same ids every run. */
function seededIds(seed: number) {
  let x = seed >>> 0 || 1;
  const word = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x.toString(16).padStart(8, '0');
  };
  const drawn: string[] = [];
  return {
    drawn,
    generateTraceId() {
      const id = word() + word() + word() + word();
      drawn.push(id);
      return id;
    },
    generateSpanId: () => word() + word(),
  };
}

describe('head sampling of client spans', () => {
  it('an unsampled caller: propagates its trace id and tracestate with a new span id and flags 00, records nothing', async () => {
    const { tracing, exporter } = setup(1);
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: TRACE,
      spanId: SPAN,
      traceFlags: TraceFlags.NONE,
      isRemote: true,
      traceState: new TraceState('vendor=abc'),
    });
    const span = tracing.startClientSpan(parent, { method: 'GET', url: 'http://10.0.0.1:8080/x', service: 'inventory' });
    assert.equal(span.recording, false);
    const headers = new Headers();
    span.inject(headers);
    const [, traceId, spanId, flags] = TRACEPARENT.exec(headers.get('traceparent') ?? '') ?? [];
    assert.equal(traceId, TRACE);
    assert.notEqual(spanId, SPAN);
    assert.notEqual(spanId, '0000000000000000');
    assert.equal(flags, '00');
    assert.equal(headers.get('tracestate'), 'vendor=abc');
    // The span's context is the one propagated: children carry the same ids.
    assert.equal(trace.getSpanContext(span.context)?.spanId, spanId);
    span.end(200);
    await tracing.forceFlush();
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.equal(tracing.stats.exported, 0);
    // Metrics are still recorded for unsampled calls.
    assert.equal(tracing.clientMetrics?.snapshot().length, 1);
  });

  it('sampleRatio 0, no caller: a new trace id, a valid traceparent with flags 00, nothing recorded', async () => {
    const { tracing, exporter } = setup(0);
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const span = tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://10.0.0.1:8080/x' });
      const headers: Record<string, string> = {};
      span.inject(headers);
      const [, traceId, , flags] = TRACEPARENT.exec(headers.traceparent ?? '') ?? [];
      assert.ok(traceId && traceId !== '0'.repeat(32), headers.traceparent);
      assert.equal(flags, '00');
      seen.add(traceId);
      span.end(200);
    }
    assert.equal(seen.size, 50, 'every call a new trace');
    await tracing.forceFlush();
    assert.equal(exporter.getFinishedSpans().length, 0);
  });

  it('a sampled caller is followed at ratio 0: recorded, in the caller trace', async () => {
    const { tracing, exporter } = setup(0);
    const parent = tracing.propagation.extract({ traceparent: `00-${TRACE}-${SPAN}-01` });
    const span = tracing.startClientSpan(parent, { method: 'GET', url: 'http://10.0.0.1:8080/x' });
    assert.equal(span.recording, true);
    const headers: Record<string, string> = {};
    span.inject(headers);
    assert.match(headers.traceparent ?? '', new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
    span.end(200);
    await tracing.forceFlush();
    const [recorded] = exporter.getFinishedSpans();
    assert.equal(recorded?.spanContext().traceId, TRACE);
    assert.equal(recorded?.parentSpanContext?.spanId, SPAN);
  });

  it('honours the ratio over 4000 seeded trace ids, the same ids OpenTelemetry sampler would keep', async () => {
    const ratio = 0.25;
    const ids = seededIds(42);
    const { tracing, exporter } = setup(ratio, ids);
    const propagatedSampled = new Set<string>();
    let recording = 0;
    for (let i = 0; i < 4000; i++) {
      const span = tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://10.0.0.1:8080/x' });
      const headers: Record<string, string> = {};
      span.inject(headers);
      const [, traceId, , flags] = TRACEPARENT.exec(headers.traceparent ?? '') ?? [];
      assert.equal(flags, span.recording ? '01' : '00');
      if (span.recording) {
        recording++;
        propagatedSampled.add(traceId as string);
      }
      span.end(200);
    }
    // Each call draws exactly one trace id, the sampled ones included (handed over, not redrawn).
    assert.equal(ids.drawn.length, 4000);
    const reference = new TraceIdRatioBasedSampler(ratio);
    const expected = ids.drawn.filter((id) => reference.shouldSample(ROOT_CONTEXT, id).decision === 2);
    assert.equal(recording, expected.length);
    assert.deepEqual([...propagatedSampled].sort(), [...expected].sort());
    assert.ok(Math.abs(recording - 1000) < 120, `sampled ${recording} of 4000 at ratio ${ratio}`);
    await tracing.forceFlush();
    assert.deepEqual(
      exporter
        .getFinishedSpans()
        .map((s) => s.spanContext().traceId)
        .sort(),
      [...expected].sort(),
    );
  });

  it('B3 formats take the general injection path', () => {
    const exporter = memoryExporter();
    const tracing = createTracing({ service: 's', sampleRatio: 0, exporters: [exporter], propagation: { emit: ['b3multi'] } });
    open.push(tracing);
    const parent = tracing.propagation.extract({ traceparent: `00-${TRACE}-${SPAN}-00` });
    const headers: Record<string, string> = {};
    tracing.startClientSpan(parent, { method: 'GET', url: 'http://b/' }).inject(headers);
    assert.equal(headers['x-b3-traceid'], TRACE);
    assert.equal(headers['x-b3-sampled'], '0');
    assert.equal(headers.traceparent, undefined);
  });
});

describe('a sampled client span (Meshlet span record)', () => {
  it('shares the server span resource and scope, is its child, follows the status rules, ends once', async () => {
    const { tracing, exporter } = setup(1);
    const server = tracing.startServerSpan({}, 'GET', '/orders/:id');
    const client = tracing.startClientSpan(server.context, { method: 'GET', url: 'http://10.0.0.1:8080/x', service: 'inventory' });
    assert.equal(client.recording, true);
    const span = trace.getSpan(client.context);
    assert.ok(span);
    span.setStatus({ code: SpanStatusCode.OK });
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'ignored: OK is final' });
    span.addEvent('retry', { n: 1 });
    client.end(200);
    client.end(500); // ignored
    span.setAttribute('late', 'ignored');
    server.end(200);
    await tracing.forceFlush();
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 2);
    const c = spans.find((s) => s.kind === SpanKind.CLIENT);
    const s = spans.find((x) => x.kind === SpanKind.SERVER);
    assert.ok(c && s);
    assert.equal(c.resource, s.resource);
    assert.deepEqual(c.instrumentationScope, s.instrumentationScope);
    assert.equal(c.parentSpanContext?.spanId, s.spanContext().spanId);
    assert.equal(c.spanContext().traceId, s.spanContext().traceId);
    assert.deepEqual(c.status, { code: SpanStatusCode.OK });
    assert.equal(c.attributes['http.response.status_code'], 200);
    assert.equal(c.attributes.late, undefined);
    assert.equal(c.events[0]?.name, 'retry');
    assert.ok(c.ended);
    assert.ok(hrTimeToNanoseconds(c.duration) >= 0);
    const [es, en] = c.endTime;
    const [ss, sn] = c.startTime;
    assert.ok(es > ss || (es === ss && en >= sn), 'ends after it starts');
    // One resource, one scope in a trace-log line.
    const line = JSON.parse(encodeTraceLine(spans)) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
    assert.equal(line.resourceSpans.length, 1);
    assert.equal(line.resourceSpans[0]?.scopeSpans.length, 1);
    assert.equal(line.resourceSpans[0]?.scopeSpans[0]?.spans.length, 2);
  });
});

describe('PooledIdGenerator', () => {
  it('gives lower-case hex ids of the right length, distinct across pool refills', () => {
    const ids = new PooledIdGenerator();
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = ids.generateTraceId();
      const s = ids.generateSpanId();
      assert.match(t, /^[0-9a-f]{32}$/);
      assert.match(s, /^[0-9a-f]{16}$/);
      seen.add(t);
      seen.add(s);
    }
    assert.equal(seen.size, 4000);
  });

  it('skips an all-zero id, and ids from consecutive refills differ and are valid', () => {
    // Block 1 all zero (every id in it invalid), then blocks of one repeated byte: 1, 2, 3…
    let fills = 0;
    const ids = new PooledIdGenerator((bytes) => {
      bytes.fill(fills === 0 ? 0 : fills);
      fills++;
    });
    const first = ids.generateSpanId();
    assert.equal(first, '01'.repeat(8), 'the zero block is passed over');
    assert.equal(fills, 2);
    const byFill = new Map<number, string>();
    for (let i = 0; i < 20_000; i++) {
      const id = i % 3 === 0 ? ids.generateTraceId() : ids.generateSpanId();
      assert.match(id, i % 3 === 0 ? /^[0-9a-f]{32}$/ : /^[0-9a-f]{16}$/);
      assert.notEqual(/^0+$/.test(id), true);
      byFill.set(fills, id.slice(0, 2));
    }
    assert.ok(fills > 3);
    const seen = [...byFill.values()];
    for (let k = 1; k < seen.length; k++) assert.notEqual(seen[k], seen[k - 1]);
    // A zero id among non-zero ones (its bytes only) is skipped as well.
    let calls = 0;
    const partly = new PooledIdGenerator((bytes) => {
      bytes.fill(7);
      if (calls++ === 0) bytes.fill(0, 0, 8);
    });
    assert.equal(partly.generateSpanId(), '07'.repeat(8));
    // Each window of a block is its own bytes: a block whose 4 KiB quarters (512 span ids each) are 1, 2, 3, 4.
    const quarters = new PooledIdGenerator((bytes) => {
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i >> 12) + 1;
    });
    const firsts = new Set<string>();
    for (let i = 0; i < 4 * 512; i++) firsts.add(quarters.generateSpanId().slice(0, 2));
    assert.deepEqual([...firsts], ['01', '02', '03', '04']);
  });
});

describe("the span record's clock", () => {
  it("gives what OpenTelemetry's hrTime gives for the same performance.now reading, carries included", () => {
    const readings = [0, 0.0001, 1, 999.9999999, 1000, 123_456.789_012, performance.now(), 86_400_000.5];
    for (let i = 0; i < 2000; i++) readings.push(Math.random() * 1e7);
    for (const ms of readings) assert.deepEqual(hrTimeAt(ms), hrTime(ms), String(ms));
  });

  it('moves its wall anchor when a check finds the wall clock stepped, WALL_CHECK_MS of span starts apart, not for a jitter', () => {
    const clock = new ManualClock(0);
    const anchors = new WallAnchors(clock);
    const origin = performance.timeOrigin;
    assert.equal(anchors.at(1_000).ms, origin);
    clock.stepWall(1); // under Date.now()'s resolution: the same anchor
    assert.equal(anchors.at(1_000 + WALL_CHECK_MS).ms, origin);
    clock.stepWall(3_600_000);
    assert.equal(anchors.at(1_000 + 1.5 * WALL_CHECK_MS).ms, origin, 'not read again before WALL_CHECK_MS');
    assert.equal(anchors.at(1_000 + 2 * WALL_CHECK_MS).ms, origin + 3_600_001);
    clock.stepWall(-7_200_001); // and back, past where it started
    assert.equal(anchors.at(1_000 + 3 * WALL_CHECK_MS).ms, origin - 3_600_000);
  });

  it('starts spans on the wall clock, stepped since the process started, and times them on the monotonic one', async () => {
    const HOUR = 3_600_000;
    const nanos = ([sec, ns]: [number, number]) => String(BigInt(sec) * 1_000_000_000n + BigInt(ns));
    // As after an NTP step: the monotonic clock (performance.now()'s) an hour behind the wall clock.
    const clock = new ManualClock(performance.timeOrigin + performance.now());
    clock.stepWall(HOUR);
    const exporter = memoryExporter();
    const tracing = createTracing({ service: 'orders', exporters: [exporter], clock });
    open.push(tracing);
    const wallBefore = Date.now() + HOUR;
    const server = tracing.startServerSpan({}, 'GET', '/orders/:id');
    const client = tracing.startClientSpan(server.context, { method: 'GET', url: 'http://10.0.0.1:8080/x', service: 'inventory' });
    client.end(200);
    server.end(200);
    const wallAfter = Date.now() + HOUR;
    await tracing.forceFlush();
    const spans = exporter.getFinishedSpans();
    assert.deepEqual(spans.map((s) => s.kind).sort(), [SpanKind.SERVER, SpanKind.CLIENT].sort());
    const line = JSON.parse(encodeTraceLineBytes(spans).toString()) as {
      resourceSpans: { scopeSpans: { spans: { startTimeUnixNano: string; endTimeUnixNano: string }[] }[] }[];
    };
    const written = line.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
    for (const s of spans) {
      const startMs = hrTimeToNanoseconds(s.startTime) / 1e6;
      // Date.now() counts whole ms: the span's start may be up to 1 ms past the reading before it.
      assert.ok(startMs >= wallBefore - 1 && startMs <= wallAfter + 1, `${s.name}: start ${startMs} in [${wallBefore}, ${wallAfter}]`);
      const durationMs = hrTimeToNanoseconds(s.duration) / 1e6;
      assert.ok(durationMs >= 0 && durationMs <= wallAfter - wallBefore + 1, `${s.name}: duration ${durationMs}`);
    }
    assert.deepEqual(
      written.map((w) => [w.startTimeUnixNano, w.endTimeUnixNano]).sort(),
      spans.map((s) => [nanos(s.startTime), nanos(s.endTime)]).sort(),
      'the trace log writes the same times',
    );
  });
});

describe('head sampling of server spans', () => {
  /** Counts the SERVER spans OpenTelemetry's tracer was asked for. */
  function counting(tracing: Tracing) {
    const calls = { n: 0 };
    const start = tracing.tracer.startSpan.bind(tracing.tracer);
    tracing.tracer.startSpan = (...args: Parameters<typeof start>) => {
      calls.n++;
      return start(...args);
    };
    return calls;
  }

  it('a caller that did not sample: its trace and tracestate carried on with a new span id and flags 00, no tracer span, metrics kept', async () => {
    const { tracing, exporter } = setup(1);
    const calls = counting(tracing);
    const server = tracing.startServerSpan({ traceparent: `00-${TRACE}-${SPAN}-00`, tracestate: 'vendor=abc' }, 'GET', '/orders/:id', {
      caller: 'edge',
    });
    assert.equal(server.recording, false);
    const sc = trace.getSpanContext(server.context);
    assert.equal(sc?.traceId, TRACE);
    assert.notEqual(sc?.spanId, SPAN);
    assert.match(sc?.spanId ?? '', /^[0-9a-f]{16}$/);
    assert.equal(sc?.traceFlags, TraceFlags.NONE);
    assert.equal(sc?.traceState?.serialize(), 'vendor=abc');
    // A call made while handling it continues the same unsampled trace.
    const headers: Record<string, string> = {};
    server.run(() => tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1:8080/x' })).inject(headers);
    assert.match(headers.traceparent ?? '', new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
    assert.equal(headers.tracestate, 'vendor=abc');
    server.setRoute('/orders/:id');
    server.end(200);
    await tracing.forceFlush();
    assert.equal(calls.n, 0, 'OpenTelemetry was not asked for the span');
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.match(tracing.serverMetrics?.render() ?? '', /meshlet_server_requests_total\{service="edge",api="GET \/orders\/:id"\} 1/);
  });

  it("ratio 0 and no caller: a new trace, flags 00, no tracer span; a sampled caller, ratio 1 or above 0: Meshlet's span record, no tracer span either", async () => {
    const zero = setup(0);
    const zeroCalls = counting(zero.tracing);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const server = zero.tracing.startServerSpan({}, 'GET', '/x');
      const sc = trace.getSpanContext(server.context);
      assert.equal(server.recording, false);
      assert.match(sc?.traceId ?? '', /^[0-9a-f]{32}$/);
      assert.equal(sc?.traceFlags, TraceFlags.NONE);
      seen.add(sc?.traceId ?? '');
      server.end(200);
    }
    assert.equal(seen.size, 20);
    assert.equal(zeroCalls.n, 0);
    // A sampled caller is followed at ratio 0: recorded, as Meshlet's own span record.
    const followed = zero.tracing.startServerSpan({ traceparent: `00-${TRACE}-${SPAN}-01` }, 'GET', '/x');
    assert.equal(followed.recording, true);
    followed.end(200);
    assert.equal(zeroCalls.n, 0);
    await zero.tracing.forceFlush();
    assert.equal(zero.exporter.getFinishedSpans().length, 1);
    assert.ok(zero.exporter.getFinishedSpans()[0] instanceof SpanRecord);
    for (const ratio of [1, 0.5]) {
      const { tracing } = setup(ratio);
      const calls = counting(tracing);
      tracing.startServerSpan({}, 'GET', '/x').end(200);
      assert.equal(calls.n, 0, `ratio ${ratio}`);
    }
  });
});
