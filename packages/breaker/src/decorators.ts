import {
  type AsyncMethodDecorator,
  type Clock,
  methodDecorator as coreMethodDecorator,
  field,
  MeshletError,
  RuleValidationError,
  sleep,
  systemClock,
} from '@meshlet/core';
import { withTimeout } from './attempt-signal.js';
import { type BackoffOptions, backoffDelay } from './backoff.js';
import { Breaker, REJECTED } from './breaker.js';
import type { BreakerPolicy } from './breaker-policy.js';
import { parseBreakerPolicy, parseRetryCount } from './breaker-rule.js';
import { CircuitOpenError } from './circuit-open-error.js';
import type { RetryBudget } from './retry-budget.js';

/** Both decorator forms, typed for async methods (from core; re-exported for compatibility). */
export type { AsyncMethodDecorator };

/** A Meshlet method decorator typed for async methods. */
function methodDecorator(
  label: string,
  wrap: (method: (...args: unknown[]) => Promise<unknown>, name: string) => (...args: unknown[]) => Promise<unknown>,
): AsyncMethodDecorator {
  return coreMethodDecorator(`@${label}`, wrap) as AsyncMethodDecorator;
}

export interface CircuitBreakerOptions extends Partial<BreakerPolicy> {
  /** The name in events and errors; default the method name. */
  readonly name?: string;
  readonly clock?: Clock;
  /** A breaker to use, e.g. one shared by several methods or read by a dashboard. */
  readonly breaker?: Breaker;
  /** Which errors count against the breaker; default every error except an AbortError. */
  readonly isFailure?: (error: unknown) => boolean;
  /** Answers instead of throwing CircuitOpenError while the breaker rejects. */
  readonly fallback?: (error: CircuitOpenError, ...args: never[]) => unknown;
}

const notAbort = (err: unknown) => !(err instanceof Error && err.name === 'AbortError');

/**
 * `@CircuitBreaker({ consecutiveFailures: 3 })`: one breaker per decorated method (shared by
 * all instances of the class). A rejected call throws CircuitOpenError or returns the fallback.
 */
export function CircuitBreaker(options: CircuitBreakerOptions = {}): AsyncMethodDecorator {
  const {
    name: label,
    clock,
    breaker: given,
    isFailure = notAbort,
    fallback,
    ...fields
  } = field.object(options, '@CircuitBreaker') as CircuitBreakerOptions;
  // The policy checked as a breaker rule's, once, when the decorator is made: a bad value or
  // a misspelt field is a RuleValidationError naming it (as @RateLimit's), not a breaker that never opens.
  const policy = given === undefined ? parseBreakerPolicy(fields, '@CircuitBreaker') : undefined;
  if (given !== undefined && Object.keys(fields).length > 0)
    throw new RuleValidationError(`@CircuitBreaker.${Object.keys(fields)[0]}`, 'a given breaker has its own policy');
  if (label !== undefined) field.string(label, '@CircuitBreaker.name', 200);
  if (given !== undefined && !(given instanceof Breaker)) throw new RuleValidationError('@CircuitBreaker.breaker', 'must be a Breaker');
  if (typeof isFailure !== 'function') throw new RuleValidationError('@CircuitBreaker.isFailure', 'must be a function');
  if (fallback !== undefined && typeof fallback !== 'function')
    throw new RuleValidationError('@CircuitBreaker.fallback', 'must be a function');
  return methodDecorator('CircuitBreaker', (method, name) => {
    const c = clock ?? systemClock;
    const breaker = given ?? new Breaker({ level: 'service', service: label ?? name }, policy as BreakerPolicy, { clock: c });
    const fb = fallback as ((error: CircuitOpenError, ...args: unknown[]) => unknown) | undefined;
    return async function (this: unknown, ...args: unknown[]) {
      const permit = breaker.tryAcquire();
      if (permit === REJECTED) {
        const err = new CircuitOpenError(breaker.id.level, breaker.id.service, breaker.id.api, breaker.retryAfter());
        if (fb) return fb.call(this, err, ...args);
        throw err;
      }
      const t0 = c.now();
      try {
        const result = await method.apply(this, args);
        breaker.record(permit, false, c.now() - t0);
        return result;
      } catch (err) {
        if (isFailure(err)) breaker.record(permit, true, c.now() - t0);
        else breaker.release(permit);
        throw err;
      }
    };
  });
}

