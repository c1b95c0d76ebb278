import { MeshletError } from '@meshlet/core';
import type { Decision, RefusingBucketRule, RefusingConcurrencyRule, RefusingRule } from './rate-limiter.js';

/** What a refused request gets back: status 429 (503 when the adaptive limit says so), its headers and a JSON body naming the rule. */
export interface Rejection {
  readonly status: 429 | 503;
  readonly headers: { readonly 'content-type': 'application/json'; readonly 'retry-after': string };
  readonly body: string;
}

/** The body of a 429, as JSON. */
export interface RejectionBody {
  /** `overloaded` when the adaptive concurrency limit refused. */
  readonly error: 'rate_limited' | 'overloaded';
  readonly code: typeof RateLimitedError.code | typeof OVERLOADED_CODE;
  readonly service: string;
  readonly rule: string;
  readonly scope: RefusingRule['scope'];
  /** e.g. "10 per 1s, burst 20", or "2 in flight" for a concurrency rule. */
  readonly limit: string;
  readonly retryAfterSeconds: number;
  /** The request's traffic class, when the adaptive limit refused. */
  readonly class?: string;
  /**
   * `shared`: the rule's one bucket for requests without a usable value of its `by` tags
   * refused it (every such request counts against it), not a bucket of the caller's own.
   */
  readonly bucket?: 'shared';
}

/** Code of a refusal by the adaptive concurrency limit. */
export const OVERLOADED_CODE = 'MESHLET_OVERLOADED';

/** Builds the 429 response for a refused decision: `res.writeHead(r.status, r.headers).end(r.body)`. */
export function rejection(decision: Extract<Decision, { allowed: false }>, service: string): Rejection {
  const rule = decision.rule;
  const overload = 'status' in rule && rule.status !== undefined ? rule : undefined;
  const body: RejectionBody = {
    error: overload ? 'overloaded' : 'rate_limited',
    code: overload ? OVERLOADED_CODE : RateLimitedError.code,
    service,
    rule: rule.name,
    scope: rule.scope,
    limit: describeLimit(rule),
    retryAfterSeconds: decision.retryAfterSeconds,
    ...(overload?.class !== undefined ? { class: overload.class } : {}),
    ...(decision.bucket !== undefined ? { bucket: decision.bucket } : {}),
  };
  return {
    status: overload?.status ?? 429,
    headers: { 'content-type': 'application/json', 'retry-after': String(decision.retryAfterSeconds) },
    body: JSON.stringify(body),
  };
}

/** "10 per 1s, burst 20" for a token bucket, "2 in flight" for a concurrency rule. */
export function describeLimit(
  rule: Pick<RefusingBucketRule, 'rate' | 'perMs' | 'burst'> | Pick<RefusingConcurrencyRule, 'concurrency'>,
): string {
  if ('concurrency' in rule) return `${rule.concurrency} in flight`;
  const per =
    rule.perMs % 3_600_000 === 0
      ? `${rule.perMs / 3_600_000}h`
      : rule.perMs % 60_000 === 0
        ? `${rule.perMs / 60_000}m`
        : rule.perMs % 1000 === 0
          ? `${rule.perMs / 1000}s`
          : `${rule.perMs}ms`;
  return `${rule.rate} per ${per}, burst ${rule.burst}`;
}

/**
 * Thrown by a `@RateLimit` method over its limit. Inbound middleware turns it into the
 * same 429 as a rule refusal (`rejection(err.decision, service)`).
 */
export class RateLimitedError extends MeshletError {
  static readonly code = 'MESHLET_RATE_LIMITED';
  readonly decision: Extract<Decision, { allowed: false }>;

  constructor(decision: Extract<Decision, { allowed: false }>) {
    super(
      RateLimitedError.code,
      `rate limit "${decision.rule.name}" (${describeLimit(decision.rule)}) exceeded; retry after ${decision.retryAfterSeconds} s`,
    );
    this.decision = decision;
  }

  get retryAfterSeconds(): number {
    return this.decision.retryAfterSeconds;
  }
}
