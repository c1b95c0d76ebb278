// The composition of route + breaker + fault + span, table-driven, with fakes at the seams
// and no sockets: the in-memory registry and rule store, a fake HTTP client (a script of
// answers per instance) and an in-memory span exporter. Each row: a rule document × the
// upstream's answers × the request's tags → the instances tried, the client spans'
// attributes, and the outcome.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Instance, MemoryLogger, RULES_PREFIX, seededRandom, withTags } from '@meshlet/core';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh } from '../src/index.js';

const instances: readonly Instance[] = ['a', 'b', 'c'].map((slot, i) => ({
  id: `orders-${slot}`,
  service: 'orders',
  address: `10.0.0.${i + 1}`,
  port: 8080,
  tags: [],
  metadata: { slot, version: slot === 'a' ? 'v1' : 'v2' },
  health: 'passing',
}));
const byAddress = new Map(instances.map((i) => [i.address, i.id.slice('orders-'.length)]));

/** An answer of the fake upstream: a status, or a connection refused (nothing sent). */
type Answer = number | 'refused';

interface Row {
  readonly name: string;
  /** The `orders` rule document's sections. */
  readonly rules: Readonly<Record<string, unknown>>;
  /** Answers per instance slot, in order; 200 once a slot's script runs out. */
  readonly upstream?: Readonly<Record<string, readonly Answer[]>>;
  readonly tags?: Readonly<Record<string, string>>;
  readonly method?: string;
  readonly expect: {
    /** Slots sent to, in order. */
    readonly tried: readonly string[];
    /** The response's status, or the code of the error the call failed with. */
    readonly outcome: number | string;
    /** Attributes of each attempt's client span, in order (only the keys given are compared). */
    readonly spans: readonly Readonly<Record<string, string | number | undefined>>[];
  };
}

const toA = { default: [{ group: { slot: 'a' }, weight: 100 }] };
const chromeToB = {
  rules: [{ name: 'chrome', when: [{ tag: 'ua', op: 'equals', value: 'Chrome' }], destinations: [{ group: { slot: 'b' }, weight: 100 }] }],
  ...toA,
};
const v2 = { default: [{ group: { version: 'v2' }, weight: 100 }] };
const retryOnce = { retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 1 } } };
const abortGray = { rules: [{ name: 'gray-503', when: [{ tag: 'lane', op: 'equals', value: 'gray' }], percentage: 100, abort: 503 }] };

