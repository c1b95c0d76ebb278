import type { Unsubscribe } from './registry.js';

/**
 * Which instances routing must leave out for now (open instance-level breakers, outlier
 * ejection). The router asks it; the breaker package implements it. Listeners are told
 * when the excluded set changes, so precomputed routing can be refreshed then and not
 * per call.
 */
export interface InstanceExclusion {
  isExcluded(instanceId: string): boolean;
  subscribe(listener: () => void): Unsubscribe;
}

/** Excludes nothing: the default until breakers are configured. */
export const noExclusion: InstanceExclusion = {
  isExcluded: () => false,
  subscribe: () => () => {},
};
