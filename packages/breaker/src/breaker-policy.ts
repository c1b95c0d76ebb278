import type { WindowSpec } from './sliding-window.js';

/** When a breaker trips, how long it stays open and how it probes. Rates are percentages. */
export interface BreakerPolicy {
  readonly window: WindowSpec;
  /** Open when failures are at least this percent of the calls in the window (0 turns it off). */
  readonly failureRateThreshold: number;
  /** Rates are judged only once the window holds this many calls. */
  readonly minimumCalls: number;
  /** Open after this many failures in a row, whatever the window says (0 turns it off). */
  readonly consecutiveFailures: number;
  /** A call that takes longer than this (ms) is slow (0 turns slow-call tracking off). */
  readonly slowCallThresholdMs: number;
  /** Open when slow calls are at least this percent of the calls in the window (0 turns it off). */
  readonly slowCallRateThreshold: number;
  /** How long an open breaker rejects before it lets probes through (ms). */
  readonly sleepWindowMs: number;
  /**
   * When above `sleepWindowMs`, the sleep grows with repeated trips, as Envoy's ejection
   * time does: `sleepWindowMs` times the number of trips in a row, capped here. The count
   * drops by one per `sleepWindowMs` spent closed. Absent or not above `sleepWindowMs`:
   * every sleep is `sleepWindowMs`.
   */
  readonly maxSleepWindowMs?: number;
  /** Calls let through while half-open; all must succeed to close. */
  readonly probes: number;
}

/**
 * Defaults close to Envoy's outlier detection and TSF's breaker: 5 failures in a row or half
 * the calls of the last 10 s (at least 10 of them), 30 s asleep, 3 probes.
 */
export const defaultBreakerPolicy: BreakerPolicy = {
  window: { type: 'time', ms: 10_000, buckets: 10 },
  failureRateThreshold: 50,
  minimumCalls: 10,
  consecutiveFailures: 5,
  slowCallThresholdMs: 0,
  slowCallRateThreshold: 0,
  sleepWindowMs: 30_000,
  probes: 3,
};

export function breakerPolicy(overrides: Partial<BreakerPolicy> = {}): BreakerPolicy {
  return { ...defaultBreakerPolicy, ...overrides };
}
