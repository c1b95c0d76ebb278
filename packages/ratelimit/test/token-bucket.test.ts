import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, seededRandom } from '@meshlet/core';
import { TokenBuckets } from '../src/index.js';

describe('TokenBuckets', () => {
  it('follows a step table at explicit instants (10/s, burst 2)', () => {
    const clock = new ManualClock(0);
    const buckets = new TokenBuckets({ rate: 10, perMs: 1000, burst: 2, clock });
    // [instant ms, tokens asked, admitted, retry-after ms]
    const steps: [number, number, boolean, number][] = [
      [0, 1, true, 0],
      [0, 1, true, 0],
      [0, 1, false, 100],
      [100, 1, true, 0],
      [100, 2, false, 200],
      [250, 1, true, 0],
      [250, 1, false, 50],
      [300, 1, true, 0],
      [300, 1, false, 100],
      [1000, 2, true, 0],
      [1000, 3, false, Number.POSITIVE_INFINITY],
      [1050, 1, false, 50],
      [1100, 1, true, 0],
    ];
    for (const [i, [at, n, admitted, retry]] of steps.entries()) {
      clock.advance(at - clock.now());
      const got = buckets.tryAcquire('k', n);
      assert.equal(got.admitted, admitted, `step ${i} at ${at} ms`);
      if (retry === Number.POSITIVE_INFINITY) assert.equal(got.retryAfterMs, retry, `step ${i}`);
      else assert.ok(Math.abs(got.retryAfterMs - retry) < 1e-6, `step ${i}: retry ${got.retryAfterMs}, want ${retry}`);
    }
  });

  it('follows a step table with a per-minute rate and fractional periods (7/min, burst 3)', () => {
    const clock = new ManualClock(1_000_000);
    const buckets = new TokenBuckets({ rate: 7, perMs: 60_000, burst: 3, clock });
    const period = 60_000 / 7;
    const steps: [number, boolean][] = [
      [0, true],
      [0, true],
      [0, true],
      [0, false],
      [period - 1, false],
      [period, true],
      [period, false],
      [3 * period, true],
      [3 * period, true],
      [3 * period, false],
    ];
    for (const [i, [at, admitted]] of steps.entries()) {
      clock.advance(1_000_000 + at - clock.now());
      assert.equal(buckets.tryAcquire('k').admitted, admitted, `step ${i} at +${at} ms`);
    }
  });

  it('admits exactly burst of N concurrent acquires at one instant', async () => {
    const clock = new ManualClock(5);
    const buckets = new TokenBuckets({ rate: 1, perMs: 1000, burst: 17, clock });
    const results = await Promise.all(Array.from({ length: 200 }, async () => buckets.tryAcquire('same').admitted));
    assert.equal(results.filter(Boolean).length, 17);
  });

  it('admits between 0.999 * ideal and ideal + 1 over a long run offered 10x the rate', () => {
    const clock = new ManualClock(0);
    const rate = 7; // per second: a period that is not a whole number of milliseconds
    const burst = 5;
    const buckets = new TokenBuckets({ rate, perMs: 1000, burst, clock });
    const random = seededRandom(42);
    const durationMs = 2_000_000;
    let admitted = 0;
    while (clock.now() < durationMs) {
      if (buckets.tryAcquire('k').admitted) admitted++;
      // Arrivals at random instants, ten times the rate on average.
      clock.advance(Math.min(random() * (2000 / (rate * 10)), durationMs - clock.now()));
    }
    const ideal = burst + (rate * durationMs) / 1000;
    assert.ok(admitted >= 0.999 * ideal && admitted <= ideal + 1, `admitted ${admitted}, ideal ${ideal}`);
  });

  it('keeps buckets apart by key', () => {
    const clock = new ManualClock(0);
    const buckets = new TokenBuckets({ rate: 1, burst: 1, clock });
    assert.equal(buckets.tryAcquire('a').admitted, true);
    assert.equal(buckets.tryAcquire('a').admitted, false);
    assert.equal(buckets.tryAcquire('b').admitted, true);
  });

  it('stays under maxKeys with a flood of keys, dropping refilled buckets first', () => {
    const clock = new ManualClock(0);
    const buckets = new TokenBuckets({ rate: 10, perMs: 1000, burst: 1, clock, maxKeys: 100 });
    for (let i = 0; i < 100; i++) buckets.tryAcquire(`old-${i}`);
    clock.advance(100); // every old bucket has refilled: dropping it forgives nothing
    for (let i = 0; i < 50; i++) buckets.tryAcquire(`new-${i}`);
    assert.ok(buckets.size <= 100);
    assert.equal(buckets.evictedEarly, 0);
    for (let i = 0; i < 50; i++) assert.equal(buckets.tryAcquire(`new-${i}`).admitted, false, 'recent buckets kept');
    for (let i = 0; i < 100_000; i++) buckets.tryAcquire(`flood-${i}`);
    assert.ok(buckets.size <= 100, `size ${buckets.size}`);
    assert.ok(buckets.evictedEarly > 0);
  });

  it('neither mints nor burns tokens when the clock steps back', () => {
    let now = 10_000;
    const buckets = new TokenBuckets({ rate: 1, burst: 1, clock: { now: () => now, wallNow: () => now, setTimeout: () => () => {} } });
    assert.equal(buckets.tryAcquire('k').admitted, true);
    now = 5_000;
    assert.equal(buckets.tryAcquire('k').admitted, false);
    now = 11_000;
    assert.equal(buckets.tryAcquire('k').admitted, true);
  });

  it('refuses bad options', () => {
    assert.throws(() => new TokenBuckets({ rate: -1, burst: 1 }), RangeError);
    assert.throws(() => new TokenBuckets({ rate: 1, burst: 0 }), RangeError);
    assert.throws(() => new TokenBuckets({ rate: 1, burst: 1.5 }), RangeError);
    assert.throws(() => new TokenBuckets({ rate: Number.NaN, burst: 1 }), RangeError);
  });
});
