import type { Instance, RandomSource } from '@meshlet/core';
import type { Endpoint } from './endpoint.js';
import type { LoadBalancer } from './load-balancer.js';

/**
 * Least outstanding requests per unit of weight, by the power of two choices: two distinct
 * candidates drawn in proportion to weight (the second from the others), and the call
 * goes to the first unless the second, with this call added, would still carry no more
 * calls in flight per unit of weight than the first carries now:
 * `(b.outstanding + 1) / b.weight <= a.outstanding / a.weight`.
 *
 * - Nothing in flight (sequential calls, low load): the first always stays, and it was
 *   drawn by weight, so picks follow weight exactly in expectation; warm-up and `weight`
 *   hold as under round robin.
 * - Equal weights: the test is `b.outstanding < a.outstanding`, classic P2C, ties to the
 *   first draw.
 * - A slow or hung instance keeps its calls in flight and is passed over whenever the other
 *   candidate has fewer per unit of weight; once it holds more than every other instance
 *   (per weight) it gets no new call at all.
 *
 * Not Envoy's rule for unequal weights (an EDF schedule on weight / (active + 1)^bias),
 * under which a hung instance's share only falls as 1/(k + 1) and it keeps receiving
 * about √N of N calls; nor "lower (outstanding + 1) / weight" between the two, which with
 * nothing in flight always takes the heavier, starving an instance warming up at weight 1.
 *
 * O(1) with equal weights; O(log n) otherwise, by binary search in running sums of weight
 * built once per candidate list. Counts come from `Router.inFlight` (or `callStarted`),
 * so every attempt must be reported.
 */
export class LeastRequests implements LoadBalancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #random: RandomSource;
  /** Running sums of weight, `sums[i]` = weights of 0…i; undefined when all weights are equal. */
  readonly #sums: Float64Array | undefined;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.#endpoints = endpoints;
    this.#random = random;
    const first = endpoints[0]?.weight;
    if (endpoints.every((e) => e.weight === first)) return;
    const sums = new Float64Array(endpoints.length);
    let total = 0;
    endpoints.forEach((e, i) => {
      total += e.weight;
      sums[i] = total;
    });
    this.#sums = sums;
  }

  pick(): Instance {
    const endpoints = this.#endpoints;
    const n = endpoints.length;
    if (n === 1) return (endpoints[0] as Endpoint).instance;
    const sums = this.#sums;
    let i: number;
    let j: number;
    if (sums === undefined) {
      i = Math.floor(this.#random() * n);
      j = Math.floor(this.#random() * (n - 1));
      if (j >= i) j++;
    } else {
      const total = sums[n - 1] as number;
      i = firstAbove(sums, this.#random() * total);
      // The second from the others: a point in the total less the first's share, stepped
      // over that share. `sums[i]` was computed as start + weight, so x + weight lands at
      // or past it (rounding is monotonic) and never on i.
      const weight = (endpoints[i] as Endpoint).weight;
      const start = i === 0 ? 0 : (sums[i - 1] as number);
      let x = this.#random() * (total - weight);
      if (x >= start) x += weight;
      j = firstAbove(sums, x);
    }
    const a = endpoints[i] as Endpoint;
    const b = endpoints[j] as Endpoint;
    // (b.outstanding + 1) / b.weight <= a.outstanding / a.weight, without dividing.
    return (b.load.outstanding + 1) * a.weight <= a.load.outstanding * b.weight ? b.instance : a.instance;
  }
}

/** The first index whose running sum is above `x`; the last index when none is (rounding at the top). */
function firstAbove(sums: Float64Array, x: number): number {
  let lo = 0;
  let hi = sums.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sums[mid] as number) > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
