// The outbound attempt chain (core's `chainAttempt`), table-driven with fakes: each
// interceptor on its own — the CLIENT span (trace), the in-flight count (route), fault
// injection (fault) — and the order the SDK composes them in. No sockets, no mesh: an
// attempt record and a fake transport.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Attempt,
  type AttemptHandler,
  type AttemptInterceptor,
  type AttemptStage,
  chainAttempt,
  type Instance,
  ManualClock,
  NoInstanceError,
  type OutboundCall,
  seededRandom,
} from '@meshlet/core';
import { testAttempt } from '@meshlet/core/testing';
import { FaultInjector, faultInterceptor } from '@meshlet/fault';
import { Router } from '@meshlet/route';
import { type ClientCall, type ClientOutcome, type ClientSpan, clientSpanInterceptor } from '@meshlet/trace';
import { type AttemptStageDeps, attemptStages } from '../src/attempt-stages.js';

interface Res {
  readonly status: number;
  readonly madeByMesh?: boolean;
}

const inst = (id: string): Instance => ({
  id,
  service: 'orders',
  address: '10.0.0.1',
  port: 8080,
  tags: [],
  metadata: {},
  health: 'passing',
});

/** A call whose transport answers `status` (or throws `error`) and logs what it was sent. */
function callOf(answer: { status?: number; error?: Error } = {}, log: string[] = []) {
  const headers: Record<string, string> = {};
  const call: OutboundCall<Res> = {
    service: 'orders',
    method: 'GET',
    path: '/x',
    search: '',
    headers,
    tags: (t) => (t === 'lane' ? 'gray' : undefined),
    transport: async (a) => {
      log.push(`transport ${a.target.id}`);
      if (answer.error) throw answer.error;
      return { status: answer.status ?? 200 };
    },
    fromResponse: (r) => ({ status: r.status, madeByMesh: true }),
  };
  return { call, headers, log };
}

function attemptOf(call: OutboundCall<Res>, over: Partial<Attempt<Res>> = {}): Attempt<Res> {
  return testAttempt(call, { id: 'i1', instance: inst('i1'), rule: 'gray', lane: undefined }, over);
}

/** A Tracing whose spans record what they were told. */
function fakeTracing() {
  const spans: { call: ClientCall; attributes: Record<string, unknown>; outcome?: ClientOutcome }[] = [];
  return {
    spans,
    tracing: {
      startClientSpan(_parent: unknown, call: ClientCall): ClientSpan {
        const s: (typeof spans)[number] = { call, attributes: {} };
        spans.push(s);
        return {
          context: undefined as never,
          recording: true,
          inject: (h) => {
            (h as Record<string, string>).traceparent = `tp-${spans.length}`;
          },
          setAttribute: (k, v) => {
            s.attributes[k] = v;
          },
          end: (o) => {
            s.outcome ??= o;
          },
        };
      },
    },
  };
}

