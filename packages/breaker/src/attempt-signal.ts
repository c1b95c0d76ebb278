import type { Clock } from '@meshlet/core';
import type { FailureClassifier, Verdict } from './failure-classifier.js';
import { TimeoutError } from './timeout-error.js';

/**
 * Runs `fn` with a signal that aborts after `timeoutMs` or when `callerSignal` does. One
 * AbortController and one clock timer an attempt, nothing else: AbortSignal.any and
 * AbortSignal.timeout cost more and cannot run on an injected clock. The returned promise
 * rejects with a TimeoutError at the deadline even if `fn` ignores its signal.
 */
export function withTimeout<T>(
  clock: Clock,
  timeoutMs: number,
  callerSignal: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  service?: string,
): Promise<T> {
  if (callerSignal?.aborted) return Promise.reject(callerSignal.reason);
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = () => {
      settled = true;
      cancel();
      callerSignal?.removeEventListener('abort', onCallerAbort);
    };
    const onCallerAbort = () => {
      if (settled) return;
      finish();
      controller.abort(callerSignal?.reason);
      reject(callerSignal?.reason);
    };
    const cancel = clock.setTimeout(() => {
      if (settled) return;
      finish();
      const err = new TimeoutError(timeoutMs, service);
      controller.abort(err);
      reject(err);
    }, timeoutMs);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    let p: Promise<T>;
    try {
      p = fn(controller.signal);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => {
        if (settled) return;
        finish();
        resolve(v);
      },
      (err) => {
        if (settled) return;
        finish();
        reject(err);
      },
    );
  });
}

/**
 * A transport's own cancel (undici's dispatch `abort`), run when the attempt is aborted: a
 * function, or an object with `abortAttempt` (the transport's handler itself, so that no
 * closure is made per attempt).
 */
export type AbortHook = ((reason: unknown) => void) | { abortAttempt(reason: unknown): void };

function runHook(hook: AbortHook, reason: unknown): void {
  if (typeof hook === 'function') hook(reason);
  else hook.abortAttempt(reason);
}

/**
 * The abort of one attempt, without an AbortController unless someone asks for `signal`:
 * the executor aborts it at the attempt's deadline or when the caller's signal aborts,
 * and a transport that can cancel by itself (the mesh's undici dispatch) hooks its cancel
 * here with `onAbort` instead of listening on a signal. Reading `signal` makes the
 * AbortSignal then (aborted already if the attempt was), for clients that need one.
 */
