import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { type Attempt, type AttemptHandler, type Instance, ManualClock } from '@meshlet/core';
import { type Attributes, type SpanContext, TraceFlags } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord, hrTimeAt, type RecordDeps, WallAnchors, wallAnchor, writeHrTimeAt } from '../src/client-span-record.js';
import { clientSpanInterceptor, createTracing, TraceLogExporter } from '../src/index.js';
import { encodeTraceLineBytes, encodeTraceRequest, keyValuesJson, reusableLine, TraceLineBuilder } from '../src/otlp-json.js';
import { hex, randomRecord, rng, text } from './random-spans.js';

const expected = (spans: readonly ReadableSpan[]): Buffer => Buffer.from(`${JSON.stringify(encodeTraceRequest(spans))}\n`);

describe('a span written as bytes', () => {
  const deps = (service: string): RecordDeps => ({
    resource: resourceFromAttributes({ 'service.name': service }),
    scope: { name: '@meshlet/trace', version: '0.1.0' },
    ended: () => {},
    wall: new WallAnchors(),
  });

  it('gives exactly JSON.stringify(encodeTraceRequest(spans)): random records, attributes, late keys, events, links, statuses, parents, tracestate', () => {
    const a = deps('a');
    const b = deps('b é');
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const spans: ReadableSpan[] = [];
      for (let i = Math.floor(r() * 12); i > 0; i--) {
        const span = randomRecord(r, r() < 0.8 ? a : b, true);
        // Now and then a wrapper (as some exporters make): written by the generic path.
        spans.push(r() < 0.1 ? (Object.create(span, { name: { value: text(r, 5) } }) as ReadableSpan) : span);
      }
      // The bytes first: reading `attributes` (as encodeTraceRequest does) makes shared ones the record's own.
      const builder = new TraceLineBuilder(r() < 0.5 ? 1 : 64 * 1024);
      for (const span of spans) builder.add(span);
      const built = builder.take();
      const bytes = encodeTraceLineBytes(spans);
      const want = expected(spans);
      assert.deepEqual(bytes, want, `encodeTraceLineBytes, seed ${seed}`);
      assert.deepEqual(built, want, `TraceLineBuilder, seed ${seed}`);
    }
  });

  it('a record on shared attributes takes attributes assigned whole (a redacting processor), and writes those; the shared object is untouched', () => {
    const shared = Object.freeze({ 'http.request.method': 'GET', 'url.full': 'http://orders/secret?token=1' }) as Attributes;
    const json = keyValuesJson(shared);
    const make = () =>
      new ClientSpanRecord(
        deps('a'),
        'GET',
        { traceId: hex(16), spanId: hex(8), traceFlags: TraceFlags.SAMPLED },
        undefined,
        shared,
        json,
        true,
        [Buffer.from(json, 'utf8')],
        true,
      );
    const span = make();
    span.setAttribute('http.response.status_code', 200);
    span.end();
    // As a SpanProcessor's onEnd may redact: the whole object replaced (it was an own field
    // of the record before its attributes were shared; an accessor without a setter threw).
    (span as { attributes: Attributes }).attributes = { 'http.request.method': 'GET', 'url.full': 'http://orders/[redacted]' };
    assert.deepEqual(span.attributes, { 'http.request.method': 'GET', 'url.full': 'http://orders/[redacted]' });
    const line = encodeTraceLineBytes([span]);
    assert.deepEqual(line, expected([span]));
    assert.ok(!line.toString().includes('secret'), line.toString());
    assert.equal(shared['url.full'], 'http://orders/secret?token=1', 'the shared object is untouched');
    // The next record on the same shared object still writes it as it is.
    const other = make();
    other.end();
    assert.match(encodeTraceLineBytes([other]).toString(), /secret/);
  });

  it('writes records through their bytes (not their JSON string) when they carry them', () => {
    const span = new ClientSpanRecord(
      deps('a'),
      'GET',
      { traceId: hex(16), spanId: hex(8), traceFlags: TraceFlags.SAMPLED },
      undefined,
      { 'http.request.method': 'GET' },
      keyValuesJson({ 'http.request.method': 'GET' }),
      true,
      [Buffer.from(keyValuesJson({ 'http.request.method': 'GET' }))],
    );
    span.end();
    // A string that disagrees with the bytes: the line shows which one was written.
    span.madeJson = '{"key":"wrong","value":{"boolValue":true}}';
    const line = JSON.parse(encodeTraceLineBytes([span]).toString()) as {
      resourceSpans: [{ scopeSpans: [{ spans: [{ attributes: unknown[] }] }] }];
    };
    assert.deepEqual(line.resourceSpans[0].scopeSpans[0].spans[0].attributes, [
      { key: 'http.request.method', value: { stringValue: 'GET' } },
    ]);
    // Setting a made attribute again drops both.
    span.madeJson = keyValuesJson(span.attributes);
    const other = new ClientSpanRecord(deps('a'), 'GET', span.spanContext(), undefined, { a: 'x' }, keyValuesJson({ a: 'x' }), true, [
      Buffer.from(keyValuesJson({ a: 'x' })),
    ]);
    other.setAttribute('a', 'y');
    assert.equal(other.madeBytes, undefined);
    assert.equal(other.madeJson, undefined);
  });

  it("starts the next line in a written line's buffer, only a builder's own", () => {
    const r = rng(7);
    const d = deps('a');
    const first = new TraceLineBuilder(1024);
    const one = [randomRecord(r, d), randomRecord(r, d)];
    for (const span of one) first.add(span);
    const line = first.take();
    assert.deepEqual(line, expected(one));
    const spare = reusableLine(line);
    assert.ok(spare, 'a builder-made line gives its buffer back');
    assert.equal(reusableLine(Buffer.from(line)), undefined, 'any other buffer is not taken');
    assert.equal(reusableLine(Buffer.from('x')), undefined);
    const two = Array.from({ length: 40 }, () => randomRecord(r, d));
    const second = new TraceLineBuilder(1024, spare);
    for (const span of two) second.add(span);
    assert.deepEqual(second.take(), expected(two));
  });

  it("the trace log's next line is built in the buffer of the line it wrote, not before the write is done", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-span-bytes-'));
    const exporter = new TraceLogExporter({ path: join(dir, 'spans.jsonl') });
    const d = deps('a');
    const r = rng(3);
    try {
      const first = exporter.lineBuilder();
      const spans = [randomRecord(r, d), randomRecord(r, d)];
      for (const span of spans) first.add(span);
      const line = first.take();
      // The line is the exporter's once handed over: what was written is checked on a copy.
      const written = Buffer.from(line);
      let done = false;
      exporter.exportLine(line, () => {
        done = true;
      });
      // Not yet written: a builder made now gets a buffer of its own.
      const during = exporter.lineBuilder();
      during.add(randomRecord(r, d));
      assert.notEqual(during.take().buffer, line.buffer);
      await exporter.forceFlush();
      assert.ok(done);
      // A line of the same size fits in the written one's buffer.
      const after = exporter.lineBuilder();
      for (const span of spans.reverse()) after.add(span);
      const next = after.take();
      assert.equal(next.buffer, line.buffer, "the written line's buffer is reused");
      assert.deepEqual(next, expected(spans));
      assert.deepEqual(await readFile(join(dir, 'spans.jsonl')), written);
    } finally {
      await exporter.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('trace log lines stay exact while written lines hand their buffers on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-span-bytes-'));
    const path = join(dir, 'spans.jsonl');
    const memory = new InMemorySpanExporter();
    // A manual clock: lines are cut only when full (7 spans) and at the flush.
    const tracing = createTracing({
      service: 'bytes',
      log: { path },
      exporters: [memory],
      batch: { maxBatchSize: 7 },
      clock: new ManualClock(0),
    });
    try {
      for (let i = 0; i < 100; i++) {
        tracing
          .startClientSpan(undefined, { method: i % 3 ? 'GET' : 'PÖST', url: `http://peer:81/p/${i}/é`, service: 'peer' })
          .end(i % 4 ? 200 : 503);
        if (i % 5 === 4) await tick();
      }
      await tracing.forceFlush();
      const lines = (await readFile(path)).toString('utf8').split('\n').slice(0, -1);
      const spans = memory.getFinishedSpans();
      assert.equal(spans.length, 100);
      let at = 0;
      for (const line of lines) {
        const n =
          (JSON.parse(line) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] }).resourceSpans[0]?.scopeSpans[0]?.spans.length ??
          0;
        assert.equal(`${line}\n`, expected(spans.slice(at, at + n)).toString('utf8'));
        at += n;
      }
      assert.equal(at, 100);
      assert.ok(lines.length >= 100 / 7);
    } finally {
      await tracing.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("a span record's times", () => {
  const deps: RecordDeps = {
    resource: resourceFromAttributes({ 'service.name': 't' }),
    scope: { name: 's' },
    ended: () => {},
    wall: new WallAnchors(),
  };
  const context = (): SpanContext => ({ traceId: hex(16), spanId: hex(8), traceFlags: TraceFlags.SAMPLED });

  it('reads as HrTime for any exporter: start, end, duration consistent; not ended: the placeholders', () => {
    const span = new ClientSpanRecord(deps, 'GET', context(), undefined, {});
    assert.deepEqual(span.endTime, [0, 0]);
    assert.deepEqual(span.duration, [-1, -1]);
    const start = span.startTime;
    assert.ok(start[0] > 1_600_000_000 && start[1] >= 0 && start[1] < 1e9);
    span.end();
    const end = span.endTime;
    assert.ok(end[0] > start[0] || (end[0] === start[0] && end[1] >= start[1]));
    const ns = (t: readonly number[]) => BigInt(t[0] as number) * 1_000_000_000n + BigInt(t[1] as number);
    assert.equal(ns(span.duration), ns(end) - ns(start));
    assert.equal(span.startTime, start, 'made once');
    // A wrapper (as some exporters make) reads the same times.
    const wrapper = Object.create(span) as ClientSpanRecord;
    assert.deepEqual(wrapper.startTime, start);
    assert.deepEqual(wrapper.endTime, end);
  });

  it('an end given before the start is the start, duration zero; a later end is kept as given', () => {
    const early = new ClientSpanRecord(deps, 'GET', context(), undefined, {});
    early.end([early.startTime[0] - 5, 0]);
    assert.deepEqual(early.endTime, early.startTime);
    assert.deepEqual(early.duration, [0, 0]);
    const late = new ClientSpanRecord(deps, 'GET', context(), undefined, {});
    const at: [number, number] = [late.startTime[0] + 2, 5];
    late.end(at);
    assert.deepEqual(late.endTime, at);
    assert.deepEqual(late.duration[0] >= 1, true);
    // Both written into a line as their HrTime say.
    assert.deepEqual(encodeTraceLineBytes([early, late]), expected([early, late]));
  });
});

describe("a sampled attempt's clock reads", () => {
  it('on the system clock, the call metrics measure the span: same start and end readings', async () => {
    const memory = new InMemorySpanExporter();
    const tracing = createTracing({ service: 'c', exporters: [memory] });
    const instance: Instance = { id: 'i1', service: 'up', address: '127.0.0.1', port: 1, tags: [], metadata: {}, health: 'passing' };
    const transport: AttemptHandler = async () => {
      await tick();
      return { status: 200 } as never;
    };
    const attempt = {
      call: {
        service: 'up',
        method: 'GET',
        path: '/x',
        search: '',
        headers: {},
        tags: () => undefined,
        transport,
        fromResponse: () => ({}),
      },
      target: { id: 'i1', instance, rule: undefined, lane: undefined, revision: undefined },
      number: 0,
      signal: undefined,
      breaker: undefined,
      notes: undefined,
      attributes: undefined,
      settled: undefined,
      injected: false,
    } as unknown as Attempt;
    try {
      await clientSpanInterceptor(tracing)(attempt, transport);
      await tracing.forceFlush();
      const [span] = memory.getFinishedSpans();
      assert.ok(span instanceof ClientSpanRecord);
      const [series] = tracing.clientMetrics?.snapshot() ?? [];
      assert.equal(series?.requests, 1);
      const spanSeconds = (span.endMs - span.startMs) / 1000;
      assert.ok(spanSeconds > 0);
      // The same two readings (up to the epoch offset's rounding), not two later ones.
      assert.ok(Math.abs((series?.sumSeconds ?? 0) - spanSeconds) < 1e-6, `${series?.sumSeconds} vs ${spanSeconds}`);
    } finally {
      await tracing.shutdown();
    }
  });
});

describe('writeHrTimeAt', () => {
  it("hands on hrTimeAt's two parts for any performance.now reading, carries included", () => {
    const readings = [0, 0.0001, 0.5, 1, 999.9999999, 999.99999999, 1000, 1000.0000001, 123_456.789_012, performance.now(), 86_400_000.5];
    const r = rng(11);
    for (let i = 0; i < 20_000; i++) readings.push(r() * 10 ** Math.floor(r() * 10));
    // From the process's time origin, and from an anchor an hour on (a wall clock stepped).
    for (const anchor of [wallAnchor(performance.timeOrigin), wallAnchor(performance.timeOrigin + 3_600_000.123_456)])
      for (const ms of readings) {
        let got: number[] = [];
        writeHrTimeAt(ms, anchor, { nanos: (s, ns) => (got = [s, ns]) });
        assert.deepEqual(got, hrTimeAt(ms, anchor), String(ms));
      }
  });
});