const rows: readonly Row[] = [
  {
    name: 'default route, a good answer',
    rules: { route: toA },
    expect: { tried: ['a'], outcome: 200, spans: [{ 'io.meshlet.instance': 'orders-a', 'http.response.status_code': 200 }] },
  },
  {
    name: 'a tag rule sends a matching request to its group, named on the span',
    rules: { route: chromeToB },
    tags: { ua: 'Chrome' },
    expect: { tried: ['b'], outcome: 200, spans: [{ 'io.meshlet.instance': 'orders-b', 'io.meshlet.route': 'chrome' }] },
  },
  {
    name: 'a request the rule does not match takes the default route',
    rules: { route: chromeToB },
    tags: { ua: 'Firefox' },
    expect: { tried: ['a'], outcome: 200, spans: [{ 'io.meshlet.instance': 'orders-a', 'io.meshlet.route': undefined }] },
  },
  {
    name: 'no rules: a refused connection is retried on another instance (nothing was sent), once',
    rules: { route: v2 },
    upstream: { b: ['refused'], c: ['refused'] },
    expect: {
      tried: ['b', 'c'],
      outcome: 'ECONNREFUSED',
      spans: [{ 'error.type': 'ECONNREFUSED' }, { 'http.request.resend_count': 1, 'error.type': 'ECONNREFUSED' }],
    },
  },
  {
    name: 'no rules: a 503 is answered, not retried (it may have been processed)',
    rules: { route: v2 },
    upstream: { b: [503], c: [503] },
    expect: { tried: ['b'], outcome: 503, spans: [{ 'http.response.status_code': 503 }] },
  },
  {
    name: 'a breaker retry sends a GET that got 503 to the other instance of the group',
    rules: { route: v2, breaker: { ...retryOnce } },
    upstream: { b: [503] },
    expect: {
      tried: ['b', 'c'],
      outcome: 200,
      spans: [{ 'http.response.status_code': 503 }, { 'http.request.resend_count': 1, 'http.response.status_code': 200 }],
    },
  },
  {
    name: 'a breaker retry does not resend a POST that may have been processed',
    rules: { route: v2, breaker: { ...retryOnce } },
    upstream: { b: [503], c: [503] },
    method: 'POST',
    expect: { tried: ['b'], outcome: 503, spans: [{ 'http.response.status_code': 503 }] },
  },
  {
    name: 'a fault rule that matches answers 503 itself: nothing is sent, the span names the rule',
    rules: { route: toA, fault: abortGray },
    tags: { lane: 'gray' },
    expect: {
      tried: [],
      outcome: 503,
      spans: [{ 'io.meshlet.fault.rule': 'gray-503', 'io.meshlet.fault.abort_status': 503, 'http.response.status_code': 503 }],
    },
  },
  {
    name: 'a fault rule that does not match leaves the call alone',
    rules: { route: toA, fault: abortGray },
    tags: { lane: 'blue' },
    expect: { tried: ['a'], outcome: 200, spans: [{ 'io.meshlet.fault.rule': undefined, 'http.response.status_code': 200 }] },
  },
  {
    // An injected abort is the caller's answer: a retry rule does not retry it (Envoy's
    // fault filter aborts before its router, whose retry policy never sees it).
    name: 'an injected abort under a retry rule: not retried; nothing sent',
    rules: { route: v2, breaker: { ...retryOnce }, fault: abortGray },
    tags: { lane: 'gray' },
    expect: {
      tried: [],
      outcome: 503,
      spans: [{ 'io.meshlet.fault.rule': 'gray-503' }],
    },
  },
];

async function run(row: Row) {
  const registry = new InMemoryRegistry();
  for (const i of instances) await registry.register(i);
  const kv = new InMemoryKvStore();
  await kv.put(`${RULES_PREFIX}orders`, JSON.stringify({ service: 'orders', ...row.rules }));
  const scripts = new Map(Object.entries(row.upstream ?? {}).map(([slot, answers]) => [slot, [...answers]]));
  const tried: string[] = [];
  const exporter = new InMemorySpanExporter();
  const mesh = createMesh({
    service: 'caller',
    registry,
    rules: kv,
    logger: new MemoryLogger(),
    route: { random: seededRandom(7) },
    tracing: { exporters: [exporter], metrics: false },
    async fetch(input) {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const slot = byAddress.get(url.hostname) ?? '?';
      tried.push(slot);
      const answer = scripts.get(slot)?.shift() ?? 200;
      if (answer === 'refused')
        throw new TypeError('fetch failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) });
      return new Response(slot, { status: answer });
    },
  });
  try {
    let outcome: number | string;
    try {
      const res = await withTags(row.tags ?? {}, () => mesh.fetch('http://orders/items/1', { method: row.method ?? 'GET' }));
      await res.body?.cancel();
      outcome = res.status;
    } catch (err) {
      const e = err as { code?: string; cause?: { code?: string }; name: string };
      outcome = e.cause?.code ?? e.code ?? e.name;
    }
    await mesh.tracing?.forceFlush();
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['service.peer.name'] === 'orders');
    return { tried, outcome, spans: spans.map((s) => s.attributes) };
  } finally {
    await mesh.close();
  }
}

describe('route × breaker × fault × span, at the seams', () => {
  for (const row of rows) {
    it(row.name, async () => {
      const got = await run(row);
      assert.deepEqual(got.tried, row.expect.tried, 'instances tried');
      assert.equal(got.outcome, row.expect.outcome, 'outcome');
      assert.equal(got.spans.length, row.expect.spans.length, 'one client span per attempt');
      row.expect.spans.forEach((want, n) => {
        for (const [key, value] of Object.entries(want)) assert.equal(got.spans[n]?.[key], value, `span ${n}: ${key}`);
      });
    });
  }
});
