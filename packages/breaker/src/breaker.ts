import { type Clock, systemClock } from '@meshlet/core';
import { BreakerEvents, type BreakerId, type CircuitState, type TripReason } from './breaker-events.js';
import type { BreakerPolicy } from './breaker-policy.js';
import { createWindow, type SlidingWindow } from './sliding-window.js';

/** What `tryAcquire` returns when the breaker rejects the call. */
export const REJECTED = -1;

/** Settings shared by a group of breakers (one object, not one per breaker). */
export interface BreakerGroupOptions {
  readonly clock?: Clock;
  readonly events?: BreakerEvents;
  /**
   * Asked before a closed breaker opens; false keeps it closed (and counted in
   * `vetoedTrips`). Instance breakers use it so that they never eject too many instances.
   */
  readonly mayOpen?: (breaker: Breaker) => boolean;
  /** Told after every transition, before the events fire. */
  readonly onTransition?: (breaker: Breaker, from: CircuitState, to: CircuitState) => void;
}

/** State and counts for a dashboard. Rates are percentages of the calls in the window. */
export interface BreakerSnapshot {
  readonly breaker: BreakerId;
  readonly state: CircuitState;
  readonly calls: number;
  readonly failures: number;
  readonly slowCalls: number;
  readonly failureRate: number;
  readonly slowCallRate: number;
  readonly consecutiveFailures: number;
  /** While open: clock time from which probes go through. */
  readonly retryAt?: number;
  readonly probesInFlight: number;
  readonly probesSucceeded: number;
  /** Calls rejected since the breaker was made. */
  readonly rejected: number;
  readonly opened: number;
  readonly vetoedTrips: number;
}

/**
 * A circuit breaker with no timer. Time is read from the clock when a call comes: an open
 * breaker turns half-open on the first `tryAcquire` after its sleep window, and a time
 * window drops old buckets when it is next touched. So a breaker costs a few hundred bytes
 * and nothing while idle, which is what 10 000 instance breakers need.
 *
 * Use: `const permit = b.tryAcquire(); if (permit === REJECTED) …; b.record(permit, failed, ms)`
 * (or `b.release(permit)` when the outcome says nothing about the upstream, e.g. the caller
 * aborted). A permit carries the breaker's epoch, so the outcome of a call that started
 * before a transition does not count in the new state: only probes decide a half-open
 * breaker.
 */
export class Breaker {
  readonly id: BreakerId;
  readonly policy: BreakerPolicy;
  readonly #group: BreakerGroupOptions;
  readonly #clock: Clock;
  readonly #window: SlidingWindow;
  #state: CircuitState = 'closed';
  #epoch = 0;
  #consecutive = 0;
  #retryAt = 0;
  #probesStarted = 0;
  #probesSucceeded = 0;
  #rejected = 0;
  #opened = 0;
  #vetoed = 0;
  /** Trips in a row, for a growing sleep; see BreakerPolicy.maxSleepWindowMs. */
  #streak = 0;
  #closedAt = 0;
  /** While half-open: when the last probe permit was taken (the probes' deadline runs from it). */
  #lastProbeAt = 0;
  #events: BreakerEvents | undefined;

  constructor(id: BreakerId, policy: BreakerPolicy, group: BreakerGroupOptions = {}) {
    this.id = id;
    this.policy = policy;
    this.#group = group;
    this.#clock = group.clock ?? systemClock;
    this.#events = group.events;
    this.#window = createWindow(policy.window);
  }

  /** Transition events; shared with the group when the group gave an events object. */
  get events(): BreakerEvents {
    this.#events ??= new BreakerEvents();
    return this.#events;
  }
  get onOpen() {
    return this.events.onOpen;
  }
  get onHalfOpen() {
    return this.events.onHalfOpen;
  }
  get onClose() {
    return this.events.onClose;
  }

  /** The state as of the last call; an open breaker whose sleep is over shows `open` until the next call. */
  get state(): CircuitState {
    return this.#state;
  }

  /** While open, the clock time from which probes go through. */
  get retryAt(): number {
    return this.#retryAt;
  }