describe('the CLIENT span interceptor (trace), on its own', () => {
  interface Row {
    name: string;
    attempt: Partial<Attempt<Res>>;
    answer?: { status?: number; error?: Error };
    /** What the layer below adds while the attempt runs. */
    below?: (a: Attempt<Res>) => void;
    want: { call: Partial<ClientCall>; attributes: Record<string, unknown>; outcome: 'status' | 'error' };
  }
  const rows: Row[] = [
    {
      name: 'the record becomes the span: route, instance, attempt, breaker',
      attempt: { number: 1, breaker: 'half_open' },
      want: {
        call: { route: 'gray', instance: 'i1', attempt: 1, breaker: 'half_open', service: 'orders', method: 'GET' },
        attributes: {},
        outcome: 'status',
      },
    },
    {
      name: 'notes known at the start go on the span, route’s shadow first',
      attempt: {
        target: { id: 'i1', instance: inst('i1'), rule: undefined, lane: 'blue', shadow: 'r2' },
        notes: ['breaker:api:would-reject'],
      },
      want: { call: { lane: 'blue', shadow: 'route:r2:would-route breaker:api:would-reject' }, attributes: {}, outcome: 'status' },
    },
    {
      name: 'what the layers below add is set before the span ends (fault attributes, a late note)',
      attempt: {},
      below: (a) => {
        a.attributes = { 'io.meshlet.fault.rule': 'slow' };
        a.notes = ['fault:slow:would-delay-5ms'];
      },
      want: {
        call: {},
        attributes: { 'io.meshlet.fault.rule': 'slow', 'io.meshlet.shadow': 'fault:slow:would-delay-5ms' },
        outcome: 'status',
      },
    },
    {
      name: 'the revision of the rule document that routed goes on the span (explain names its version)',
      attempt: { target: { id: 'i1', instance: inst('i1'), rule: 'gray', lane: undefined, revision: 42 } },
      want: { call: { route: 'gray', rulesRevision: 42 }, attributes: {}, outcome: 'status' },
    },
    {
      name: 'an error ends the span with it, and is thrown on',
      attempt: {},
      answer: { error: new Error('boom') },
      want: { call: {}, attributes: {}, outcome: 'error' },
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const { spans, tracing } = fakeTracing();
      const { call, headers } = callOf(row.answer);
      const span = clientSpanInterceptor(tracing);
      const next: AttemptHandler = async (a) => {
        row.below?.(a as Attempt<Res>);
        return call.transport(a as Attempt<Res>) as never;
      };
      const p = span(attemptOf(call, row.attempt), next);
      if (row.want.outcome === 'error') await assert.rejects(p, /boom/);
      else assert.equal((await p).status, 200);
      assert.equal(spans.length, 1);
      const got = spans[0] as (typeof spans)[number];
      for (const [k, v] of Object.entries(row.want.call)) assert.deepEqual(got.call[k as keyof ClientCall], v, k);
      assert.deepEqual(got.attributes, row.want.attributes);
      assert.equal(headers.traceparent, 'tp-1', 'trace context written into the call’s headers');
      if (row.want.outcome === 'error') assert.match(String((got.outcome as { error: Error }).error), /boom/);
      else assert.equal(got.outcome, 200);
    });
  }
});

describe('the CLIENT span without a rule document', () => {
  it('revision 0 (rules set directly, none in force) puts no revision on the span', async () => {
    const { spans, tracing } = fakeTracing();
    const { call } = callOf();
    const attempt = attemptOf(call, { target: { id: 'i1', instance: inst('i1'), rule: undefined, lane: undefined, revision: 0 } });
    await clientSpanInterceptor(tracing)(attempt, (a) => call.transport(a as Attempt<Res>) as never);
    assert.equal(spans.length, 1);
    assert.equal('rulesRevision' in (spans[0] as (typeof spans)[number]).call, false);
  });
});

describe('the in-flight interceptor (route), on its own', () => {
  it('counts the attempt while it runs, for least requests, and uncounts it when it settles, either way', async () => {
    const router = new Router({ random: seededRandom(1), loadBalancer: { type: 'leastRequests' } });
    router.setInstances('orders', [inst('i1'), inst('i2')]);
    const picker = router.picker('orders');
    picker.first(() => undefined); // the table and its counters are built on first use
    const busy = attemptOf(callOf().call, { target: { id: 'i1', instance: inst('i1'), rule: undefined, lane: undefined } });
    const picksWhile: string[] = [];
    for (const fails of [false, true]) {
      const p = router.inFlight(busy, async () => {
        for (let i = 0; i < 20; i++) picksWhile.push(picker.first(() => undefined).id);
        if (fails) throw new Error('refused');
        return { status: 200 } as never;
      });
      if (fails) await assert.rejects(p);
      else await p;
    }
    // i1 had one call in flight, i2 none: least requests always took i2.
    assert.deepEqual(new Set(picksWhile), new Set(['i2']));
    const after = new Set(Array.from({ length: 40 }, () => picker.first(() => undefined).id));
    assert.deepEqual(after, new Set(['i1', 'i2']), 'both idle again once the attempts settled');
  });
});

