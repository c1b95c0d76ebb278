import type { Instance, RandomSource } from '@meshlet/core';
import type { Endpoint } from './endpoint.js';
import type { LoadBalancer } from './load-balancer.js';

/**
 * Least outstanding requests by the power of two choices: draw two distinct candidates at
 * random and take the one with fewer calls in flight per unit of weight. O(1), and it
 * avoids the herd that "always the least loaded" causes when many clients see the same
 * counts. Counts come from `Router.callStarted`, so the caller must report every call.
 */
export class LeastRequests implements LoadBalancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #random: RandomSource;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.#endpoints = endpoints;
    this.#random = random;
  }

  pick(): Instance {
    const n = this.#endpoints.length;
    if (n === 1) return (this.#endpoints[0] as Endpoint).instance;
    const i = Math.floor(this.#random() * n);
    let j = Math.floor(this.#random() * (n - 1));
    if (j >= i) j++;
    const a = this.#endpoints[i] as Endpoint;
    const b = this.#endpoints[j] as Endpoint;
    // a.outstanding / a.weight <= b.outstanding / b.weight, without dividing.
    return a.load.outstanding * b.weight <= b.load.outstanding * a.weight ? a.instance : b.instance;
  }
}
