import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type Attempt, type AttemptHandler, type Instance, ManualClock, type OutboundCall } from '@meshlet/core';
import { testAttempt, testCall } from '@meshlet/core/testing';
import { type Context, type MeterProvider, ROOT_CONTEXT } from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';
import { runInContext } from '../src/active-context.js';
import {
  clientSpanInterceptor,
  createTracing,
  encodeTraceLine,
  encodeTraceLineBytes,
  encodeTraceRequest,
  type PropagationFormat,
  type Tracing,
} from '../src/index.js';
import { memoryExporter } from './servers.js';

interface Res {
  readonly status: number;
}

const inst: Instance = { id: 'inv-1', service: 'inventory', address: '10.0.0.7', port: 8080, tags: [], metadata: {}, health: 'passing' };
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

/** The same ids every run, so that two tracings draw the same sequence. */
function seededIds() {
  let x = 7;
  const word = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x.toString(16).padStart(8, '0');
  };
  return { generateTraceId: () => word() + word() + word() + word(), generateSpanId: () => word() + word() };
}

/** A breaker's refusal as the executor throws it: a MeshletError code and the span attributes it carries. */
function refusal(): Error {
  return Object.assign(new Error('circuit open'), {
    code: 'MESHLET_CIRCUIT_OPEN',
    spanAttributes: { 'io.meshlet.circuit.level': 'instance', 'io.meshlet.circuit.state': 'open' },
  });
}

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

interface Row {
  name: string;
  sampleRatio: number;
  parent?: 'sampled' | 'unsampled' | 'suppressed';
  emit?: PropagationFormat[];
  metrics?: false;
  /** What the transport does: answer a status, reject, or throw before returning a promise. */
  answer: number | 'reject' | 'throw' | 'refused';
  attempt?: Partial<Attempt<Res>>;
  /** What a layer below adds while the attempt runs. */
  below?: (a: Attempt<Res>) => void;
  search?: string;
}

const rows: Row[] = [
  { name: 'sampled root, 200', sampleRatio: 1, answer: 200 },
  { name: 'sampled root, 503, a retry with route, lane, revision, breaker', sampleRatio: 1, answer: 503, attempt: { number: 1 } },
  { name: 'sampled, the api breaker the call passed', sampleRatio: 1, answer: 200, attempt: { api: 'GET /a/{id}' } },
  { name: 'sampled child of a sampled caller, rejected', sampleRatio: 0, parent: 'sampled', answer: 'reject' },
  {
    name: 'sampled, fault attributes and a late shadow note',
    sampleRatio: 1,
    answer: 200,
    below: (a) => {
      a.attributes = { 'io.meshlet.fault.rule': 'slow' };
      a.notes = ['fault:slow:would-delay-5ms'];
    },
  },
  {
    name: 'sampled, no rule, lane, revision or breaker, 404',
    sampleRatio: 1,
    answer: 404,
    attempt: { breaker: undefined, target: { id: 'inv-1', instance: inst, rule: undefined, lane: undefined } },
  },
  { name: 'sampled, a query (url.full redacted: the general path)', sampleRatio: 1, answer: 200, search: '?sig=secret&x=1' },
  {
    name: 'sampled, a shadow note known at the start (the general path)',
    sampleRatio: 1,
    answer: 200,
    attempt: { target: { id: 'inv-1', instance: inst, rule: 'gray', lane: undefined, shadow: 'r2' } },
  },
  { name: 'sampled, the transport throws at once', sampleRatio: 1, answer: 'throw' },
  { name: 'sampled, refused by a breaker (an error that carries span attributes)', sampleRatio: 1, answer: 'refused' },
  { name: 'unsampled, refused by a breaker (an error that carries span attributes)', sampleRatio: 0, answer: 'refused' },
  { name: 'sampled, B3 multi headers', sampleRatio: 1, emit: ['b3multi'], answer: 200 },
  {
    name: 'sampled, a layer below sets an attribute the span was made with, and an index-like one',
    sampleRatio: 1,
    answer: 200,
    below: (a) => {
      a.attributes = { 'server.port': 1, '7': 'x', 'io.meshlet.fault.rule': 'slow' };
    },
  },
  { name: 'unsampled root, 200', sampleRatio: 0, answer: 200 },
  { name: 'unsampled root, 404 (a client error)', sampleRatio: 0, answer: 404, attempt: { number: 2, breaker: 'half_open' } },
  { name: 'unsampled child of an unsampled caller (tracestate kept), rejected', sampleRatio: 1, parent: 'unsampled', answer: 'reject' },
  { name: 'unsampled, the transport throws at once', sampleRatio: 0, answer: 'throw' },
  { name: 'unsampled, metrics off', sampleRatio: 0, metrics: false, answer: 200 },
  { name: 'unsampled, B3 multi headers', sampleRatio: 0, emit: ['b3multi'], answer: 200 },
  { name: 'unsampled, W3C and B3 single', sampleRatio: 0, emit: ['w3c', 'b3'], parent: 'unsampled', answer: 500 },
  { name: 'tracing suppressed in the caller context', sampleRatio: 1, parent: 'suppressed', answer: 200 },
  {
    name: 'unsampled, notes and fault attributes (nothing records them)',
    sampleRatio: 0,
    answer: 200,
    attempt: { notes: ['breaker:api:would-reject'] },
    below: (a) => {
      a.attributes = { 'io.meshlet.fault.rule': 'slow' };
    },
  },
];