describe('the fault interceptor (fault), on its own', () => {
  interface Row {
    name: string;
    section: Record<string, unknown> | undefined;
    want: { sent: boolean; status: number; injected: boolean; attributes?: Record<string, unknown>; notes?: string[] };
    delayMs?: number;
  }
  const rule = (extra: Record<string, unknown>) => ({
    rules: [{ name: 'f', when: [{ tag: 'lane', op: 'equals', value: 'gray' }], percentage: 100, ...extra }],
  });
  const rows: Row[] = [
    { name: 'no rules: straight on to the transport', section: undefined, want: { sent: true, status: 200, injected: false } },
    {
      name: 'an abort answers for the instance: made by the mesh, marked injected, nothing sent',
      section: rule({ abort: 503 }),
      want: {
        sent: false,
        status: 503,
        injected: true,
        attributes: { 'io.meshlet.fault.rule': 'f', 'io.meshlet.fault.abort_status': 503 },
      },
    },
    {
      name: 'a delay waits on the clock, then sends',
      section: rule({ delay: 40 }),
      delayMs: 40,
      want: { sent: true, status: 200, injected: false, attributes: { 'io.meshlet.fault.rule': 'f', 'io.meshlet.fault.delay_ms': 40 } },
    },
    {
      name: 'shadow mode: a note, nothing injected',
      section: { mode: 'shadow', ...rule({ abort: 503 }) },
      want: { sent: true, status: 200, injected: false, notes: ['fault:f:would-abort-503'] },
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const clock = new ManualClock();
      const injector = new FaultInjector();
      const { parseFaultSection } = await import('@meshlet/fault');
      if (row.section) injector.setRules('orders', parseFaultSection(row.section, 'fault'));
      const fault = faultInterceptor({ faults: (s) => injector.forService(s), clock });
      const { call, log } = callOf();
      const attempt = attemptOf(call);
      const p = fault(attempt, (a) => a.call.transport(a));
      if (row.delayMs) {
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(log, [], 'not sent before the delay');
        clock.advance(row.delayMs);
      }
      const res = await p;
      assert.equal(res.status, row.want.status);
      assert.deepEqual(log, row.want.sent ? ['transport i1'] : []);
      assert.equal(attempt.injected, row.want.injected);
      assert.equal(res.madeByMesh === true, row.want.injected);
      assert.deepEqual(attempt.attributes, row.want.attributes);
      assert.deepEqual(attempt.notes, row.want.notes);
    });
  }

  it('keeps the span attributes the executor put on the record beside its own', async () => {
    const injector = new FaultInjector();
    const { parseFaultSection } = await import('@meshlet/fault');
    injector.setRules('orders', parseFaultSection(rule({ abort: 500 }), 'fault'));
    const fault = faultInterceptor({ faults: (s) => injector.forService(s), clock: new ManualClock() });
    const { call } = callOf();
    const a = attemptOf(call, { attributes: { 'io.meshlet.circuit.instances': 'i0' } });
    await fault(a, (x) => x.call.transport(x));
    assert.equal(a.attributes?.['io.meshlet.circuit.instances'], 'i0');
    assert.equal(a.attributes?.['io.meshlet.fault.abort_status'], 500);
  });

  it('makes a decision’s span attributes once, not per attempt', async () => {
    const injector = new FaultInjector();
    const { parseFaultSection } = await import('@meshlet/fault');
    injector.setRules('orders', parseFaultSection(rule({ abort: 500 }), 'fault'));
    const fault = faultInterceptor({ faults: (s) => injector.forService(s), clock: new ManualClock() });
    const { call } = callOf();
    const a = attemptOf(call);
    const b = attemptOf(call);
    await fault(a, (x) => x.call.transport(x));
    await fault(b, (x) => x.call.transport(x));
    assert.ok(a.attributes !== undefined && a.attributes === b.attributes);
  });
});

