import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type LogFields, ManualClock, throttledLogger } from '@meshlet/core';
import { type AttemptRecord, CallExecutor, markStaleConnection, parseBreakerRules } from '../src/index.js';

type Inst = { id: string };

/** Closed on a kept-alive connection before any byte of the answer, as the mesh's Agent marks it. */
function staleClosed(): Error {
  const err = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
  markStaleConnection(err);
  return new TypeError('fetch failed', { cause: err });
}
const refused = () =>
  new TypeError('fetch failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED', syscall: 'connect' }) });

/** The first instance not tried, in list order. */
const firstUntried = (ids: string[]) => (tried: ReadonlySet<string>) => {
  const id = ids.find((i) => !tried.has(i));
  return id === undefined ? undefined : { id };
};

describe('retry counts', () => {
  it('a stale retry on the instance already tried is counted and its span says why', async () => {
    const executor = new CallExecutor({ clock: new ManualClock() });
    executor.setInstances('orders', ['a']);
    const seen: [string, AttemptRecord<Inst>['attributes']][] = [];
    let n = 0;
    const res = await executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: firstUntried(['a']),
      send: async (i, _s, attempt) => {
        seen.push([i.id, attempt.attributes]);
        if (n++ === 0) throw staleClosed();
        return new Response('ok');
      },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(seen, [
      ['a', undefined],
      ['a', { 'io.meshlet.retry': 'stale' }],
    ]);
    assert.deepEqual(executor.retryCounts(), [{ service: 'orders', sent: { stale: 1 }, budgetRefused: {} }]);
  });

  it('counts each retry by its reason: a refused connection, a failed answer by status class, a retryable answer', async () => {
    const executor = new CallExecutor({ clock: new ManualClock() });
    executor.setRules('orders', parseBreakerRules({ retry: { maxRetries: 3, backoff: { baseMs: 0, maxMs: 0 } } }, 'breaker'));
    executor.setInstances('orders', ['a', 'b', 'c', 'd']);
    const outcomes: (() => Response)[] = [
      () => {
        throw refused();
      },
      () => new Response(null, { status: 503 }),
      () => new Response(null, { status: 429, headers: { 'x-again': '1' } }),
      () => new Response('ok'),
    ];
    const reasons: unknown[] = [];
    const res = await executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: firstUntried(['a', 'b', 'c', 'd']),
      send: async (_i, _s, attempt) => {
        reasons.push(attempt.attributes?.['io.meshlet.retry']);
        return (outcomes.shift() as () => Response)();
      },
      retryableAnswer: (r) => r.headers.get('x-again') === '1',
    });
    assert.equal(res.status, 200);
    assert.deepEqual(reasons, [undefined, 'not-sent', '5xx', 'answer']);
    assert.deepEqual(executor.retryCounts(), [{ service: 'orders', sent: { 'not-sent': 1, '5xx': 1, answer: 1 }, budgetRefused: {} }]);
  });

  it('a retry the budget refuses is counted by reason and warned through the throttled logger, once per interval', async () => {
    const clock = new ManualClock();
    const lines: [string, LogFields | undefined][] = [];
    const sink = { debug() {}, info() {}, warn: (m: string, f?: LogFields) => lines.push([m, f]), error() {} };
    const logger = throttledLogger(sink, { clock });
    const executor = new CallExecutor({ clock, logger, defaults: { outlierDetection: false } });
    const section = (percent: number) => ({
      retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 }, budget: { percent, minPerSecond: 0, windowMs: 10_000 } },
    });
    executor.setRules('orders', parseBreakerRules(section(0), 'breaker'));
    executor.setInstances('orders', ['a', 'b']);
    const call = () =>
      executor.call<Inst>({
        service: 'orders',
        method: 'GET',
        pick: firstUntried(['a', 'b']),
        send: async () => new Response(null, { status: 502 }),
      });
    for (let i = 0; i < 3; i++) assert.equal((await call()).status, 502);
    assert.deepEqual(executor.retryCounts(), [{ service: 'orders', sent: {}, budgetRefused: { '5xx': 3 } }]);
    assert.equal(lines.length, 1, 'one line for three refusals');
    assert.equal(lines[0]?.[1]?.code, 'MESHLET_RETRY_BUDGET');
    assert.deepEqual([lines[0]?.[1]?.service, lines[0]?.[1]?.reason], ['orders', '5xx']);
    assert.equal(logger.counts.get('MESHLET_RETRY_BUDGET'), 3);
    // A new budget starts its window afresh; the counts go on.
    executor.setRules('orders', parseBreakerRules(section(100), 'breaker'));
    await call();
    assert.deepEqual(executor.retryCounts(), [{ service: 'orders', sent: { '5xx': 1 }, budgetRefused: { '5xx': 3 } }]);
  });

  it("a gRPC stream's further tries are counted as retries, and refused ones too", () => {
    const executor = new CallExecutor({ clock: new ManualClock() });
    executor.setRules(
      'orders',
      parseBreakerRules({ retry: { maxRetries: 1, budget: { percent: 50, minPerSecond: 0, windowMs: 10_000 } } }, 'breaker'),
    );
    const tracked = [executor.track('orders', true), executor.track('orders', true)];
    assert.deepEqual([tracked[0]?.retry('not-sent'), tracked[1]?.retry('not-sent')], [true, false], '50% of 2 calls: one retry');
    assert.deepEqual(executor.retryCounts(), [{ service: 'orders', sent: { 'not-sent': 1 }, budgetRefused: { 'not-sent': 1 } }]);
  });

  it('a gRPC stream tracked and never retried lists no retry counts for its service', () => {
    const executor = new CallExecutor({ clock: new ManualClock() });
    executor.track('orders', true);
    assert.deepEqual(executor.retryCounts(), []);
  });
});