/** Runs one row through the interceptor of a real Tracing, or (`general`) through `startClientSpan` per attempt. */
async function runRow(row: Row, general: boolean) {
  const exporter = memoryExporter();
  const clock = new ManualClock(1_000);
  const durations: [number, Record<string, unknown>][] = [];
  const meterProvider = {
    getMeter: () => ({
      createHistogram: () => ({ record: (v: number, attrs: Record<string, unknown>) => durations.push([v, attrs]) }),
    }),
  } as unknown as MeterProvider;
  const tracing = createTracing({
    service: 'orders',
    sampleRatio: row.sampleRatio,
    exporters: [exporter],
    clock,
    idGenerator: seededIds(),
    ...(row.emit ? { propagation: { emit: row.emit } } : {}),
    ...(row.metrics === false ? { metrics: false as const } : { meterProvider }),
  });
  open.push(tracing);
  const interceptor = clientSpanInterceptor(general ? { startClientSpan: tracing.startClientSpan } : tracing);
  const headers: Record<string, string> = {};
  const call: OutboundCall<Res> = {
    service: 'inventory',
    method: 'get',
    path: '/items/42',
    search: row.search ?? '',
    headers,
    tags: () => undefined,
    transport: async () => ({ status: 200 }),
    fromResponse: () => ({ status: 200 }),
  };
  const attempt = testAttempt(call, { id: 'inv-1', instance: inst, rule: 'gray', lane: 'blue', revision: 9 }, row.attempt);
  const next: AttemptHandler = (a) => {
    row.below?.(a as Attempt<Res>);
    clock.advance(7);
    if (row.answer === 'throw') throw new Error('refused at once');
    if (row.answer === 'reject') return Promise.reject(new TypeError('fetch failed'));
    if (row.answer === 'refused') return Promise.reject(refusal());
    return Promise.resolve({ status: row.answer }) as never;
  };
  let parent: Context = ROOT_CONTEXT;
  if (row.parent === 'sampled' || row.parent === 'unsampled')
    parent = tracing.propagation.extract({
      traceparent: `00-${TRACE}-${SPAN}-${row.parent === 'sampled' ? '01' : '00'}`,
      tracestate: 'vendor=abc',
    });
  else if (row.parent === 'suppressed') parent = suppressTracing(ROOT_CONTEXT);
  let outcome: string;
  try {
    // A synchronous throw below must come back as the attempt's rejection.
    const p = runInContext(parent, () => interceptor(attempt, next));
    assert.ok(p instanceof Promise);
    outcome = `status ${(await p).status}`;
  } catch (error) {
    outcome = `error ${String(error)}`;
  }
  await tracing.forceFlush();
  const spans = exporter.getFinishedSpans();
  // The trace log's line (attributes from the JSON the record was made with) is the object form's.
  assert.equal(encodeTraceLine(spans), JSON.stringify(encodeTraceRequest(spans)));
  // Times are the wall clock's: everything else must match.
  const otlp = JSON.parse(JSON.stringify(encodeTraceRequest(spans)), (k, v) =>
    k === 'startTimeUnixNano' || k === 'endTimeUnixNano' ? 'T' : v,
  ) as unknown;
  return {
    outcome,
    headers,
    otlp,
    spans: spans.length,
    metrics: tracing.clientMetrics?.render(),
    durations,
  };
}

