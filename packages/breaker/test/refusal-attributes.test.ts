// Which breaker refused a call or an attempt, as the executor tells the span: a refused
// call's CircuitOpenError (or NoInstanceError) carries `spanAttributes`, an attempt whose
// pick an instance breaker refused carries them on its record, and a shadow API breaker's
// would-be refusal names its API on the first attempt's record.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, NoInstanceError, type RuleFeed } from '@meshlet/core';
import { type AttemptRecord, CallExecutor, CircuitOpenError, parseBreakerRules } from '../src/index.js';

type Inst = { id: string };

/** A rule feed that hands the executor one section at store revision `revision`. */
const feed = (section: unknown, revision: number): RuleFeed => ({
  service: 'orders',
  follow: <T>(_kind: unknown, listener: (section: T | undefined, revision: number) => void) => {
    listener(parseBreakerRules(section, 'breaker') as T, revision);
    return () => {};
  },
});

function setup(section: unknown, statusOf: (id: string) => number, ids = ['a', 'b', 'c'], offered = ids) {
  const clock = new ManualClock();
  const executor = new CallExecutor({ clock, random: () => 0.5 });
  executor.follow(feed(section, 7));
  executor.setInstances('orders', ids);
  const records: AttemptRecord<Inst>[] = [];
  let next = 0;
  // Routing that has not yet heard of the instance breakers: it offers every instance (of `offered`, its route group).
  const pick = (tried: ReadonlySet<string>) => {
    for (let i = 0; i < offered.length; i++) {
      const id = offered[(next + i) % offered.length] as string;
      if (tried.has(id)) continue;
      next = (next + i + 1) % offered.length;
      return { id };
    }
    return undefined;
  };
  const call = (path = '/orders/42') =>
    executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      path,
      pick,
      send: async (inst, _signal, rec) => {
        records.push(rec);
        return new Response(inst.id, { status: statusOf(inst.id) });
      },
    });
  return { clock, executor, call, records };
}

const refusal = async (p: Promise<unknown>, type: typeof CircuitOpenError | typeof NoInstanceError) => {
  let caught: unknown;
  await p.catch((e: unknown) => {
    caught = e;
  });
  assert.ok(caught instanceof type, `rejected with ${type.name} (got ${String(caught)})`);
  return (caught as { spanAttributes?: unknown }).spanAttributes;
};

