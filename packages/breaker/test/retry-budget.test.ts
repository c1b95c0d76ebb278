import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { backoffDelay, RetryBudget } from '../src/index.js';

describe('RetryBudget', () => {
  it('allows retries up to percent of calls plus minPerSecond over the window', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ percent: 20, minPerSecond: 1, windowMs: 10_000, clock });
    for (let i = 0; i < 50; i++) budget.recordCall();
    let allowed = 0;
    while (budget.tryRetry()) allowed++;
    assert.equal(allowed, 20, '20% of 50 = 10, plus 1/s × 10 s = 10');
    assert.deepEqual(budget.stats, { calls: 50, retries: 20, denied: 1 });
  });

  it('forgets calls and retries once the window has passed them: bucket boundaries', () => {
    const clock = new ManualClock();
    const budget = new RetryBudget({ percent: 10, minPerSecond: 0, windowMs: 1_000, clock }); // 100 ms buckets
    for (let i = 0; i < 10; i++) budget.recordCall(); // bucket 0
    assert.equal(budget.tryRetry(), true);
    assert.equal(budget.tryRetry(), false);
    clock.advance(999);
    assert.equal(budget.tryRetry(), false, 'still the same window');
    clock.advance(1);
    assert.deepEqual(budget.stats, { calls: 0, retries: 0, denied: 2 });
    assert.equal(budget.tryRetry(), false, 'no calls, no budget');
  });

  it('backoff: full jitter under an exponential cap', () => {
    const o = { baseMs: 10, maxMs: 100 };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, o, () => 0.999)),
      [9.99, 19.98, 39.96, 79.92, 99.9, 99.9],
    );
    assert.equal(
      backoffDelay(3, o, () => 0),
      0,
    );
  });
});
