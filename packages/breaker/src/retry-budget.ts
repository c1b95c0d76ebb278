import { type Clock, systemClock } from '@meshlet/core';

export interface RetryBudgetOptions {
  /** Retries may be at most this percent of the calls in the window. */
  readonly percent: number;
  /** …plus this many per second, so that a quiet service can still retry. */
  readonly minPerSecond: number;
  readonly windowMs: number;
  readonly clock?: Clock;
}

const BUCKETS = 10;

/**
 * Finagle's retry budget: retries may be at most `percent` of the calls of the last
 * `windowMs`, plus `minPerSecond`. When an upstream is down every call fails; without a
 * budget each would be sent 1 + maxRetries times and the retries would multiply the
 * outage. Buckets advance lazily from the clock.
 */
export class RetryBudget {
  readonly #percent: number;
  readonly #floor: number;
  readonly #width: number;
  readonly #clock: Clock;
  /** Per bucket: calls, retries. */
  readonly #counts = new Uint32Array(BUCKETS * 2);
  #head = -1;
  #calls = 0;
  #retries = 0;
  #denied = 0;

  constructor(options: RetryBudgetOptions) {
    this.#percent = options.percent;
    this.#floor = (options.minPerSecond * options.windowMs) / 1000;
    this.#width = options.windowMs / BUCKETS;
    this.#clock = options.clock ?? systemClock;
  }

  /** Counts a first attempt; `now`, when the caller has read the clock already. */
  recordCall(now?: number): void {
    const o = this.#bucket(now ?? this.#clock.now());
    this.#counts[o] = (this.#counts[o] as number) + 1;
    this.#calls++;
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryRetry(): boolean {
    const o = this.#bucket(this.#clock.now());
    if ((this.#retries + 1) * 100 > this.#percent * this.#calls + this.#floor * 100) {
      this.#denied++;
      return false;
    }
    this.#counts[o + 1] = (this.#counts[o + 1] as number) + 1;
    this.#retries++;
    return true;
  }

  get stats(): { calls: number; retries: number; denied: number } {
    this.#bucket(this.#clock.now());
    return { calls: this.#calls, retries: this.#retries, denied: this.#denied };
  }

  #bucket(now: number): number {
    const index = Math.floor(now / this.#width);
    const head = this.#head;
    if (index > head) {
      const counts = this.#counts;
      if (head < 0 || index - head >= BUCKETS) {
        counts.fill(0);
        this.#calls = this.#retries = 0;
      } else {
        for (let b = head + 1; b <= index; b++) {
          const o = (b % BUCKETS) * 2;
          this.#calls -= counts[o] as number;
          this.#retries -= counts[o + 1] as number;
          counts[o] = counts[o + 1] = 0;
        }
      }
      this.#head = index;
    }
    return (this.#head % BUCKETS) * 2;
  }
}