describe('the CLIENT span interceptor over a Tracing’s own parts (head-sampled path)', () => {
  for (const row of rows) {
    it(`${row.name}: the same spans, headers, metrics and outcome as startClientSpan per attempt`, async () => {
      const fast = await runRow(row, false);
      const general = await runRow(row, true);
      assert.deepEqual(fast, general);
      // And what that is, so that both being wrong alike is caught too.
      const sampled = row.parent !== 'suppressed' && (row.parent === 'sampled' || (row.parent === undefined && row.sampleRatio === 1));
      assert.equal(fast.spans, sampled ? 1 : 0);
      if (row.metrics !== false)
        assert.match(fast.metrics ?? '', /meshlet_client_requests_total\{service="inventory",api="GET \/items\/\{id\}"\} 1/);
      if (row.metrics !== false) assert.equal(fast.durations.length, 1);
      if (row.metrics !== false) assert.equal(fast.durations[0]?.[0], 0.007);
      if (row.parent === 'suppressed') assert.deepEqual(fast.headers, {});
      else if (!row.emit) assert.match(fast.headers.traceparent ?? '', sampled ? /-01$/ : /-00$/);
      if (row.answer === 'throw') assert.equal(fast.outcome, 'error Error: refused at once');
      if (row.answer === 'refused' && sampled) {
        // What the error knows of the decision is on the span (errorAttributesOf), on either path.
        const line = JSON.stringify(fast.otlp);
        assert.match(line, /"key":"io\.meshlet\.circuit\.level","value":\{"stringValue":"instance"\}/);
        assert.match(line, /"key":"error\.type","value":\{"stringValue":"circuit_open"\}/);
      }
    });
  }

  it("the attribute JSON made per kind of attempt is the attributes' own, over many kinds in a row (the cache per instance)", async () => {
    const exporter = memoryExporter();
    const tracing = createTracing({ service: 'orders', exporters: [exporter] });
    open.push(tracing);
    const interceptor = clientSpanInterceptor(tracing);
    const other: Instance = { ...inst, id: 'inv-2', address: 'inv-2.local', port: 80 };
    const lates: ((a: Attempt<Res>) => void)[] = [
      () => {},
      (a) => {
        a.attributes = { 'io.meshlet.fault.rule': 'slow', 'io.meshlet.fault.delay_ms': 5 };
      },
      (a) => {
        a.attributes = { 'io.meshlet.breaker': 'open' };
      },
      (a) => {
        a.notes = ['fault:slow:would-delay-5ms'];
      },
    ];
    // Consecutive attempts differ in one field at a time (each in turn, a seeded choice of
    // value), so that a field the cache failed to compare would show.
    const domains = {
      instance: [inst, other],
      service: ['inventory', 'inventory-2'],
      method: ['GET', 'get', 'POST'],
      number: [0, 1, 2],
      rule: ['gray', undefined, 'other'],
      lane: [undefined, 'blue', 'green'],
      breaker: ['closed', 'open', undefined] as const,
      api: [undefined, 'GET /a', 'GET /b'],
      revision: [0, 9, 10],
      path: ['/a', '/b/"q"/é'],
      late: [0, 1, 2, 3],
    };
    type Kind = { [K in keyof typeof domains]: (typeof domains)[K][number] };
    const fields = Object.keys(domains) as (keyof typeof domains)[];
    const kind: Kind = {
      instance: inst,
      service: 'inventory',
      method: 'GET',
      number: 0,
      rule: 'gray',
      lane: undefined,
      breaker: 'closed',
      api: undefined,
      revision: 0,
      path: '/a',
      late: 0,
    };
    let seed = 12345;
    const pick = (k: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return (seed >>> 8) % k;
    };
    let n = 0;
    for (let step = 0; step < 3000; step++) {
      const field = fields[step % fields.length] as keyof typeof domains;
      const domain = domains[field] as readonly unknown[];
      (kind as Record<string, unknown>)[field] = domain[pick(domain.length)];
      const call = testCall<Res>({ service: kind.service, method: kind.method, path: kind.path });
      const attempt = testAttempt(
        call,
        { id: kind.instance.id, instance: kind.instance, rule: kind.rule, lane: kind.lane, revision: kind.revision },
        { number: kind.number, breaker: kind.breaker, api: kind.api },
      );
      const late = lates[kind.late] as (a: Attempt<Res>) => void;
      n++;
      await interceptor(attempt, (a) => {
        late(a as Attempt<Res>);
        return Promise.resolve({ status: n % 5 === 0 ? 503 : 200 }) as never;
      });
    }
    await tracing.forceFlush();
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, n);
    for (const span of spans) assert.equal(encodeTraceLine([span]), JSON.stringify(encodeTraceRequest([span])));
    assert.deepEqual(encodeTraceLineBytes(spans), Buffer.from(`${JSON.stringify(encodeTraceRequest(spans))}\n`));
    // The JSON made with the record was used (not re-encoded) for most of them.
    assert.ok(spans.filter((s) => (s as { madeJson?: string }).madeJson !== undefined).length > n / 2);
  });
});

