export { Bulkhead, BulkheadFullError, type BulkheadOptions, Bulkheads, type Release } from './bulkhead.js';
export { ConcurrencySlots } from './concurrency-slots.js';
export { type PathMatcher, parsePathTemplate } from './path-matcher.js';
export { declaredRateLimits, RateLimit, type RateLimitOptions } from './rate-limit-decorator.js';
export {
  ALLOWED,
  CONCURRENCY_RETRY_AFTER_MS,
  type Decision,
  type LimitedRequest,
  RateLimiter,
  type RateLimiterOptions,
  type RateLimiterStats,
  type RefusingBucketRule,
  type RefusingConcurrencyRule,
  type RefusingRule,
  type RuleSource,
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
  ratelimitRules,
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
export { describeLimit, RateLimitedError, type Rejection, type RejectionBody, rejection } from './rejection.js';
export { type Acquired, type TokenBucketOptions, TokenBuckets } from './token-bucket.js';
