export {
  type AdaptiveAdmission,
  type AdaptiveClassStats,
  AdaptiveConcurrency,
  type AdaptiveConcurrencyOptions,
  type AdaptiveStats,
} from './adaptive-concurrency.js';
export {
  ADAPTIVE_BOUNDS,
  ADAPTIVE_DEFAULTS,
  AdaptiveLimit,
  type AdaptiveLimitOptions,
  type AdaptiveLimitSettings,
  type AdaptiveLimitState,
} from './adaptive-limit.js';
export {
  type AdaptiveSection,
  DEFAULT_ADAPTIVE_SECTION,
  DEFAULT_CLASS,
  MAX_CLASSES,
  OVERLOAD_STATUSES,
  type OverloadStatus,
  parseAdaptiveLimitSettings,
  parseAdaptiveSection,
  type TrafficClass,
} from './adaptive-rule.js';
export { Bulkhead, BulkheadFullError, type BulkheadOptions, Bulkheads, type Release } from './bulkhead.js';
export { ConcurrencySlots } from './concurrency-slots.js';
export { type EventLoopDelaySampler, eventLoopDelayMonitor, eventLoopUtilizationSampler } from './event-loop-delay.js';
export {
  MAX_OUTBOUND_LIMITS,
  OutboundAdaptiveLimit,
  OutboundAdaptiveLimits,
  type OutboundAdaptiveOptions,
  type OutboundAdaptiveStats,
  OutboundLimitError,
  type OutboundSlot,
  parseOutboundAdaptive,
} from './outbound-adaptive.js';
export { type PathMatcher, parsePathTemplate } from './path-matcher.js';
export { declaredRateLimits, RateLimit, type RateLimitOptions } from './rate-limit-decorator.js';
export {
  ADAPTIVE_RULE_NAME,
  ADAPTIVE_STATS_ROW,
  ALLOWED,
  CONCURRENCY_RETRY_AFTER_MS,
  type Decision,
  type LimitedRequest,
  OVERLOAD_LOG_INTERVAL_MS,
  RateLimiter,
  type RateLimiterOptions,
  type RateLimiterStats,
  REDIS_STATE_LOG_INTERVAL_MS,
  type RefusingBucketRule,
  type RefusingConcurrencyRule,
  type RefusingRule,
  type RuleLimitStats,
} from './rate-limiter.js';
export {
  type ApiMethod,
  type ApiScope,
  type ConcurrencyRule,
  isConcurrencyRule,
  MAX_CONCURRENCY,
  METHODS,
  MODES,
  parseDuration,
  parseRateLimitRule,
  parseRateLimitSection,
  type RateLimitMode,
  type RateLimitRule,
  type RateLimitSection,
  type RateUnit,
  type RuleScope,
  type RuleTarget,
  ratelimitRule,
  ratelimitRuleKind,
  scopeOf,
  type TokenBucketRule,
  tokensPerMs,
  UNITS,
} from './ratelimit-rule.js';
export { connectRedis, nodeRedisCommand, type RawCommandClient, type RedisConnection } from './redis-client.js';
export { connectRedisSentinel, parseSentinelUrl, type SentinelAddress, type SentinelConnectionOptions } from './redis-sentinel.js';
export {
  type RedisAcquired,
  type RedisBucketSpec,
  type RedisCommand,
  RedisTokenBuckets,
  type RedisTokenBucketsOptions,
  RedisUnavailableError,
  TOKEN_BUCKET_LUA,
  TOKEN_BUCKET_SHA,
} from './redis-token-buckets.js';
export { describeLimit, OVERLOADED_CODE, RateLimitedError, type Rejection, type RejectionBody, rejection } from './rejection.js';
export { type Acquired, type TokenBucketOptions, TokenBuckets } from './token-bucket.js';