describe('the span of a refused call names the breaker that refused it', () => {
  it('an api breaker: its level, API key and state, the service breaker state, the rules revision', async () => {
    const { call } = setup(
      {
        rules: [
          { level: 'service', consecutiveFailures: 100 },
          { level: 'api', apis: [{ method: 'GET', path: '/orders/{id}' }], consecutiveFailures: 1, sleepWindowMs: 1_000 },
        ],
      },
      () => 503,
    );
    assert.equal((await call()).status, 503);
    assert.deepEqual(await refusal(call(), CircuitOpenError), {
      'io.meshlet.circuit.level': 'api',
      'io.meshlet.circuit.api': 'GET /orders/{id}',
      'io.meshlet.circuit.state': 'open',
      'io.meshlet.breaker': 'closed',
      'io.meshlet.rules.revision': 7,
    });
  });

  it('the revision is the rules in force: kept when a fallback is set later, replaced by the next document', async () => {
    const section = { rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 1_000 }] };
    const { executor, call } = setup(section, () => 503);
    assert.equal((await call()).status, 503);
    const seen: unknown[] = [];
    executor.setFallback('orders', (err) => {
      seen.push(err.spanAttributes['io.meshlet.rules.revision']);
      return new Response('cached', { status: 200 });
    });
    assert.equal((await call()).status, 200, 'the fallback answered');
    executor.follow(feed(section, 9));
    assert.equal((await call()).status, 200, 'the same rule: its breaker kept its state (open)');
    assert.deepEqual(seen, [7, 9]);
  });

  it('a refusal carries its span attributes as a field, with the state it had when it refused: read, spread, logged as JSON', async () => {
    const { call, clock } = setup({ rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 1_000 }] }, () => 503);
    assert.equal((await call()).status, 503);
    let caught: unknown;
    await call().catch((e: unknown) => {
      caught = e;
    });
    assert.ok(caught instanceof CircuitOpenError);
    clock.advance(1_000); // the breaker would be half-open now: the refusal keeps what it saw
    const want = {
      'io.meshlet.circuit.level': 'service',
      'io.meshlet.circuit.state': 'open',
      'io.meshlet.breaker': 'open',
      'io.meshlet.rules.revision': 7,
    };
    // Read as trace's errorAttributesOf reads it (a destructured field of an unknown error).
    const { spanAttributes } = caught as unknown as { spanAttributes?: unknown };
    assert.deepEqual(spanAttributes, want);
    assert.equal(caught.spanAttributes, spanAttributes, 'the same object on every read');
    // A public field of a public error: a structured logger (JSON, a spread, for…in) sees it,
    // and code that enriches errors can set it, as before it was made lazily (found in review).
    assert.deepEqual(JSON.parse(JSON.stringify(caught)).spanAttributes, want, 'JSON.stringify, as a JSON logger writes it');
    assert.deepEqual(({ ...caught } as { spanAttributes?: unknown }).spanAttributes, want, 'a spread copy');
    const keys: string[] = [];
    for (const k in caught) keys.push(k);
    assert.ok(keys.includes('spanAttributes'), `for…in (pino's error serializer): ${keys.join(' ')}`);
    assert.doesNotThrow(() => Object.assign(caught as object, { spanAttributes: { ...want, extra: 1 } }), 'assigned');
    assert.equal(new CircuitOpenError('api', 'orders', 'GET /x', 5).spanAttributes['io.meshlet.circuit.api'], 'GET /x');
  });

  it('a service breaker: its level and state', async () => {
    const { call } = setup({ rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 1_000 }] }, () => 503);
    assert.equal((await call()).status, 503);
    assert.deepEqual(await refusal(call(), CircuitOpenError), {
      'io.meshlet.circuit.level': 'service',
      'io.meshlet.circuit.state': 'open',
      'io.meshlet.breaker': 'open',
      'io.meshlet.rules.revision': 7,
    });
  });

  it("instance breakers: an attempt names the instances whose breakers refused its pick; when none is left, the call's error does", async () => {
    const instanceRule = { level: 'instance', consecutiveFailures: 1, sleepWindowMs: 1_000, maxEjectionPercent: 100 };
    const { call, records } = setup({ rules: [instanceRule] }, (id) => (id === 'a' ? 503 : 200), ['a', 'b']);
    assert.equal((await call()).status, 503, 'a fails once: its breaker opens');
    assert.equal((await call()).status, 200, 'b answers');
    records.length = 0;
    assert.equal((await call()).status, 200, 'routing offered a again; its breaker refused it and b answered');
    assert.deepEqual(
      records.map((r) => [r.target.id, r.attributes]),
      [['b', { 'io.meshlet.circuit.instances': 'a' }]],
    );

    // Routing offers only a (say, a route rule's group); b's breaker stays closed, as the cap keeps one.
    const all = setup({ rules: [instanceRule] }, () => 503, ['a', 'b'], ['a']);
    assert.equal((await all.call()).status, 503);
    assert.deepEqual(await refusal(all.call(), NoInstanceError), {
      'io.meshlet.circuit.level': 'instance',
      'io.meshlet.circuit.instances': 'a',
    });
  });

  it("a breaker section in shadow mode: the API of the api breaker that would have refused, on the call's first attempt", async () => {
    const { call, records } = setup(
      { mode: 'shadow', rules: [{ level: 'api', apis: [{ method: 'GET', path: '/orders/{id}' }], consecutiveFailures: 1 }] },
      () => 503,
    );
    assert.equal((await call()).status, 503);
    records.length = 0;
    assert.equal((await call()).status, 503, 'not enforced');
    const first = records[0];
    assert.deepEqual(first?.notes, ['breaker:api:would-reject']);
    assert.deepEqual(first?.attributes, { 'io.meshlet.circuit.shadow_api': 'GET /orders/{id}' });
  });
});