  /** True when a call now would be rejected (routing leaves such an instance out). Reads only. */
  isRejecting(now = this.#clock.now()): boolean {
    if (this.#state === 'closed') return false;
    if (this.#state === 'open') return now < this.#retryAt;
    return this.#probesStarted >= this.policy.probes;
  }

  /**
   * When the breaker next changes on its own, as `wake` sees it: while open, the end of its
   * sleep; while half-open with every probe taken, the probes' deadline (a probe unsettled
   * one sleep window after the last was taken counts as failed: see `wake`); else never.
   */
  get wakeAt(): number {
    if (this.#state === 'open') return this.#retryAt;
    if (this.#state === 'half-open' && this.#probesStarted >= this.policy.probes) return this.#lastProbeAt + this.policy.sleepWindowMs;
    return Number.POSITIVE_INFINITY;
  }

  /**
   * Milliseconds until a rejected call could get through: the rest of the sleep window, or,
   * while the probes run, the rest of their deadline (never 0, which invites a client to
   * retry at once).
   */
  retryAfter(now = this.#clock.now()): number {
    if (this.#state === 'closed') return 0;
    return Math.max(0, this.wakeAt - now);
  }

  /** A permit (the epoch, >= 0) for one call, or REJECTED. */
  tryAcquire(): number {
    const state = this.#state;
    if (state === 'closed') return this.#epoch;
    if (state === 'open') {
      const now = this.#clock.now();
      if (now < this.#retryAt) {
        this.#rejected++;
        return REJECTED;
      }
      this.#toHalfOpen(now);
    }
    if (this.#probesStarted >= this.policy.probes) {
      this.wake();
      this.#rejected++;
      return REJECTED;
    }
    if (++this.#probesStarted === this.policy.probes) this.#lastProbeAt = this.#clock.now();
    return this.#epoch;
  }

  /**
   * What time alone changes, done when it is due (`wakeAt`): an open breaker whose sleep is
   * over turns half-open, without taking a probe; a half-open breaker whose probes are all
   * taken and one of them still unsettled a sleep window after the last was taken opens
   * again (`probe-timeout`): a probe that never answers (no deadline on the call) would
   * otherwise hold the breaker half-open, refusing every call, for as long as it hangs.
   * Lets a group (instance breakers) re-admit an instance to routing lazily. True when the
   * state changed.
   */
  wake(now = this.#clock.now()): boolean {
    if (now < this.wakeAt) return false;
    if (this.#state === 'open') this.#toHalfOpen(now);
    else this.#open(now, 'probe-timeout');
    return true;
  }

  /**
   * Records the outcome of a call made with `permit`; `now`, when the caller has read the
   * clock already. `bodyFollows`: a success whose body is still to come, and whose end will
   * be told (`bodyEnded`): it does not yet end a run of consecutive failures.
   */
  record(permit: number, failed: boolean, durationMs: number, now?: number, bodyFollows = false): void {
    if (permit !== this.#epoch) return; // started before the last transition: says nothing now
    const p = this.policy;
    const slow = p.slowCallThresholdMs > 0 && durationMs > p.slowCallThresholdMs;
    if (this.#state === 'half-open') {
      // A slow probe is a failed probe when slowness can trip the breaker at all.
      if (failed || (slow && p.slowCallRateThreshold > 0)) {
        this.#open(now ?? this.#clock.now(), 'probe-failed');
      } else if (!bodyFollows) {
        this.#probeSucceeded();
      }
      // A probe whose body is to come succeeds only once it is whole (bodyEnded): closing at
      // its headers moved the epoch, and a body broken after them was told to no one.
      return;
    }
    if (this.#state !== 'closed') return;
    const at = now ?? this.#clock.now();
    const w = this.#window;
    w.record(at, failed, slow);
    if (failed) this.#consecutive++;
    else if (!bodyFollows) this.#consecutive = 0;
    this.#tripIfDue(at);
  }

  /**
   * How the body of a success recorded with `bodyFollows` ended: whole (a success, which
   * ends a run of consecutive failures), or broken (a failure: the window's success is
   * amended to one; a probe's, the breaker opens again). Nothing after a transition.
   */
  bodyEnded(permit: number, failed: boolean, now?: number): void {
    if (permit !== this.#epoch) return;
    if (this.#state === 'half-open') {
      if (failed) this.#open(now ?? this.#clock.now(), 'probe-failed');
      else this.#probeSucceeded();
      return;
    }
    if (this.#state !== 'closed') return;
    if (!failed) {
      this.#consecutive = 0;
      return;
    }
    const at = now ?? this.#clock.now();
    this.#window.amendFailure(at);
    this.#consecutive++;
    this.#tripIfDue(at);
  }

  #probeSucceeded(): void {
    if (++this.#probesSucceeded >= this.policy.probes) this.#close();
  }

  #tripIfDue(at: number): void {
    const reason = this.#tripReason(this.#window);
    if (reason !== undefined) {
      if (this.#group.mayOpen && !this.#group.mayOpen(this)) {
        this.#vetoed++;
        return;
      }
      this.#open(at, reason);
    }
  }

  /** Gives a permit back without an outcome (the caller aborted, the call never left). */
  release(permit: number): void {
    if (permit === this.#epoch && this.#state === 'half-open' && this.#probesStarted > this.#probesSucceeded) this.#probesStarted--;
  }

  /** Back to closed with an empty window, e.g. by an operator. */
  reset(): void {
    if (this.#state !== 'closed') this.#close();
    else {
      this.#window.reset();
      this.#consecutive = 0;
    }
  }

  snapshot(): BreakerSnapshot {
    const w = this.#window;
    w.advance(this.#clock.now());
    return {
      breaker: this.id,
      state: this.#state,
      calls: w.calls,
      failures: w.failures,
      slowCalls: w.slowCalls,
      failureRate: w.calls ? (100 * w.failures) / w.calls : 0,
      slowCallRate: w.calls ? (100 * w.slowCalls) / w.calls : 0,
      consecutiveFailures: this.#consecutive,
      ...(this.#state === 'open' ? { retryAt: this.#retryAt } : {}),
      probesInFlight: this.#state === 'half-open' ? this.#probesStarted - this.#probesSucceeded : 0,
      probesSucceeded: this.#probesSucceeded,
      rejected: this.#rejected,
      opened: this.#opened,
      vetoedTrips: this.#vetoed,
    };
  }

  #tripReason(w: SlidingWindow): TripReason | undefined {
    const p = this.policy;
    if (p.consecutiveFailures > 0 && this.#consecutive >= p.consecutiveFailures) return 'consecutive-failures';
    if (w.calls < p.minimumCalls || w.calls === 0) return undefined;
    if (p.failureRateThreshold > 0 && w.failures * 100 >= p.failureRateThreshold * w.calls) return 'failure-rate';
    if (p.slowCallRateThreshold > 0 && p.slowCallThresholdMs > 0 && w.slowCalls * 100 >= p.slowCallRateThreshold * w.calls) {
      return 'slow-call-rate';
    }
    return undefined;
  }

  /** The sleep of the trip about to happen, counting it in the streak. */
  #nextSleep(now: number, from: CircuitState): number {
    const { sleepWindowMs: base, maxSleepWindowMs: max } = this.policy;
    if (max === undefined || max <= base) return base;
    // Healthy time forgives: one trip of the streak per base window spent closed.
    if (from === 'closed' && this.#streak > 0) this.#streak = Math.max(0, this.#streak - Math.floor((now - this.#closedAt) / base));
    this.#streak++;
    return Math.min(max, base * this.#streak);
  }

  #open(now: number, reason: TripReason): void {
    const from = this.#state;
    const w = this.#window;
    const sleep = this.#nextSleep(now, from);
    const event = {
      breaker: this.id,
      from,
      at: now,
      reason,
      failureRate: w.calls ? (100 * w.failures) / w.calls : 0,
      slowCallRate: w.calls ? (100 * w.slowCalls) / w.calls : 0,
      calls: w.calls,
      consecutiveFailures: this.#consecutive,
      retryAt: now + sleep,
    };
    this.#state = 'open';
    this.#epoch++;
    this.#opened++;
    this.#retryAt = event.retryAt;
    this.#probesStarted = this.#probesSucceeded = 0;
    this.#group.onTransition?.(this, from, 'open');
    this.#events?.onOpen.emit(event);
  }

  #toHalfOpen(now: number): void {
    this.#state = 'half-open';
    this.#epoch++;
    this.#probesStarted = this.#probesSucceeded = 0;
    this.#group.onTransition?.(this, 'open', 'half-open');
    this.#events?.onHalfOpen.emit({ breaker: this.id, from: 'open', at: now, probes: this.policy.probes });
  }

  #close(): void {
    const from = this.#state;
    const succeeded = this.#probesSucceeded;
    this.#state = 'closed';
    this.#closedAt = this.#clock.now();
    this.#epoch++;
    this.#window.reset();
    this.#consecutive = 0;
    this.#probesStarted = this.#probesSucceeded = 0;
    this.#group.onTransition?.(this, from, 'closed');
    this.#events?.onClose.emit({ breaker: this.id, from, at: this.#clock.now(), probesSucceeded: succeeded });
  }
}
