import { type Clock, systemClock } from '@meshlet/core';

/** What one acquire got: admitted, or how long until `n` tokens will be there. */
export type Acquired = { readonly admitted: true; readonly retryAfterMs: 0 } | { readonly admitted: false; readonly retryAfterMs: number };

export interface TokenBucketOptions {
  /** Tokens added per `perMs`. */
  readonly rate: number;
  /** Refill window in milliseconds. Default 1000. */
  readonly perMs?: number;
  /** Bucket size; a new bucket starts full. */
  readonly burst: number;
  /** Default systemClock. */
  readonly clock?: Clock;
  /** Most buckets kept; past it, full (idle) buckets go first, then the oldest. Default 10 000. */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date, clock milliseconds. */
  at: number;
}

/**
 * Floating-point slack: 0.1 s at 10/s must give exactly one token, and repeated sums of
 * fractions may land a hair under. A millionth of a token is far below anything observable.
 */
const EPSILON = 1e-6;

export const ADMITTED: Acquired = Object.freeze({ admitted: true, retryAfterMs: 0 });

/**
 * Token buckets of one rate and size, one per key. Refill is lazy: a bucket is brought up
 * to date from the clock when it is asked, so there is no timer per bucket and the
 * answer is exact at any instant. Memory is bounded by `maxKeys`: a bucket that has
 * refilled to full is indistinguishable from a new one, so it is the first to go.
 */
export class TokenBuckets {
  readonly rate: number;
  readonly perMs: number;
  readonly burst: number;
  readonly maxKeys: number;
  readonly #perMs: number;
  readonly #clock: Clock;
  readonly #buckets = new Map<string, Bucket>();
  /** Buckets dropped to stay under maxKeys while not yet full (each one forgave some debt). */
  #evictedEarly = 0;

  constructor(options: TokenBucketOptions) {
    const { rate, burst } = options;
    const perMs = options.perMs ?? 1000;
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`rate must be a positive number (got ${rate})`);
    if (!(perMs > 0) || !Number.isFinite(perMs)) throw new RangeError(`perMs must be a positive number (got ${perMs})`);
    if (!Number.isInteger(burst) || burst < 1) throw new RangeError(`burst must be a whole number >= 1 (got ${burst})`);
    this.rate = rate;
    this.perMs = perMs;
    this.burst = burst;
    this.#perMs = rate / perMs;
    this.#clock = options.clock ?? systemClock;
    this.maxKeys = Math.max(1, options.maxKeys ?? 10_000);
  }

  /** Takes `n` tokens from `key`'s bucket if it has them; otherwise takes none and says when it will. */
  tryAcquire(key: string, n = 1): Acquired {
    const now = this.#clock.now();
    const bucket = this.#bucket(key, now);
    const tokens = this.#level(bucket, now);
    if (tokens + EPSILON >= n) {
      bucket.tokens = tokens - n;
      bucket.at = now;
      return ADMITTED;
    }
    return { admitted: false, retryAfterMs: this.waitMs(tokens, n) };
  }

  /** Tokens `key` holds now (burst for a key never seen). */
  available(key: string): number {
    const bucket = this.#buckets.get(key);
    return bucket ? this.#level(bucket, this.#clock.now()) : this.burst;
  }

  /**
   * Milliseconds until `key` holds `n` tokens; 0 when it does now. For a caller that
   * must check several buckets before taking from any.
   */
  wouldWait(key: string, n = 1): number {
    return this.waitMs(this.available(key), n);
  }

  /** Takes `n` tokens from `key` unconditionally (it may go negative: debt repaid by refill). */
  take(key: string, n = 1): void {
    const now = this.#clock.now();
    const bucket = this.#bucket(key, now);
    bucket.tokens = this.#level(bucket, now) - n;
    bucket.at = now;
  }

  /** Copies the levels of `other`'s buckets (same keys), capped at this burst; for rule reloads. */
  adopt(other: TokenBuckets): void {
    for (const [key, b] of other.#buckets) {
      if (this.#buckets.size >= this.maxKeys) break;
      this.#buckets.set(key, { tokens: Math.min(this.burst, b.tokens), at: b.at });
    }
  }

  /** Buckets held now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Buckets evicted before they had refilled: the price of the memory bound under key floods. */
  get evictedEarly(): number {
    return this.#evictedEarly;
  }

  waitMs(tokens: number, n: number): number {
    if (n > this.burst) return Number.POSITIVE_INFINITY;
    if (tokens + EPSILON >= n) return 0;
    return (n - tokens) / this.#perMs;
  }

  #level(bucket: Bucket, now: number): number {
    const elapsed = now - bucket.at;
    // A clock that steps back must not mint or burn tokens.
    if (elapsed <= 0) return bucket.tokens;
    const t = bucket.tokens + elapsed * this.#perMs;
    return t > this.burst ? this.burst : t;
  }

  #bucket(key: string, now: number): Bucket {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.maxKeys) this.#sweep(now);
      bucket = { tokens: this.burst, at: now };
      this.#buckets.set(key, bucket);
    }
    return bucket;
  }

  /**
   * Frees at least a tenth of the map so that sweeps are amortised O(1) per new key: full
   * buckets first (dropping them changes nothing), then the oldest-created ones.
   */
  #sweep(now: number): void {
    const target = Math.floor(this.maxKeys * 0.9);
    for (const [key, b] of this.#buckets) {
      if (this.#buckets.size <= target) return;
      if (this.#level(b, now) + EPSILON >= this.burst) this.#buckets.delete(key);
    }
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= target) return;
      this.#buckets.delete(key);
      this.#evictedEarly++;
    }
  }
}
