import { type AnyMethod, type Clock, getTag, isAsyncMethod, methodDecorator, RuleValidationError, systemClock } from '@meshlet/core';
import type { Decision } from './rate-limiter.js';
import { isConcurrencyRule, parseRateLimitRule, type RateLimitRule, type RateUnit, scopeOf } from './ratelimit-rule.js';
import { RateLimitedError } from './rejection.js';
import { TokenBuckets } from './token-bucket.js';

/** A limit declared in code on a handler method; the same fields as a rule in the document. */
export interface RateLimitOptions {
  /** Named in the 429 body. Default: the method's name. */
  readonly name?: string;
  readonly rate: number;
  readonly unit?: RateUnit;
  /** A duration such as "10s"; instead of `unit`. */
  readonly per?: string;
  readonly burst?: number;
  /** Tags of the current request that split the limit (one bucket per value). */
  readonly by?: readonly string[];
  /** Default systemClock. */
  readonly clock?: Clock;
}

const declared: RateLimitRule[] = [];

/** Every limit declared with `@RateLimit` so far, for listing beside the document's rules. */
export function declaredRateLimits(): readonly RateLimitRule[] {
  return declared;
}

/**
 * Limits calls to a handler method: over the limit, the call throws (or, for an async
 * method, rejects with) RateLimitedError and the method does not run. Works as a TC39
 * standard decorator and as a legacy `experimentalDecorators` one. The limit is per
 * method, shared by every instance of the class; options are validated at decoration,
 * with the same errors as a rule document.
 *
 * ```ts
 * class Orders {
 *   @RateLimit({ rate: 10, unit: 'second', burst: 20, by: ['user-id'] })
 *   async create(req: Request) { ... }
 * }
 * ```
 */
export function RateLimit(options: RateLimitOptions) {
  return methodDecorator('@RateLimit', (method, name) => limit(method, name, options));
}

function limit<T extends AnyMethod>(method: T, methodName: string, options: RateLimitOptions): T {
  const { clock, ...raw } = options;
  const rule = parseRateLimitRule(
    { name: sanitize(options.name ?? methodName), ...raw, by: raw.by ? [...raw.by] : undefined },
    '@RateLimit',
  );
  // A decorated method cannot tell when the request it serves ends, so it cannot give a slot back.
  if (isConcurrencyRule(rule))
    throw new RuleValidationError('@RateLimit.concurrency', 'not supported by @RateLimit; use a concurrency rule in the document');
  declared.push(rule);
  const buckets = new TokenBuckets({ rate: rule.rate, perMs: rule.perMs, burst: rule.burst, clock: clock ?? systemClock });
  const refusing = { name: rule.name, scope: scopeOf(rule), rate: rule.rate, perMs: rule.perMs, burst: rule.burst, mode: rule.mode };
  const isAsync = isAsyncMethod(method);
  const limited = function (this: unknown, ...args: unknown[]) {
    const got = buckets.tryAcquire(keyOf(rule.by));
    if (!got.admitted) {
      const decision: Extract<Decision, { allowed: false }> = {
        allowed: false,
        rule: refusing,
        retryAfterSeconds: Math.max(1, Math.ceil(got.retryAfterMs / 1000)),
      };
      const err = new RateLimitedError(decision);
      if (isAsync) return Promise.reject(err);
      throw err;
    }
    return method.apply(this, args);
  };
  Object.defineProperty(limited, 'name', { value: method.name });
  return limited as T;
}

function keyOf(by: readonly string[]): string {
  if (by.length === 0) return '';
  // Values over the tag bound never reach the context (core drops them), so no check here.
  return by.map((t) => getTag(t) ?? '\u0000').join('\u0000');
}

function sanitize(name: string): string {
  return name.replace(/[^a-zA-Z0-9._-]/g, '_').slice(0, 63) || 'method';
}
