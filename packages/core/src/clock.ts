/** Cancels a timer made by a Clock. */
export type CancelTimer = () => void;

/** How a timer treats the process. */
export interface TimerOptions {
  /**
   * Keep the process alive until the timer fires: for a wait that a caller is awaiting (a
   * retry's backoff), so that a script whose only pending work is that call does not exit
   * in the middle of it. Background timers (watches, heartbeats, probes) leave it off.
   */
  readonly keepAlive?: boolean;
}

/**
 * Time as a port. Limiters and breakers take a Clock so that tests run on a ManualClock
 * and are exact; production uses `systemClock`.
 *
 * Two readings: `now()` for intervals (deadlines, windows, durations), which a step of the
 * host's clock must not bend, and `wallNow()` for a time that leaves the process (a token's
 * issue and expiry, `registered-at`, a rule version's `at`, a span's start) or is compared
 * with one that came in, which other hosts read on their own wall clocks.
 */
export interface Clock {
  /**
   * Monotonic milliseconds, possibly fractional: for intervals only. The system clock's is
   * `performance.timeOrigin + performance.now()`, near the epoch at start but not after:
   * a step of the host's clock (NTP) or a suspend does not move it.
   */
  now(): number;
  /** Milliseconds since the epoch on the wall clock (`Date.now()`): it follows the host's steps. */
  wallNow(): number;
  /** Calls `fn` once after `ms` milliseconds. The timer does not keep the process alive unless asked to. */
  setTimeout(fn: () => void, ms: number, options?: TimerOptions): CancelTimer;
}

const origin = performance.timeOrigin;

/** Node's longest timer delay; a longer one fires after 1 ms (with a TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => origin + performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms, options) {
    // A longer wait is run in legs of at most MAX_TIMER_MS: whatever a caller computes (a
    // time a registry writer chose), it never becomes a 1 ms loop.
    let t: ReturnType<typeof setTimeout>;
    const arm = (left: number) => {
      t = left > MAX_TIMER_MS ? setTimeout(() => arm(left - MAX_TIMER_MS), MAX_TIMER_MS) : setTimeout(fn, left);
      if (options?.keepAlive !== true) t.unref();
    };
    arm(ms);
    return () => clearTimeout(t);
  },
};

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that moves only when told to. Timers fire in order of due time during `advance`.
 * Its wall time follows `now()` until `stepWall` moves it apart, as NTP steps a host's.
 */
export class ManualClock implements Clock {
  #now: number;
  /** wallNow() − now(). */
  #wallOffset = 0;
  #seq = 0;
  #timers: PendingTimer[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  wallNow(): number {
    return this.#now + this.#wallOffset;
  }

  /** Steps the wall clock by `ms` (negative: back), leaving `now()` and the timers where they are. */
  stepWall(ms: number): void {
    this.#wallOffset += ms;
  }

  setTimeout(fn: () => void, ms: number): CancelTimer {
    const timer: PendingTimer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = end;
  }

  /** Number of timers not yet fired. */
  get pendingTimers(): number {
    return this.#timers.length;
  }
}

/** Waits `ms` on `clock`; rejects with the signal's reason if it aborts first. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal, options?: TimerOptions): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      cancel();
      reject(signal?.reason);
    };
    const cancel = clock.setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      ms,
      options,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
