export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
}

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
 * Jitter"): before retry n (from 1) wait random() * min(maxMs, baseMs * 2^(n-1)). Full
 * jitter spreads the retries of many callers that failed together.
 */
export function backoffDelay(retry: number, options: BackoffOptions, random: () => number): number {
  const cap = Math.min(options.maxMs, options.baseMs * 2 ** (retry - 1));
  return random() * cap;
}

/** Waits on a clock; shared with the rest of Meshlet from core. */
