/**
 * Outcomes of recent calls: how many, how many failed, how many were slow. Two shapes, as
 * Resilience4j has them: the last N calls, or the calls of the last T milliseconds in
 * buckets. Both are plain typed arrays with running totals, advanced lazily from the time
 * the caller passes in: no timer, so 10 000 of them cost memory only.
 */
export interface SlidingWindow {
  record(now: number, failed: boolean, slow: boolean): void;
  /**
   * A call counted as a success turned out to fail (its answer's body broke): one success
   * still in the window becomes a failure, the calls unchanged. Nothing when none is left.
   */
  amendFailure(now: number): void;
  /** Drops what has aged out by `now`; the totals below are then current. */
  advance(now: number): void;
  readonly calls: number;
  readonly failures: number;
  readonly slowCalls: number;
  reset(): void;
}

export type WindowSpec =
  | { readonly type: 'count'; readonly size: number }
  | { readonly type: 'time'; readonly ms: number; readonly buckets: number };

export function createWindow(spec: WindowSpec): SlidingWindow {
  return spec.type === 'count' ? new CountWindow(spec.size) : new TimeWindow(spec.ms, spec.buckets);
}

const FAILED = 1;
const SLOW = 2;
const FILLED = 4;

/** The last `size` calls. One byte a call: failed, slow and "slot used" bits. */
export class CountWindow implements SlidingWindow {
  readonly #slots: Uint8Array;
  #next = 0;
  calls = 0;
  failures = 0;
  slowCalls = 0;

  constructor(size: number) {
    this.#slots = new Uint8Array(size);
  }

  record(_now: number, failed: boolean, slow: boolean): void {
    const slots = this.#slots;
    const i = this.#next;
    const old = slots[i] as number;
    if (old & FILLED) {
      this.calls--;
      if (old & FAILED) this.failures--;
      if (old & SLOW) this.slowCalls--;
    }
    slots[i] = FILLED | (failed ? FAILED : 0) | (slow ? SLOW : 0);
    this.calls++;
    if (failed) this.failures++;
    if (slow) this.slowCalls++;
    this.#next = i + 1 === slots.length ? 0 : i + 1;
  }

  amendFailure(_now: number): void {
    // The newest success: most likely the call whose body broke, and the count is what matters.
    const slots = this.#slots;
    const n = slots.length;
    for (let k = 1; k <= n; k++) {
      const i = (this.#next - k + n) % n;
      const slot = slots[i] as number;
      if (!(slot & FILLED)) return;
      if (!(slot & FAILED)) {
        slots[i] = slot | FAILED;
        this.failures++;
        return;
      }
    }
  }

  advance(): void {}

  reset(): void {
    this.#slots.fill(0);
    this.#next = 0;
    this.calls = this.failures = this.slowCalls = 0;
  }
}

/**
 * Calls of the last `ms` milliseconds, in `buckets` buckets of `ms / buckets`. A call at
 * time t falls in bucket floor(t / width); a bucket leaves the window once `buckets`
 * newer ones have begun, so the window covers between ms - width and ms of history.
 */
export class TimeWindow implements SlidingWindow {
  readonly #width: number;
  /** Per bucket: calls, failures, slow calls. */
  readonly #counts: Uint32Array;
  readonly #n: number;
  /** Absolute index (floor(t / width)) of the newest bucket written; -1 before any. */
  #head = -1;
  calls = 0;
  failures = 0;
  slowCalls = 0;

  constructor(ms: number, buckets: number) {
    this.#n = buckets;
    this.#width = ms / buckets;
    this.#counts = new Uint32Array(buckets * 3);
  }

  advance(now: number): void {
    const index = Math.floor(now / this.#width);
    const head = this.#head;
    if (index <= head) return;
    this.#head = index;
    if (head < 0) return;
    const counts = this.#counts;
    const n = this.#n;
    if (index - head >= n) {
      if (this.calls !== 0) this.reset();
      this.#head = index;
      return;
    }
    // Clear the buckets that the clock moved past: they now hold calls older than the window.
    for (let b = head + 1; b <= index; b++) {
      const o = (b % n) * 3;
      this.calls -= counts[o] as number;
      this.failures -= counts[o + 1] as number;
      this.slowCalls -= counts[o + 2] as number;
      counts[o] = counts[o + 1] = counts[o + 2] = 0;
    }
  }

  record(now: number, failed: boolean, slow: boolean): void {
    this.advance(now);
    const counts = this.#counts;
    const o = (this.#head % this.#n) * 3;
    counts[o] = (counts[o] as number) + 1;
    this.calls++;
    if (failed) {
      counts[o + 1] = (counts[o + 1] as number) + 1;
      this.failures++;
    }
    if (slow) {
      counts[o + 2] = (counts[o + 2] as number) + 1;
      this.slowCalls++;
    }
  }

  amendFailure(now: number): void {
    this.advance(now);
    // A success of the newest bucket holding one (the failures never outnumber the calls).
    const counts = this.#counts;
    const n = this.#n;
    for (let b = this.#head; b > this.#head - n && b >= 0; b--) {
      const o = (b % n) * 3;
      if ((counts[o] as number) > (counts[o + 1] as number)) {
        counts[o + 1] = (counts[o + 1] as number) + 1;
        this.failures++;
        return;
      }
    }
  }

  reset(): void {
    this.#counts.fill(0);
    this.#head = -1;
    this.calls = this.failures = this.slowCalls = 0;
  }
}