describe('the chain, composed', () => {
  const tracer = (name: string, log: string[]): AttemptInterceptor =>
    (async (a: Attempt<Res>, next: AttemptHandler) => {
      log.push(`enter ${name}`);
      try {
        return await next(a);
      } finally {
        log.push(`leave ${name}`);
      }
    }) as AttemptInterceptor;
  interface Row {
    name: string;
    names: string[];
    want: string[];
  }
  const rows: Row[] = [
    { name: 'no interceptor: the transport alone', names: [], want: ['transport i1'] },
    {
      name: 'outermost first, each around the rest',
      names: ['span', 'inflight', 'fault'],
      want: ['enter span', 'enter inflight', 'enter fault', 'transport i1', 'leave fault', 'leave inflight', 'leave span'],
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const log: string[] = [];
      const { call } = callOf({}, log);
      const chain = chainAttempt(row.names.map((n) => tracer(n, log)));
      assert.equal((await chain(attemptOf(call))).status, 200);
      assert.deepEqual(log, row.want);
    });
  }

  it("attemptStages: the protocol's span stage (given), in-flight (route), fault (fault), in that order; no span without tracing", () => {
    const router = new Router();
    const base = { router, faults: () => undefined, clock: new ManualClock() } as unknown as AttemptStageDeps;
    // The protocol gives only the span stage (HTTP's clientSpanInterceptor, gRPC's rpcSpanObserver);
    // that grpc.ts and governed-fetch.ts hand theirs is held by the grpc and fetch span tests.
    const span = { stage: 'span' } as unknown as AttemptStage;
    const traced = attemptStages({ ...base, tracing: fakeTracing().tracing } as unknown as AttemptStageDeps, () => span);
    assert.equal(traced.length, 3);
    assert.equal(traced[0], span);
    assert.equal(traced[1], router.inFlight);
    const untraced = attemptStages({ ...base, tracing: undefined }, () => span);
    assert.equal(untraced.length, 2);
    assert.equal(untraced[0], router.inFlight);
  });

  it('a composed chain runs a real span, count and fault around a fake transport', async () => {
    const { spans, tracing } = fakeTracing();
    const router = new Router({ random: seededRandom(1) });
    router.setInstances('orders', [inst('i1')]);
    const injector = new FaultInjector();
    const { parseFaultSection } = await import('@meshlet/fault');
    injector.setRules('orders', parseFaultSection(rule503(), 'fault'));
    const chain = chainAttempt(
      attemptStages(
        {
          router,
          tracing,
          faults: (s: string) => injector.forService(s),
          clock: new ManualClock(),
        } as unknown as AttemptStageDeps,
        clientSpanInterceptor,
      ),
    );
    const { call, log } = callOf();
    const attempt = attemptOf(call, { target: router.picker('orders').first(call.tags) });
    const res = await chain(attempt);
    assert.deepEqual([res.status, attempt.injected, log], [503, true, []]);
    assert.equal(spans[0]?.outcome, 503);
    assert.equal(spans[0]?.attributes['io.meshlet.fault.abort_status'], 503);
    assert.throws(() => new Router().picker('none').first(() => undefined), NoInstanceError);
  });
});

function rule503() {
  return { rules: [{ name: 'f', when: [], percentage: 100, abort: 503 }] };
}

describe('a shadow breaker timeout is a deadline check, noted on the span', () => {
  it('an attempt that outlived the shadow timeoutMs carries breaker:timeout:would-time-out on its span, with no timer of its own', async () => {
    const { InMemoryKvStore, InMemoryRegistry, MemoryLogger, RULES_PREFIX } = await import('@meshlet/core');
    const { InMemorySpanExporter } = await import('@opentelemetry/sdk-trace');
    const { createMesh } = await import('../src/index.js');
    const clock = new ManualClock(1_000_000);
    const registry = new InMemoryRegistry();
    await registry.register({ ...inst('o1'), metadata: {} });
    const kv = new InMemoryKvStore();
    await kv.put(`${RULES_PREFIX}orders`, JSON.stringify({ service: 'orders', breaker: { mode: 'shadow', timeoutMs: 50 } }));
    const exporter = new InMemorySpanExporter();
    let sent = 0;
    const mesh = createMesh({
      service: 'caller',
      registry,
      rules: kv,
      clock,
      logger: new MemoryLogger(),
      tracing: { exporters: [exporter], metrics: false },
      // The upstream answers after `delays[n]` ms of the mesh's clock.
      fetch: () => {
        const delay = [80, 10][sent++] as number;
        return new Promise((resolve) => clock.setTimeout(() => resolve(new Response('ok')), delay));
      },
    });
    try {
      const notes: unknown[] = [];
      for (const delay of [80, 10]) {
        const p = mesh.fetch('http://orders/x');
        while (sent < notes.length + 1) await new Promise((r) => setImmediate(r));
        clock.advance(delay);
        assert.equal((await p).status, 200);
        await mesh.tracing?.forceFlush();
        const spans = exporter.getFinishedSpans().filter((s) => s.attributes['service.peer.name'] === 'orders');
        exporter.reset();
        notes.push(spans.map((s) => s.attributes['io.meshlet.shadow']));
      }
      // 80 ms outlived the 50 ms the section would allow; 10 ms did not.
      assert.deepEqual(notes, [['breaker:timeout:would-time-out'], [undefined]]);
    } finally {
      await mesh.close();
    }
  });
});
