import { type Clock, systemClock } from '@meshlet/core';

/**
 * The numbers of an adaptive concurrency limit. Every field has a default (see
 * `ADAPTIVE_DEFAULTS` and the package README's table for where each comes from).
 */
export interface AdaptiveLimitSettings {
  /** The limit before the first measurement. */
  readonly initialLimit: number;
  /** The floor: the limit never goes below it, and the minimum RTT is measured at it. */
  readonly minLimit: number;
  /** The ceiling. */
  readonly maxLimit: number;
  /**
   * How much slower than the minimum RTT a window may be before the limit shrinks: 1.5 lets
   * the window's RTT reach 1.5x the minimum (Envoy's `buffer` of 50%).
   */
  readonly tolerance: number;
  /** Length of a sampling window; the limit moves at most once per window. */
  readonly windowMs: number;
  /** Fewest samples a window needs before it moves the limit (a quiet window is extended). */
  readonly minWindowSamples: number;
  /** Which quantile of a window's RTTs stands for the window (0.5: the median). */
  readonly quantile: number;
  /** How often the minimum RTT is measured again, jittered by `probeJitter`. */
  readonly probeIntervalMs: number;
  /** Fraction of `probeIntervalMs` added at random, so that instances do not probe together. */
  readonly probeJitter: number;
  /** Requests whose RTTs make one measurement of the minimum RTT. */
  readonly probeSamples: number;
  /** Windows in a row at the floor after which the minimum RTT is measured again at once. */
  readonly stuckWindows: number;
}

/** Defaults, and where each comes from (Envoy's gradient controller unless said otherwise). */
export const ADAPTIVE_DEFAULTS: AdaptiveLimitSettings = Object.freeze({
  initialLimit: 20, // Netflix concurrency-limits' initial limit
  minLimit: 3, // Envoy's min_concurrency
  maxLimit: 1000, // Envoy's max_concurrency_limit
  tolerance: 1.5, // Netflix Gradient2's rttTolerance (Envoy's buffer defaults to 25%)
  windowMs: 100, // Envoy's concurrency_update_interval in its examples
  minWindowSamples: 10,
  quantile: 0.5, // Envoy's sample_aggregate_percentile
  probeIntervalMs: 30_000,
  probeJitter: 0.15, // Envoy's jitter
  probeSamples: 25, // Envoy's request_count is 50; half, so that a probe at the floor is short
  stuckWindows: 5, // Envoy re-measures after 5 windows at the minimum
});

/** The settings' names, from the defaults: one list for the parser, the admission and `definedOnly`. */
export const ADAPTIVE_LIMIT_KEYS = Object.freeze(Object.keys(ADAPTIVE_DEFAULTS) as (keyof AdaptiveLimitSettings)[]);

export interface AdaptiveLimitOptions extends Partial<AdaptiveLimitSettings> {
  readonly clock?: Clock;
  /** [0, 1) for the probe jitter; seed it in tests. */
  readonly random?: () => number;
  /**
   * Event-loop delay now, in ms (e.g. the mean of `monitorEventLoopDelay` since the last
   * read). Read once per window and added to the window's RTT: a request waits about that
   * long in the loop before Meshlet sees it, a wait the RTT measured from admission misses.
   */
  readonly eventLoopDelay?: () => number;
  /**
   * The fraction of time the event loop was busy since the previous read, in [0, 1] (see
   * `eventLoopUtilizationSampler`). Read when a probe of the minimum RTT starts and when it
   * ends: a probe during which the loop was busy more than `BUSY_LOOP` of the time measured
   * this process's own CPU queue, not the baseline, so it may lower the minimum RTT but not
   * raise it. Without it every probe counts.
   */
  readonly eventLoopUtilization?: () => number;
}

/** What the limit is doing, for the admin status and metrics. */
export interface AdaptiveLimitState {
  readonly limit: number;
  /** 'probe' while the minimum RTT is measured at the floor, else 'track'. */
  readonly mode: 'probe' | 'track';
  /** The minimum RTT in force, ms (0 before the first probe ends). */
  readonly minRttMs: number;
  /** The last window's RTT (its quantile plus event-loop delay), ms. */
  readonly sampleRttMs: number;
  /** The event-loop delay read for the last window, ms. */
  readonly eventLoopDelayMs: number;
  /** Probes of the minimum RTT finished. */
  readonly probes: number;
  /**
   * Probes that would have raised the minimum RTT but ran while the event loop was busy
   * (see `AdaptiveLimitOptions.eventLoopUtilization`), and so were not counted.
   */
  readonly busyProbes: number;
}

