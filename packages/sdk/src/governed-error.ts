import { AuthDeniedError, forbidden } from '@meshlet/auth';
import { RateLimitedError, rejection } from '@meshlet/ratelimit';

/** The answer the inbound pipeline gives a refused request: status, headers and JSON body. */
export interface GovernedAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * The 429 or 403 for a governance error a handler threw (`@RateLimit`, `@Authorize`), the
 * same the pipeline answers for a service rule; undefined for any other error. For
 * frameworks that answer errors themselves (a NestJS exception filter).
 */
export function governedErrorAnswer(err: unknown, service: string): GovernedAnswer | undefined {
  if (err instanceof RateLimitedError) return rejection(err.decision, service);
  if (err instanceof AuthDeniedError) return forbidden(err.decision, service);
  return undefined;
}
