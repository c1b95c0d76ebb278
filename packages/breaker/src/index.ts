export {
  type AbortHook,
  AttemptAbort,
  type Deadline,
  DeadlineSweep,
  LOOP_LAG_GAP_MS,
  LOOP_LAG_QUIET_MS,
  LOOP_LAG_SPAN_MS,
  LOOP_LATE_MS,
  runTimed,
  TimedAbort,
} from './attempt-signal.js';
export { type BackoffOptions, backoffDelay } from './backoff.js';
export { BodyVerdict } from './body-verdict.js';
export { Breaker, type BreakerGroupOptions, type BreakerSnapshot, REJECTED } from './breaker.js';
export {
  BreakerEvents,
  type BreakerId,
  type BreakerLevel,
  type CircuitState,
  type CloseEvent,
  type HalfOpenEvent,
  type OpenEvent,
  type TripReason,
} from './breaker-events.js';
export { type BreakerPolicy, breakerPolicy, defaultBreakerPolicy } from './breaker-policy.js';
export {
  type ApiRule,
  BREAKER_SECTION_MODES,
  type BreakerRules,
  breakerRule,
  breakerRuleKind,
  defaultRetryPolicy,
  HTTP_METHODS,
  type InstanceRule,
  ISOLATION_LEVELS,
  type IsolationLevel,
  MAX_FALLBACK_BODY,
  parseBreakerRules,
  type RetryPolicy,
  type ServiceRule,
  type StaticFallback,
} from './breaker-rule.js';
export { type CallDefaults, defaultCallDefaults, defaultOutlierPolicy } from './call-defaults.js';
export {
  type AttemptRecord,
  type BreakerShadowStats,
  CallExecutor,
  type CallExecutorOptions,
  type CallResult,
  type Fallback,
  type GovernedCall,
  IDEMPOTENT_METHODS,
} from './call-executor.js';
export { type CircuitOpenDetails, CircuitOpenError } from './circuit-open-error.js';
export {
  type AsyncMethodDecorator,
  CircuitBreaker,
  type CircuitBreakerOptions,
  Retry,
  type RetryOptions,
  Timeout,
  type TimeoutOptions,
} from './decorators.js';
export { defaultClassifier, type FailureClassifier, type StatusSpec, statusClassifier, type Verdict } from './failure-classifier.js';
export { HEDGE_MIN_SAMPLES, HedgeLostError, type HedgePolicy, Hedger, type HedgeStats, parseHedgePolicy } from './hedge.js';
export { InstanceBreakers, type InstanceBreakersOptions, ServiceInstanceBreakers } from './instance-breakers.js';
export { RetryBudget, type RetryBudgetOptions } from './retry-budget.js';
export type { RetryCountsSnapshot, RetryReason } from './retry-counts.js';
export { markStaleConnection, type SendFailure, sendFailureOf, staleRepeated } from './send-failure.js';
export { CountWindow, createWindow, type SlidingWindow, TimeWindow, type WindowSpec } from './sliding-window.js';
export { TimeoutError } from './timeout-error.js';
export { TrackedAttempt, TrackedCall } from './tracked-call.js';