/** The most RTT samples one window keeps; more are counted, the first ones stand for the window. */
const WINDOW_CAPACITY = 256;
/**
 * Probes the minimum RTT is the least of. One probe taken while a neighbour had the CPU (or
 * a GC ran) would otherwise set the target for the next 30 s; with three, a real rise of the
 * baseline takes three probes to follow — each one 5 windows after the limit reached the floor,
 * about 25 round trips at the floor's 3 in flight (16 s measured after a step to 200 ms).
 */
const PROBE_HISTORY = 3;
/**
 * Event-loop utilization above which a probe may not raise the minimum RTT. At the floor
 * a CPU-bound handler still saturates the loop (3 requests of 8 ms CPU in 18 ms need 1.3
 * cores), and so does the work of refusing a spike: such a probe measures the queue in
 * the loop, which the limit exists to keep short. Taken as the new baseline it let the
 * window RTT settle at 1.5x a queued RTT: on adaptive-overload the minimum RTT rose from
 * 22 to 38 ms after three probes in the spike, the limit from 3 to 4-6, and the admitted
 * p99 to 2.6-2.9x the unloaded one. A dependency that really slowed down leaves the loop
 * idle while it waits, so its probes still count.
 */
const BUSY_LOOP = 0.9;

/**
 * While less than half the limit is in use, its distance to twice the peak in flight halves
 * this often (see `#endWindow`): a quiet spell of a few seconds brings a limit of 20 down to
 * what the traffic uses, and a burst's peak is remembered for a second or two.
 */
const UNUSED_HALF_LIFE_MS = 1000;

/** The limit changes by at most these factors per window (Envoy's and Gradient2's 0.5; Envoy's 2). */
const MIN_GRADIENT = 0.5;
const MAX_GRADIENT = 2;

/**
 * A concurrency limit that follows measured latency: Envoy's gradient controller, without
 * timers. The minimum RTT is measured as Envoy does — the limit is pinned to the floor
 * until `probeSamples` requests have finished, and their `quantile` is the minimum RTT —
 * at the start, every `probeIntervalMs` (jittered), and whenever the limit has sat at the
 * floor for `stuckWindows` windows (the baseline may have moved: a slower dependency is
 * not an overload). Between probes, each window of `windowMs` compares its RTT with the
 * minimum: the limit is multiplied by the gradient `tolerance x minRTT / windowRTT`,
 * bounded to [0.5, 2] (Envoy's bounds) — cut when the window is slower than the target,
 * grown when faster — but only while at least half the limit was in use (Gradient2's
 * application-limited guard, applied both ways; see `#endWindow` for the event-loop case). Unlike Envoy, no √limit headroom is added each window: on a
 * simulated service it made the limit saw between 12 and 16 around an equilibrium of 12,
 * and the median RTT sat at 1.75x the minimum instead of the 1.5x asked for.
 *
 * Why not the others: Netflix's VegasLimit keeps the absolute minimum and, to follow a
 * real change, resets it to the current sample every few hundred samples — a sample taken
 * under load, so the baseline creeps up during a long overload. Gradient2Limit needs no
 * minimum: it compares a short RTT with a long exponential average, which itself rises
 * during a sustained overload, so the limit settles where queueing is already high.
 * Measuring at the floor costs a brief dip in admissions per probe, and keeps the baseline
 * honest however long the overload lasts. Unlike Envoy, the minimum RTT is the least of the
 * last three probes (see PROBE_HISTORY): on a shared machine one probe can land in a noisy
 * second.
 *
 * Everything happens in `onSample` (a finished request) on the injected clock; the caller
 * keeps the in-flight count and compares it with `limit`.
 */
export class AdaptiveLimit {
  readonly settings: AdaptiveLimitSettings;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #loopDelay: (() => number) | undefined;
  readonly #loopUtilization: (() => number) | undefined;
  readonly #samples = new Float64Array(WINDOW_CAPACITY);
  #count = 0;
  #windowStart: number;
  #maxInFlight = 0;
  #estimate: number;
  #limit: number;
  /** The estimate before a probe, restored when it ends. */
  #beforeProbe: number;
  #mode: 'probe' | 'track' = 'probe';
  #minRtt = 0;
  /** The last PROBE_HISTORY probe results; the minimum RTT is the least of them. */
  readonly #probeResults: number[] = [];
  #sampleRtt = 0;
  #loop = 0;
  #nextProbeAt = 0;
  #atFloor = 0;
  #probes = 0;
  #busyProbes = 0;
  #epoch = 0;

