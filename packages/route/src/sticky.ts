import { FNV_OFFSET, finalize, fnv1a } from './consistent-hash.js';

/**
 * The hash state of a sticky rule's salt, made once when the table is built: the rule's
 * name, then ":", which a rule name cannot hold, so that no (name, value) pair hashes the
 * same string as another. Salting by name makes two rules split the same users independently.
 */
export function stickySalt(ruleName: string): number {
  return fnv1a(`${ruleName}:`, FNV_OFFSET);
}

/**
 * Where `value` (a request's sticky tag) falls in [0, 100) under a rule's salt: the same
 * point for the same value while the rule keeps its name, whatever its weights. Groups take
 * cumulative slices of [0, 100), so a group that grows keeps every value it had.
 */
export function stickyPoint(salt: number, value: string): number {
  return finalize(fnv1a(value, salt)) * (100 / 4294967296);
}
