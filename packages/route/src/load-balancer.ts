import type { Instance, TagLookup } from '@meshlet/core';

/**
 * Picks one instance out of a fixed, non-empty list of endpoints. A balancer is built for
 * one precomputed candidate list and thrown away when instances or rules change, so
 * `pick` never looks at the whole fleet.
 */
export interface LoadBalancer {
  pick(tags: TagLookup): Instance;
}
