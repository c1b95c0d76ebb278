import { type Instance, MetaKey } from '@meshlet/core';

/** Calls in flight to one instance; shared by every pool the instance is in and kept across rebuilds. */
export interface LoadCounter {
  outstanding: number;
}

/** The router's LoadCounter: one per instance, kept across rebuilds; the in-flight observer counts on it. */
export class LoadCount implements LoadCounter {
  outstanding = 0;
}

/** An instance as load balancers see it: its weight and its calls in flight, read once per rebuild. */
export interface Endpoint {
  readonly instance: Instance;
  readonly weight: number;
  readonly load: LoadCounter;
}

export const DEFAULT_WEIGHT = 100;
export const MAX_WEIGHT = 10_000;

/**
 * The instance's weight from metadata `weight`: a whole number 1-10000, default 100.
 * Anything else reads as the default, so one bad registration cannot starve or flood an
 * instance; set `weight` to 1 to drain one almost entirely.
 */
export function instanceWeight(instance: Instance): number {
  const raw = instance.metadata[MetaKey.weight];
  if (raw === undefined) return DEFAULT_WEIGHT;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= MAX_WEIGHT ? n : DEFAULT_WEIGHT;
}
