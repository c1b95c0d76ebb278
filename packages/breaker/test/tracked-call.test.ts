// CallExecutor.track: the executor's instance breakers and retry budget for a call it does
// not run (a gRPC stream), with a manual clock and no transport.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { CallExecutor, CircuitOpenError, parseBreakerRules } from '../src/index.js';

function executorWith(section: unknown, clock = new ManualClock()) {
  const executor = new CallExecutor({ clock });
  executor.setRules('orders', parseBreakerRules(section, 'breaker'));
  executor.setInstances('orders', ['o-0', 'o-1', 'o-2']);
  return { executor, clock };
}

const stateOf = (executor: CallExecutor, id: string) =>
  executor.snapshot().find((b) => b.breaker.level === 'instance' && b.breaker.instance === id)?.state ?? 'closed';

const NOT_CONNECTED = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });

describe('CallExecutor.track (a call the executor does not run)', () => {
  it('counts refused connections and 5xx answers against the instance; 4xx, the caller’s abort and a release count nothing', () => {
    const { executor } = executorWith({
      rules: [{ level: 'instance', consecutiveFailures: 2, sleepWindowMs: 1_000, maxEjectionPercent: 50 }],
    });
    const t = executor.track('orders', true);
    assert.ok(t);
    // Neither way: an answer the caller is to blame for, the caller's own abort, a release.
    assert.equal(t.attempt('o-0')?.answered(400), false);
    t.attempt('o-0')?.failed(new Error('cancelled'), true);
    t.attempt('o-0')?.released();
    t.attempt('o-0')?.failed(NOT_CONNECTED, false);
    assert.equal(stateOf(executor, 'o-0'), 'closed', 'one failure in a row');
    assert.equal(t.attempt('o-0')?.answered(503), true);
    assert.equal(stateOf(executor, 'o-0'), 'open', 'a refused connection, then a 503: two in a row');
    assert.equal(t.attempt('o-0'), undefined, 'an open breaker refuses the try');
    assert.equal(executor.instanceBreakers.isExcluded('o-0'), true, 'routing leaves it out');
  });

  it('a success in between resets the run; an attempt settles once', () => {
    const { executor } = executorWith({ rules: [{ level: 'instance', consecutiveFailures: 2, maxEjectionPercent: 50 }] });
    const t = executor.track('orders', false);
    assert.ok(t);
    t.attempt('o-1')?.answered(500);
    const ok = t.attempt('o-1');
    ok?.answered(200);
    ok?.answered(500);
    ok?.failed(NOT_CONNECTED, false);
    t.attempt('o-1')?.answered(500);
    assert.equal(stateOf(executor, 'o-1'), 'closed', 'the second outcome of a settled attempt was dropped');
  });

  it('after the sleep window track() turns the breaker half-open: one probe, then refused until it settles', () => {
    const { executor, clock } = executorWith({
      rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 1_000, probes: 1, maxEjectionPercent: 50 }],
    });
    executor.track('orders', false)?.attempt('o-2')?.answered(503);
    assert.equal(stateOf(executor, 'o-2'), 'open');
    clock.advance(1_000);
    const t = executor.track('orders', false);
    assert.ok(t);
    assert.equal(executor.instanceBreakers.isExcluded('o-2'), false, 'the sleep window ended: back in routing for its probe');
    const probe = t.attempt('o-2');
    assert.ok(probe, 'the probe');
    assert.equal(t.attempt('o-2'), undefined, 'its one probe is taken: no other try');
    assert.equal(executor.instanceBreakers.isExcluded('o-2'), true, 'routing leaves it out while the probe is in flight');
    probe.answered(200);
    assert.equal(stateOf(executor, 'o-2'), 'closed');
    assert.ok(t.attempt('o-2'));
  });

  it("a probe is settled by the instance's first answer (responded): the breaker closes; any other try waits for its end", () => {
    const { executor, clock } = executorWith({
      rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 1_000, probes: 1, maxEjectionPercent: 50 }],
    });
    const t = executor.track('orders', false);
    assert.ok(t);
    const before = t.attempt('o-0');
    assert.equal(before?.probe, false);
    before?.responded();
    before?.answered(503);
    assert.equal(stateOf(executor, 'o-0'), 'open', "a closed breaker's try is settled by its end, not its first answer");
    clock.advance(1_000);
    const probe = executor.track('orders', false)?.attempt('o-0');
    assert.equal(probe?.probe, true);
    probe?.responded(5);
    assert.equal(stateOf(executor, 'o-0'), 'closed', 'the probe answered: closed while its stream lives on');
    probe?.answered(503);
    assert.equal(stateOf(executor, 'o-0'), 'closed', 'its end no longer counts: it settled once');
  });

  it('further tries are paid from the retry budget: counted calls afford their share, then none', () => {
    const { executor } = executorWith({ retry: { maxRetries: 2, budget: { percent: 50, minPerSecond: 0, windowMs: 10_000 } } });
    const calls = [0, 1, 2, 3].map(() => executor.track('orders', true));
    // A call that may not retry is not counted.
    executor.track('orders', false);
    assert.deepEqual(executor.retryStats('orders'), { calls: 4, retries: 0, denied: 0 });
    assert.equal(calls[0]?.retry('not-sent'), true);
    assert.equal(calls[1]?.retry('not-sent'), true);
    assert.equal(calls[2]?.retry('not-sent'), false, '50% of 4 calls: 2 retries');
    assert.deepEqual(executor.retryStats('orders'), { calls: 4, retries: 2, denied: 1 });
  });

  it('passes the service and API breakers: an open one refuses with CircuitOpenError; the outcome settles both once', () => {
    const { executor } = executorWith({
      rules: [
        { level: 'service', consecutiveFailures: 2, sleepWindowMs: 1_000 },
        { level: 'api', apis: [{ method: 'POST', path: '/pkg.S/Watch' }], consecutiveFailures: 1, sleepWindowMs: 1_000 },
      ],
    });
    const watch = { method: 'POST', path: '/pkg.S/Watch' };
    const other = { method: 'POST', path: '/pkg.S/Other' };
    const t = executor.track('orders', false, watch);
    assert.ok(t);
    t.outcome.answered(503);
    t.outcome.answered(503);
    assert.equal(executor.breaker('api', 'orders', 'POST /pkg.S/Watch')?.state, 'open', 'one failure opens the API breaker');
    assert.equal(executor.breaker('service', 'orders')?.state, 'closed', 'the outcome was counted once: one failure of two');
    assert.throws(
      () => executor.track('orders', false, watch),
      (err: unknown) => err instanceof CircuitOpenError && err.level === 'api',
    );
    executor.track('orders', false, other)?.outcome.failed(NOT_CONNECTED, false);
    assert.equal(executor.breaker('service', 'orders')?.state, 'open', 'the second failure at the service level');
    assert.throws(
      () => executor.track('orders', false, other),
      (err: unknown) => err instanceof CircuitOpenError && err.level === 'service',
    );
  });

  it('without governance (no rules, no call defaults) there is nothing to track', () => {
    const executor = new CallExecutor({ clock: new ManualClock(), defaults: false });
    assert.equal(executor.track('orders', true), undefined);
  });
});
