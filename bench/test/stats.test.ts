// The benchmarks' statistics: what their verdicts rest on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generationMedians } from '../client-process.js';
import { medianInterval } from '../harness.js';

/** P(Binomial(n, ½) < k), by direct sum of the binomial coefficients. */
function below(n: number, k: number): number {
  let c = 1;
  let sum = 0;
  for (let j = 0; j < k; j++) {
    sum += c;
    c = (c * (n - j)) / (j + 1);
  }
  return sum / 2 ** n;
}

describe('medianInterval', () => {
  it('gives no interval for five values or fewer at 95% (all on one side: 1/16 and more)', () => {
    assert.equal(medianInterval([1, 2, 3, 4, 5]), undefined);
    assert.equal(medianInterval([]), undefined);
  });

  const cases: [n: number, low: number, high: number][] = [
    [6, 1, 6],
    [8, 1, 8],
    [9, 2, 8],
    [12, 3, 10],
    [20, 6, 15],
  ];
  for (const [n, low, high] of cases)
    it(`of ${n} values, the ${low}th lowest to the ${high}th: the widest k with P(B < k) ≤ 2.5%`, () => {
      // Given shuffled, so that the order statistics are taken, not the positions.
      const values = Array.from({ length: n }, (_, i) => ((i * 7) % n) + 1);
      const got = medianInterval(values);
      assert.deepEqual([got?.low, got?.high], [low, high]);
      assert.ok(below(n, low) <= 0.025 && below(n, low + 1) > 0.025, 'k is the largest that keeps 95%');
      assert.ok(Math.abs((got?.coverage ?? 0) - (1 - 2 * below(n, low))) < 1e-12);
      assert.ok((got?.coverage ?? 0) >= 0.95);
    });

  it('holds the median of a known distribution at least as often as it says (10,000 draws of 12)', () => {
    // A seeded generator: the test's outcome does not depend on the run.
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let held = 0;
    const draws = 10_000;
    for (let d = 0; d < draws; d++) {
      // Exponential, median ln 2: skewed, as throughput ratios are.
      const values = Array.from({ length: 12 }, () => -Math.log(1 - random()));
      const i = medianInterval(values);
      if (i && i.low <= Math.LN2 && Math.LN2 <= i.high) held++;
    }
    assert.ok(held / draws > 0.95, `held ${held / draws}`);
    assert.ok(held / draws < 0.975, `held ${held / draws}: far wider than 96.1%`);
  });
});

describe('generationMedians', () => {
  it('takes the median within each set of rounds as isolatedRounds spreads them', () => {
    // 10 rounds over 4 sets: rounds [0,3), [3,5), [5,8), [8,10), as isolatedRounds rounds them.
    const values = [1, 9, 2, 100, 200, 5, 6, 7, 0.5, 0.7];
    assert.deepEqual(generationMedians(values, { rounds: 10, generations: 4 }), [2, 150, 6, 0.6]);
  });
});