export interface TimeoutOptions {
  readonly ms: number;
  readonly clock?: Clock;
  /**
   * The index of the method's AbortSignal parameter. When given, the method gets a signal
   * there that aborts at the deadline (and when the caller's own signal there aborts), so it
   * can stop its work; otherwise the call is only abandoned.
   */
  readonly signalArg?: number;
}

/** `@Timeout(2000)`: rejects with TimeoutError (MESHLET_TIMEOUT) after the deadline. */
export function Timeout(options: number | TimeoutOptions): AsyncMethodDecorator {
  const o = typeof options === 'number' ? { ms: options } : options;
  if (!(o.ms > 0)) throw new MeshletError('MESHLET_BAD_OPTION', `@Timeout: ms must be above 0 (got ${o.ms})`);
  const clock = o.clock ?? systemClock;
  return methodDecorator('Timeout', (method, name) => {
    const at = o.signalArg;
    return function (this: unknown, ...args: unknown[]) {
      const callerSignal = at !== undefined && args[at] instanceof AbortSignal ? (args[at] as AbortSignal) : undefined;
      return withTimeout(
        clock,
        o.ms,
        callerSignal,
        (signal) => {
          if (at !== undefined) {
            const a = args.slice();
            while (a.length <= at) a.push(undefined);
            a[at] = signal;
            return method.apply(this, a);
          }
          return method.apply(this, args);
        },
        name,
      );
    };
  });
}

export interface RetryOptions {
  readonly maxRetries: number;
  readonly backoff?: BackoffOptions;
  /** Default: every error but CircuitOpenError (retrying an open circuit only waits) and AbortError. */
  readonly shouldRetry?: (error: unknown, retry: number) => boolean;
  readonly budget?: RetryBudget;
  readonly clock?: Clock;
  readonly random?: () => number;
}

const retryable = (err: unknown) => !(err instanceof CircuitOpenError) && notAbort(err);

/** `@Retry({ maxRetries: 2 })`: runs the method again after a failure, with exponential backoff and full jitter. */
const RETRY_KEYS = ['maxRetries', 'backoff', 'shouldRetry', 'budget', 'clock', 'random'] as const;

export function Retry(options: RetryOptions): AsyncMethodDecorator {
  const o = field.object(options, '@Retry');
  field.onlyKeys(o, '@Retry', RETRY_KEYS);
  if (o.maxRetries === undefined) throw new RuleValidationError('@Retry.maxRetries', 'must be given (0 to 10)');
  // Checked as a breaker rule's retry section: 0 to 10 retries, a backoff of 0 to 60 s.
  const { maxRetries, backoff } = parseRetryCount(o, '@Retry');
  const { shouldRetry = retryable, budget, clock = systemClock, random = Math.random } = options;
  for (const [key, fn] of [
    ['shouldRetry', shouldRetry],
    ['random', random],
  ] as const)
    if (typeof fn !== 'function') throw new RuleValidationError(`@Retry.${key}`, 'must be a function');
  return methodDecorator('Retry', (method) => {
    return async function (this: unknown, ...args: unknown[]) {
      budget?.recordCall();
      for (let retry = 0; ; retry++) {
        try {
          return await method.apply(this, args);
        } catch (err) {
          if (retry >= maxRetries || !shouldRetry(err, retry + 1) || (budget !== undefined && !budget.tryRetry())) throw err;
        }
        await sleep(clock, backoffDelay(retry + 1, backoff, random), undefined, { keepAlive: true });
      }
    };
  });
}