describe("an unsampled attempt's call metrics and the executor's start reading", () => {
  /** The duration the call metrics record for one unsampled attempt that began (startedAt) at 995 and is sent at 1,000, answered 7 ms later. */
  async function durationOf(attemptClock: 'the tracing’s' | 'another' | 'none'): Promise<number | undefined> {
    const clock = new ManualClock(1_000);
    const durations: number[] = [];
    const meterProvider = {
      getMeter: () => ({ createHistogram: () => ({ record: (v: number) => durations.push(v) }) }),
    } as unknown as MeterProvider;
    const tracing = createTracing({ service: 'orders', sampleRatio: 0, clock, meterProvider });
    open.push(tracing);
    const given = attemptClock === 'the tracing’s' ? clock : attemptClock === 'another' ? new ManualClock(1_000) : undefined;
    const interceptor = clientSpanInterceptor(tracing, given);
    const call = testCall<Res>({ service: 'inventory', method: 'GET', path: '/items/42' });
    const attempt = testAttempt(call, { id: 'inv-1', instance: inst, rule: undefined, lane: undefined }, { startedAt: 995 });
    await interceptor(attempt, () => {
      clock.advance(7);
      return Promise.resolve({ status: 200 }) as never;
    });
    return durations[0];
  }

  it('are timed from the attempt’s startedAt when the executor reads the tracing’s clock (one clock read an attempt, not two)', async () => {
    assert.equal(await durationOf('the tracing’s'), 0.012);
  });

  it('read the tracing’s own clock at the start when the attempt’s startedAt is on another clock, or its clock is not given', async () => {
    assert.equal(await durationOf('another'), 0.007);
    assert.equal(await durationOf('none'), 0.007);
  });
});
