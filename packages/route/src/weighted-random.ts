import type { Instance, RandomSource } from '@meshlet/core';
import type { Endpoint } from './endpoint.js';
import type { LoadBalancer } from './load-balancer.js';

/**
 * Random choice in proportion to weight, O(1) per pick through Vose's alias table
 * (built lazily, once per candidate list). Equal weights skip the table.
 */
export class WeightedRandom implements LoadBalancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #random: RandomSource;
  readonly #uniform: boolean;
  #prob: Float64Array | undefined;
  #alias: Uint32Array | undefined;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.#endpoints = endpoints;
    this.#random = random;
    this.#uniform = endpoints.every((e) => e.weight === endpoints[0]?.weight);
  }

  pick(): Instance {
    const n = this.#endpoints.length;
    const x = this.#random() * n;
    let i = Math.floor(x);
    if (!this.#uniform) {
      if (this.#prob === undefined) this.#build();
      // The fractional part of x is a second uniform draw: one call to random per pick.
      if (x - i >= ((this.#prob as Float64Array)[i] as number)) i = (this.#alias as Uint32Array)[i] as number;
    }
    return (this.#endpoints[i] as Endpoint).instance;
  }

  #build(): void {
    const n = this.#endpoints.length;
    const total = this.#endpoints.reduce((s, e) => s + e.weight, 0);
    const scaled = this.#endpoints.map((e) => (e.weight * n) / total);
    const prob = new Float64Array(n).fill(1);
    const alias = Uint32Array.from({ length: n }, (_, i) => i);
    const small: number[] = [];
    const large: number[] = [];
    scaled.forEach((p, i) => {
      (p < 1 ? small : large).push(i);
    });
    while (small.length > 0 && large.length > 0) {
      const s = small.pop() as number;
      const l = large.pop() as number;
      prob[s] = scaled[s] as number;
      alias[s] = l;
      scaled[l] = (scaled[l] as number) + (scaled[s] as number) - 1;
      (scaled[l] < 1 ? small : large).push(l);
    }
    this.#prob = prob;
    this.#alias = alias;
  }
}