  constructor(options: AdaptiveLimitOptions = {}) {
    const s = { ...ADAPTIVE_DEFAULTS, ...definedOnly(options) };
    checkSettings(s);
    this.settings = Object.freeze(s);
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#loopDelay = options.eventLoopDelay;
    this.#loopUtilization = options.eventLoopUtilization;
    this.#loopUtilization?.(); // the first probe starts now
    this.#estimate = this.#beforeProbe = s.initialLimit;
    this.#limit = s.minLimit; // the first thing it does is measure the minimum RTT
    this.#windowStart = this.#clock.now();
  }

  /** Requests that may be in flight now. */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Changes when a probe starts. A caller notes it at admission and hands it back with the
   * sample, so that requests admitted before a probe, under the old limit, do not count in
   * the measurement of the minimum RTT.
   */
  get epoch(): number {
    return this.#epoch;
  }

  get state(): AdaptiveLimitState {
    return {
      limit: this.#limit,
      mode: this.#mode,
      minRttMs: this.#minRtt,
      sampleRttMs: this.#sampleRtt,
      eventLoopDelayMs: this.#loop,
      probes: this.#probes,
      busyProbes: this.#busyProbes,
    };
  }

  /**
   * A request admitted under this limit finished after `rttMs`; `inFlight` requests were in
   * flight when it was admitted (itself included); `epoch` is `this.epoch` at its admission.
   * May close a window and move the limit.
   */
  onSample(rttMs: number, inFlight: number, epoch = this.#epoch): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    if (this.#mode === 'probe' && epoch !== this.#epoch) return;
    if (this.#count < WINDOW_CAPACITY) this.#samples[this.#count] = rttMs;
    this.#count++;
    if (inFlight > this.#maxInFlight) this.#maxInFlight = inFlight;
    const s = this.settings;
    const now = this.#clock.now();
    if (this.#mode === 'probe') {
      if (this.#count >= s.probeSamples) this.#endProbe(now);
      return;
    }
    if (now - this.#windowStart >= s.windowMs && this.#count >= s.minWindowSamples) this.#endWindow(now);
  }

  #endProbe(now: number): void {
    this.#loop = this.#readLoop();
    const measured = this.#windowQuantile() + this.#loop;
    this.#sampleRtt = measured;
    const busy = this.#probes > 0 && measured > this.#minRtt && this.#readUtilization() > BUSY_LOOP;
    if (busy) this.#busyProbes++;
    else {
      this.#probeResults.push(measured);
      if (this.#probeResults.length > PROBE_HISTORY) this.#probeResults.shift();
      this.#minRtt = Math.min(...this.#probeResults);
    }
    this.#probes++;
    this.#mode = 'track';
    this.#atFloor = 0;
    this.#setEstimate(this.#beforeProbe);
    this.#scheduleProbe(now);
    this.#resetWindow(now);
  }

  #endWindow(now: number): void {
    const s = this.settings;
    this.#loop = this.#readLoop();
    const rtt = this.#windowQuantile() + this.#loop;
    this.#sampleRtt = rtt;
    const target = s.tolerance * this.#minRtt;
    let estimate = this.#estimate;
    const gradient = rtt > 0 ? Math.min(MAX_GRADIENT, Math.max(MIN_GRADIENT, target / rtt)) : MAX_GRADIENT;
    // The limit moves only while at least half of it is in use: a quiet service's fast RTTs
    // say nothing about how many requests it can take, and its slow ones (a GC pause, a
    // neighbour on the CPU) are not caused by the requests it admitted. One exception: an
    // event loop late by more than the tolerance on its own is this process's overload,
    // whatever the limit — a synchronous handler queues its requests in the loop, where the
    // in-flight count never sees them — so the limit is cut from what was in flight.
    //
    // A limit that is not used is not kept either: the distance to twice the peak in flight
    // halves every UNUSED_HALF_LIFE_MS (TCP's congestion window validation, RFC 2861, decays
    // an application-limited sender's window toward what it used in the same way). Held at
    // 20 through a quiet spell, the limit let a 3x spike in 20 at once — 160 ms of CPU queued
    // on adaptive-overload before the first window could cut it, the spike's admitted p99 at
    // 3x the unloaded one. By time, not per window: at 1 000 req/s a window is 100 ms and
    // would forget a burst (a GC pause piling requests up) in half a second.
    const used = this.#maxInFlight * 2 >= this.#limit;
    if (used) estimate *= gradient;
    else {
      const target = this.#maxInFlight * 2;
      if (estimate > target) estimate = target + (estimate - target) * 0.5 ** ((now - this.#windowStart) / UNUSED_HALF_LIFE_MS);
      if (gradient < 1 && this.#loop > (s.tolerance - 1) * this.#minRtt) estimate = Math.min(estimate, this.#maxInFlight * gradient);
    }
    this.#setEstimate(estimate);
    this.#atFloor = this.#limit <= s.minLimit ? this.#atFloor + 1 : 0;
    if (now >= this.#nextProbeAt || this.#atFloor >= s.stuckWindows) this.#startProbe();
    this.#resetWindow(now);
  }

  #startProbe(): void {
    this.#mode = 'probe';
    this.#epoch++;
    this.#beforeProbe = this.#estimate;
    this.#limit = this.settings.minLimit;
    this.#loopUtilization?.(); // from here to the probe's end
  }

  #scheduleProbe(now: number): void {
    const s = this.settings;
    this.#nextProbeAt = now + s.probeIntervalMs * (1 + s.probeJitter * this.#random());
  }

  #setEstimate(value: number): void {
    const s = this.settings;
    this.#estimate = Math.min(s.maxLimit, Math.max(s.minLimit, value));
    // The epsilon keeps float error (7 * 0.7 = 4.8999…) from costing a slot.
    this.#limit = Math.floor(this.#estimate + 1e-9);
  }

  #resetWindow(now: number): void {
    this.#count = 0;
    this.#maxInFlight = 0;
    this.#windowStart = now;
  }

  #readLoop(): number {
    if (this.#loopDelay === undefined) return 0;
    const ms = this.#loopDelay();
    return Number.isFinite(ms) && ms > 0 ? ms : 0;
  }

  #readUtilization(): number {
    if (this.#loopUtilization === undefined) return 0;
    const u = this.#loopUtilization();
    return Number.isFinite(u) ? u : 0;
  }

  /** The `quantile` of the window's kept samples (nearest rank). Sorting 256 numbers per window is cheap. */
  #windowQuantile(): number {
    const n = Math.min(this.#count, WINDOW_CAPACITY);
    if (n === 0) return 0;
    const sorted = this.#samples.subarray(0, n).sort();
    const rank = Math.min(n - 1, Math.max(0, Math.ceil(this.settings.quantile * n) - 1));
    return sorted[rank] as number;
  }
}

function definedOnly(options: AdaptiveLimitOptions): Partial<AdaptiveLimitSettings> {
  const out: Record<string, number> = {};
  for (const key of ADAPTIVE_LIMIT_KEYS) {
    const v = options[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/** Throws a RangeError naming the setting; the rule parser checks the same bounds with field paths first. */
function checkSettings(s: AdaptiveLimitSettings): void {
  const whole = (name: keyof AdaptiveLimitSettings, min: number, max: number) => {
    const v = s[name];
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be a whole number in [${min}, ${max}] (got ${v})`);
  };
  const real = (name: keyof AdaptiveLimitSettings, min: number, max: number) => {
    const v = s[name];
    if (!Number.isFinite(v) || v < min || v > max) throw new RangeError(`${name} must be a number in [${min}, ${max}] (got ${v})`);
  };
  whole('minLimit', 1, ADAPTIVE_BOUNDS.maxLimit);
  whole('maxLimit', s.minLimit, ADAPTIVE_BOUNDS.maxLimit);
  whole('initialLimit', s.minLimit, s.maxLimit);
  real('tolerance', ADAPTIVE_BOUNDS.minTolerance, ADAPTIVE_BOUNDS.maxTolerance);
  real('windowMs', 1, ADAPTIVE_BOUNDS.maxWindowMs);
  whole('minWindowSamples', 1, WINDOW_CAPACITY);
  real('quantile', 0.01, 1);
  real('probeIntervalMs', 1, ADAPTIVE_BOUNDS.maxProbeIntervalMs);
  real('probeJitter', 0, 1);
  whole('probeSamples', 1, WINDOW_CAPACITY);
  whole('stuckWindows', 1, 1000);
}

/** The bounds the rule parser and the constructor share. */
export const ADAPTIVE_BOUNDS = Object.freeze({
  maxLimit: 100_000,
  minTolerance: 1,
  maxTolerance: 10,
  maxWindowMs: 60_000,
  maxProbeIntervalMs: 3_600_000,
  windowCapacity: WINDOW_CAPACITY,
});