export class AttemptAbort {
  #aborted = false;
  #reason: unknown;
  #hook: AbortHook | undefined;
  #controller: AbortController | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  /** An AbortSignal that follows this abort; made on first read. */
  get signal(): AbortSignal {
    let c = this.#controller;
    if (c === undefined) {
      c = new AbortController();
      this.#controller = c;
      if (this.#aborted) c.abort(this.#reason);
    }
    return c.signal;
  }

  /** Sets the one hook run at abort (replacing any before it); run at once if the attempt was aborted already. */
  onAbort(hook: AbortHook | undefined): void {
    this.#hook = hook;
    if (this.#aborted && hook !== undefined) runHook(hook, this.#reason);
  }

  /** Aborts the attempt: runs the hook, then aborts the signal if one was made. Once. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    if (this.#hook !== undefined) runHook(this.#hook, reason);
    this.#controller?.abort(reason);
  }
}

/** An entry of a DeadlineSweep: expired at `at` unless `done` was set first. */
export interface Deadline {
  readonly at: number;
  /** Set when the attempt settled (the sweep then drops it), or when it expired. */
  done: boolean;
  /**
   * `lateMs`: how long after `at` it expired (TimeoutError.lateMs); `loopLagging`: the loop
   * had been late at deadline timers for a while (LoopLag), not only now (TimeoutError.loopLagging).
   */
  expire(lateMs: number, loopLagging: boolean): void;
}

/**
 * A deadline timer that fires this late (ms) or later found the event loop held up (a
 * blocked loop, a stalled process): answers that came in meanwhile are still unread in the
 * socket buffers. Its expiry waits for them (DeadlineQueue), and a timeout acted on this
 * late is the loop's, not the upstream's (no breaker counts it: breakerVerdict; unless the
 * loop lags for good, when the service and API breakers do: callVerdict).
 */
export const LOOP_LATE_MS = 100;

/**
 * How long the loop must have been late at deadline timers (LOOP_LATE_MS or more, each
 * late fire within LOOP_LAG_GAP_MS of the one before, no on-time fire LOOP_LAG_QUIET_MS
 * after one) for a late timeout to count on the service and API breakers again: see LoopLag.
 */
export const LOOP_LAG_SPAN_MS = 1_000;

/** The longest gap between two late deadline timers that still makes them one spell of lag (LoopLag). */
export const LOOP_LAG_GAP_MS = 10_000;

/**
 * How long after a spell's last late deadline timer an on-time one (less than LOOP_LATE_MS
 * late) ends the spell: the loop was on time that long, so the next late fire is a new stall
 * (LoopLag).
 */
export const LOOP_LAG_QUIET_MS = 1_000;

/** A TimeoutError acted on LOOP_LATE_MS or more after its deadline: the loop was late, not (as far as anyone can tell) the instance. */
export const timedOutByLoop = (err: unknown): boolean => err instanceof TimeoutError && err.lateMs >= LOOP_LATE_MS;

/**
 * What an attempt's error says to an instance breaker (and its shadow): the classifier's
 * verdict, except that a timeout the loop was late for says nothing of the instance (the
 * process stalled or lags, not the instance), whether the loop lags for good or not: one
 * instance of many is no more to blame than the others. Only the breakers: such a timeout
 * is still a failure for the retry that follows it.
 */
export function breakerVerdict(classifier: FailureClassifier, err: unknown, callerAborted: boolean): Verdict {
  return timedOutByLoop(err) ? 'ignore' : classifier.error(err, callerAborted);
}

/**
 * What a call's error says to its service and API breakers (and their shadows): as
 * breakerVerdict, except that a late timeout counts again when the loop had been lagging
 * (TimeoutError.loopLagging). A one-off stall leaves these breakers alone; a process whose
 * loop is late all the time would otherwise never open its service breaker over a hung
 * upstream, every call of it timing out late and none counted.
 */
export function callVerdict(classifier: FailureClassifier, err: unknown, callerAborted: boolean): Verdict {
  return timedOutByLoop(err) && !(err as TimeoutError).loopLagging ? 'ignore' : classifier.error(err, callerAborted);
}

/**
 * Tells a one-off stall of the event loop from a loop that lags for good, from what the
 * deadline timers see (no timer or sampler of its own: the sweep's timers fire anyway while
 * attempts are in flight, and late ones matter only then). The loop is lagging when its
 * deadline timers have fired LOOP_LATE_MS or more late over LOOP_LAG_SPAN_MS or more, no two
 * late fires more than LOOP_LAG_GAP_MS apart, and no on-time fire LOOP_LAG_QUIET_MS or more
 * after the last late one. Why this rule: a stall (a 3 s sync task, a GC pause) makes every
 * timer due meanwhile fire late at one moment, the stall's end, so its spell of lateness
 * spans nothing; a loop that lags is late again at the next fires. An on-time fire soon
 * after a late one does not end a spell: in a loop whose turns take 150 ms, a timer fires
 * anywhere from 0 to 150 ms late, its late fires a few hundred ms apart (and the on-time
 * ones' timeouts count anyway). An on-time fire a quiet second after the last late one
 * does: the loop kept time meanwhile, so stalls that recur (400 ms every 4 s) are each a
 * one-off, never adding up to a spell. Two stalls read as lag only when no on-time fire a
 * second clear of the first comes between them (no attempt in flight meanwhile, or stalls
 * less than a second apart), and at most LOOP_LAG_GAP_MS apart. Per sweep (per executor),
 * on its clock.
 */
export class LoopLag {
  /** When the current spell of late fires began, and its last late fire. */
  #since = Number.NEGATIVE_INFINITY;
  #last = Number.NEGATIVE_INFINITY;

  /** A deadline timer fired at `now`, `lateMs` after it was due. */
  fired(now: number, lateMs: number): void {
    if (lateMs < LOOP_LATE_MS) {
      // On time a quiet second after the spell's last late fire: the spell is over.
      if (now - this.#last >= LOOP_LAG_QUIET_MS) this.#last = Number.NEGATIVE_INFINITY;
      return;
    }
    if (now - this.#last > LOOP_LAG_GAP_MS) this.#since = now;
    this.#last = now;
  }

  /** The loop has been late at deadline timers for LOOP_LAG_SPAN_MS or more, its last late fire within LOOP_LAG_GAP_MS of `now`. */
  lagging(now: number): boolean {
    return now - this.#last <= LOOP_LAG_GAP_MS && this.#last - this.#since >= LOOP_LAG_SPAN_MS;
  }
}

/**
 * Per-attempt timeouts without a timer per attempt: the deadlines of one timeout value
 * come in the order they expire (now + the same timeout, on a monotonic clock), so each
 * value keeps a FIFO and one timer armed for its oldest live deadline. An attempt that
 * settles only marks its entry done (O(1)); done entries at the head are dropped when
 * the next one is added or when the timer fires, so the queue holds about the attempts
 * in flight. The timer fires about once per timeout period under steady load. A value's
 * queue is dropped when its timer fires with nothing left to watch: a rule whose
 * timeoutMs changes often leaves no queue per value it ever had.
 */
export class DeadlineSweep {
  readonly #clock: Clock;
  readonly #queues = new Map<number, DeadlineQueue>();
  /** What every queue's timer saw of the loop's lateness. */
  readonly lag = new LoopLag();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Watches `deadline` (at = now + timeoutMs). */
  add(timeoutMs: number, deadline: Deadline): void {
    let q = this.#queues.get(timeoutMs);
    if (q === undefined) {
      const made = new DeadlineQueue(this.#clock, this.lag, () => {
        if (this.#queues.get(timeoutMs) === made) this.#queues.delete(timeoutMs);
      });
      q = made;
      this.#queues.set(timeoutMs, q);
    }
    q.push(deadline);
  }

  /** Entries held (live or done but not yet dropped), timers armed and queues kept (one per timeout value in use): for tests. */
  get stats(): { held: number; timers: number; queues: number } {
    let held = 0;
    let timers = 0;
    for (const q of this.#queues.values()) {
      held += q.held;
      if (q.armed) timers++;
    }
    return { held, timers, queues: this.#queues.size };
  }
}

class DeadlineQueue {
  readonly #clock: Clock;
  readonly #lag: LoopLag;
  /** When the armed timer is due (a clock reading), to tell how late it fired. */
  #due = 0;
  /** Called when the timer fired and nothing is left to watch: the sweep drops this queue. */
  readonly #drained: () => void;
  #items: (Deadline | undefined)[] = [];
  #head = 0;
  armed = false;
  #firing = false;
  /** The timer fired late and the expiry waits for one turn of the loop (see #fire). */
  #waited = false;

  constructor(clock: Clock, lag: LoopLag, drained: () => void) {
    this.#clock = clock;
    this.#lag = lag;
    this.#drained = drained;
  }

  get held(): number {
    return this.#items.length - this.#head;
  }

  push(d: Deadline): void {
    this.#dropDone();
    this.#items.push(d);
    if (!this.armed && !this.#firing) this.#arm(d.at);
  }

  #dropDone(): void {
    const items = this.#items;
    let h = this.#head;
    while (h < items.length && (items[h] as Deadline).done) items[h++] = undefined;
    if (h === items.length) {
      items.length = 0;
      h = 0;
    } else if (h > 64 && h * 2 > items.length) {
      this.#items = items.slice(h);
      h = 0;
    }
    this.#head = h;
  }

  #arm(at: number): void {
    this.armed = true;
    const now = this.#clock.now();
    const delay = Math.max(1, Math.ceil(at - now));
    this.#due = now + delay;
    this.#clock.setTimeout(this.#fire, delay);
  }

  readonly #fire = (): void => {
    const now = this.#clock.now();
    if (!this.#waited) {
      this.#lag.fired(now, now - this.#due);
      this.#dropDone();
      const first = this.#items[this.#head];
      if (first !== undefined && now - first.at >= LOOP_LATE_MS) {
        // The loop was held up past the deadline. This is the timers phase; the poll phase,
        // which reads the answers that came in meanwhile, comes after it, and the check
        // phase (setImmediate) after that: expire then, the attempts they answered settled.
        // A real immediate whatever the clock: it waits for the real loop's I/O (a
        // ManualClock fires on time, never this late). Still armed: a push arms nothing.
        // Ref'd: an unref'd immediate lets the poll phase block until the loop's next other
        // event (seconds, in a quiet process); this one holds the loop for one turn only.
        this.#waited = true;
        setImmediate(this.#fire);
        return;
      }
    }
    this.#waited = false;
    this.armed = false;
    this.#firing = true;
    const items = this.#items;
    const lagging = this.#lag.lagging(now);
    try {
      while (this.#head < items.length) {
        const d = items[this.#head] as Deadline;
        if (!d.done) {
          if (d.at > now) break;
          d.done = true;
          d.expire(now - d.at, lagging);
        }
        items[this.#head++] = undefined;
      }
    } finally {
      this.#firing = false;
      this.#dropDone();
      if (this.#head < this.#items.length) this.#arm((this.#items[this.#head] as Deadline).at);
      // Not armed and empty: a push would arm it again, but the sweep makes a new one instead.
      else this.#drained();
    }
  };
}

/** One attempt under runTimed: its deadline entry, and the caller's abort listener. */
class TimedAttempt<T> implements Deadline {
  readonly at: number;
  done = false;
  readonly #resolve: (v: T) => void;
  readonly #reject: (e: unknown) => void;
  readonly #abort: AttemptAbort;
  readonly #caller: AbortSignal | undefined;
  readonly #timeoutMs: number;
  readonly #service: string | undefined;
  readonly #settled: ((value: T | undefined, error: unknown) => void) | undefined;

  constructor(
    at: number,
    resolve: (v: T) => void,
    reject: (e: unknown) => void,
    abort: AttemptAbort,
    caller: AbortSignal | undefined,
    timeoutMs: number,
    service: string | undefined,
    settled: ((value: T | undefined, error: unknown) => void) | undefined,
  ) {
    this.at = at;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#abort = abort;
    this.#caller = caller;
    this.#timeoutMs = timeoutMs;
    this.#service = service;
    this.#settled = settled;
  }

  #finish(): void {
    this.done = true;
    this.#caller?.removeEventListener('abort', this);
  }

  expire(lateMs: number, loopLagging: boolean): void {
    // The sweep set `done` already.
    this.#caller?.removeEventListener('abort', this);
    const err = new TimeoutError(this.#timeoutMs, this.#service, lateMs, loopLagging);
    this.#abort.abort(err);
    this.#reject(err);
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    if (this.done) return;
    this.#finish();
    const reason = this.#caller?.reason;
    this.#abort.abort(reason);
    this.#reject(reason);
  }

  /**
   * `fn`'s promise settled: `settled` is told (even after the deadline or the caller's
   * abort: the attempt itself has settled only now), then the race ends if it had not.
   */
  settle(ok: boolean, v: unknown): void {
    const settled = this.#settled;
    if (settled !== undefined) {
      if (ok) settled(v as T, undefined);
      else settled(undefined, v);
    }
    if (this.done) return;
    this.#finish();
    if (ok) this.#resolve(v as T);
    else this.#reject(v);
  }
}

/**
 * withTimeout on a DeadlineSweep and an AttemptAbort: runs `fn` and rejects with a
 * TimeoutError at `timeoutMs` (aborting `abort` with it), or with the caller's reason when
 * `callerSignal` aborts, even if `fn` ignores the abort. No timer and no AbortController
 * per attempt; `fn` reads the abort from `abort` (its hook, or its signal when it needs one).
 * `now`, a clock reading the caller has just made, saves reading the clock again.
 * `settled`, when given, is told once `fn`'s promise settles, whenever that is (after the
 * deadline too), before the race ends: the attempt's own settle, for its observers. It must
 * not throw (the executor passes `tellSettled`, which drops a throw).
 */
export function runTimed<T>(
  sweep: DeadlineSweep,
  clock: Clock,
  timeoutMs: number,
  callerSignal: AbortSignal | undefined,
  abort: AttemptAbort,
  fn: () => Promise<T>,
  service?: string,
  now?: number,
  settled?: (value: T | undefined, error: unknown) => void,
): Promise<T> {
  if (callerSignal?.aborted) return Promise.reject(callerSignal.reason);
  return new Promise<T>((resolve, reject) => {
    const t = new TimedAttempt<T>((now ?? clock.now()) + timeoutMs, resolve, reject, abort, callerSignal, timeoutMs, service, settled);
    sweep.add(timeoutMs, t);
    callerSignal?.addEventListener('abort', t, { once: true });
    let p: Promise<T>;
    try {
      p = fn();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => t.settle(true, v),
      (e: unknown) => t.settle(false, e),
    );
  });
}

/**
 * The abort of one timed attempt whose transport settles by itself when aborted (the mesh's
 * own undici dispatch): runTimed without its race. The attempt's promise is awaited as it
 * is — no wrapping promise, no closure — and this abort is its deadline entry and its
 * listener on the caller's signal: at the deadline it aborts with a TimeoutError, when the
 * caller's signal aborts it aborts with the caller's reason, and the transport's hook
 * rejects the attempt with that reason. `end()` when the attempt settled.
 */
export class TimedAbort extends AttemptAbort implements Deadline {
  readonly at: number;
  done = false;
  readonly #caller: AbortSignal | undefined;
  readonly #timeoutMs: number;
  readonly #service: string | undefined;

  /** Watches the attempt started at `now` (a clock reading): its deadline on `sweep`, and the caller's signal. */
  constructor(sweep: DeadlineSweep, now: number, timeoutMs: number, caller: AbortSignal | undefined, service: string | undefined) {
    super();
    this.at = now + timeoutMs;
    this.#caller = caller;
    this.#timeoutMs = timeoutMs;
    this.#service = service;
    if (caller?.aborted) {
      this.done = true;
      this.abort(caller.reason);
      return;
    }
    sweep.add(timeoutMs, this);
    caller?.addEventListener('abort', this, { once: true });
  }

  expire(lateMs: number, loopLagging: boolean): void {
    // The sweep set `done` already.
    this.#caller?.removeEventListener('abort', this);
    this.abort(new TimeoutError(this.#timeoutMs, this.#service, lateMs, loopLagging));
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    if (this.done) return;
    this.done = true;
    this.abort(this.#caller?.reason);
  }

  /** The attempt settled: the sweep drops the deadline, the caller's signal is let go. */
  end(): void {
    if (this.done) return;
    this.done = true;
    this.#caller?.removeEventListener('abort', this);
  }
}
