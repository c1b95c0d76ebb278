import type { BreakerPolicy } from './breaker-policy.js';
import type { InstanceRule, RetryPolicy } from './breaker-rule.js';

/**
 * What protects a call when nobody wrote a rule. The README's "Safe defaults" table gives
 * the anchor of each value; a service's `breaker` section overrides each part it names.
 */
export interface CallDefaults {
  /**
   * Retries, each on an instance not tried yet, of an attempt that failed before anything
   * was sent (any method) or whose connection broke before an answer (idempotent methods
   * only), for services whose breaker section has no `retry`. Never for a body that can be
   * read once. 0 turns default retries off. Istio's default route retry policy: 2.
   */
  readonly retries: number;
  /** Caps default retries at a share of calls (Finagle's and Linkerd's retry budget). */
  readonly budget: RetryPolicy['budget'];
  /**
   * Passive outlier detection for services whose breaker section has no `instance` rule:
   * an instance with `consecutiveFailures` failures in a row (5xx, refused or broken
   * connections) leaves routing for a sleep that grows with repeats, at most
   * `maxEjectionPercent` of the instances at once (and at least one). False turns it off.
   */
  readonly outlierDetection: InstanceRule | false;
}

/**
 * Envoy's outlier detection defaults (`config.cluster.v3.OutlierDetection`):
 * `consecutive_5xx` 5 (5xx responses and connection failures alike), `base_ejection_time`
 * 30 s multiplied by the ejections in a row, `max_ejection_time` 300 s. Rate-based tripping
 * is off, as Envoy's success-rate detection needs 5 hosts with 100 requests each per 10 s
 * interval before it acts. One probe: Envoy returns an ejected host to rotation whole; here
 * the first call after the sleep probes it and the others wait for its outcome.
 */
export const defaultOutlierPolicy: BreakerPolicy = {
  window: { type: 'count', size: 1 },
  failureRateThreshold: 0,
  minimumCalls: 1,
  consecutiveFailures: 5,
  slowCallThresholdMs: 0,
  slowCallRateThreshold: 0,
  sleepWindowMs: 30_000,
  maxSleepWindowMs: 300_000,
  probes: 1,
};

export const defaultCallDefaults: CallDefaults = {
  retries: 2,
  budget: { percent: 20, minPerSecond: 10, windowMs: 10_000 },
  // Envoy's max_ejection_percent: 10%, and at least one host whatever the percentage.
  outlierDetection: { policy: defaultOutlierPolicy, maxEjectionPercent: 10 },
};
