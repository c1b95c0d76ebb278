import type { Instance, RandomSource } from '@meshlet/core';
import type { Endpoint } from './endpoint.js';
import type { LoadBalancer } from './load-balancer.js';

/** Longest precomputed schedule; weights whose cycle is longer are scaled down to fit. */
export const MAX_SCHEDULE = 1 << 16;

/**
 * Smooth weighted round robin with O(1) picks. The schedule of one full cycle is computed
 * once (lazily, on the first pick) by earliest-deadline-first: the k-th turn of an
 * instance of weight w is due at (k - ½) / w. Over a cycle of Σw turns each instance gets
 * exactly its weight, and its turns are spread evenly (5:1:1 gives a a a b c a a, not
 * a a a a a b c) as with nginx's smooth WRR, whose order differs slightly (a a b a c a a).
 * The cursor starts at a random place so that many clients do not all begin on the same
 * instance.
 */
export class SmoothWeightedRoundRobin implements LoadBalancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #random: RandomSource;
  #schedule: Uint32Array | undefined;
  #next = 0;

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.#endpoints = endpoints;
    this.#random = random;
  }

  pick(): Instance {
    let schedule = this.#schedule;
    if (schedule === undefined) {
      schedule = buildSchedule(this.#endpoints.map((e) => e.weight));
      this.#schedule = schedule;
      this.#next = Math.floor(this.#random() * schedule.length);
    }
    const i = schedule[this.#next] as number;
    this.#next = this.#next + 1 === schedule.length ? 0 : this.#next + 1;
    return (this.#endpoints[i] as Endpoint).instance;
  }
}

/** One cycle of the smooth schedule for `weights`, as indexes into it. */
export function buildSchedule(weights: readonly number[], maxLength = MAX_SCHEDULE): Uint32Array {
  const n = weights.length;
  if (weights.every((w) => w === weights[0]) || n >= maxLength) return Uint32Array.from({ length: n }, (_, i) => i);
  const g = weights.reduce(gcd);
  let w = weights.map((x) => x / g);
  let total = w.reduce((a, b) => a + b, 0);
  if (total > maxLength) {
    const scale = maxLength / total;
    w = w.map((x) => Math.max(1, Math.round(x * scale)));
    total = w.reduce((a, b) => a + b, 0);
  }
  // Binary min-heap of instance indexes keyed by the due time of their next turn; ties by index.
  const due = Float64Array.from(w, (x) => 0.5 / x);
  const turns = new Uint32Array(n);
  const heap = Uint32Array.from({ length: n }, (_, i) => i);
  const less = (a: number, b: number) => (due[a] as number) < (due[b] as number) || (due[a] === due[b] && a < b);
  const down = (from: number) => {
    let i = from;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && less(heap[l] as number, heap[m] as number)) m = l;
      if (r < n && less(heap[r] as number, heap[m] as number)) m = r;
      if (m === i) return;
      const t = heap[i] as number;
      heap[i] = heap[m] as number;
      heap[m] = t;
      i = m;
    }
  };
  for (let i = (n >> 1) - 1; i >= 0; i--) down(i);
  const schedule = new Uint32Array(total);
  for (let t = 0; t < total; t++) {
    const top = heap[0] as number;
    schedule[t] = top;
    // From the turn count, not by adding 1/w up: sums would drift and break ties.
    turns[top] = (turns[top] as number) + 1;
    due[top] = ((turns[top] as number) + 0.5) / (w[top] as number);
    down(0);
  }
  return schedule;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
