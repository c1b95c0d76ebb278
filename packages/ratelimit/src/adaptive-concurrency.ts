import { type Clock, compileConditions, type Matcher, systemClock, type TagLookup } from '@meshlet/core';
import { ADAPTIVE_LIMIT_KEYS, AdaptiveLimit, type AdaptiveLimitSettings, type AdaptiveLimitState } from './adaptive-limit.js';
import { type AdaptiveSection, DEFAULT_CLASS, type OverloadStatus } from './adaptive-rule.js';

export interface AdaptiveConcurrencyOptions {
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Event-loop delay in ms since the last read; see `eventLoopDelayMonitor`. */
  readonly eventLoopDelay?: () => number;
  /** Event-loop utilization since the last read; see `eventLoopUtilizationSampler`. */
  readonly eventLoopUtilization?: () => number;
}

/** What `tryAcquire` answered: admitted with a release that records the request's RTT, or refused. */
export type AdaptiveAdmission =
  | { readonly admitted: true; readonly release: () => void; readonly cancel: () => void }
  | {
      readonly admitted: false;
      readonly className: string;
      readonly limit: number;
      readonly inFlight: number;
      readonly status: OverloadStatus;
    };

/** Per class: admitted and refused requests since start. */
export interface AdaptiveClassStats {
  readonly name: string;
  readonly share: number;
  readonly admitted: number;
  readonly refused: number;
}

/** The adaptive limit as the admin status shows it. */
export interface AdaptiveStats extends AdaptiveLimitState {
  readonly inFlight: number;
  readonly admitted: number;
  readonly refused: number;
  readonly classes: readonly AdaptiveClassStats[];
}

interface CompiledClass {
  readonly name: string;
  readonly share: number;
  readonly when: Matcher | undefined;
  admitted: number;
  refused: number;
}

/**
 * Admission under an adaptive concurrency limit, with load shedding by class. A request
 * is admitted while the requests in flight are fewer than its class's share of the limit
 * (at least one): with shares critical 1, default 0.9, batch 0.5, batch is refused once
 * half the limit is in use, default at 90%, critical only at the limit itself. An
 * admitted request's `release()` (once, when its response closes) gives the slot back and
 * hands its RTT to the limit; `cancel()` gives the slot back without a sample (the request
 * was refused by a later check and never ran).
 */
export class AdaptiveConcurrency {
  readonly #options: AdaptiveConcurrencyOptions;
  readonly #clock: Clock;
  #section: AdaptiveSection;
  #limit: AdaptiveLimit;
  #classes: CompiledClass[];
  #default: CompiledClass;
  #inFlight = 0;
  #admitted = 0;
  #refused = 0;

  constructor(section: AdaptiveSection, options: AdaptiveConcurrencyOptions = {}) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#section = section;
    this.#limit = this.#newLimit(section);
    this.#classes = compileClasses(section, []);
    this.#default = defaultClass(section, undefined);
  }

  /**
   * Applies a new section. The limit keeps its state (its measured minimum RTT, its current
   * value) when the algorithm's numbers did not change; classes and status apply at once.
   * Requests in flight keep their slots either way.
   */
  reconfigure(section: AdaptiveSection): void {
    const old = this.#section;
    if (ADAPTIVE_LIMIT_KEYS.some((k) => old[k] !== section[k])) this.#limit = this.#newLimit(section);
    this.#classes = compileClasses(section, this.#classes);
    this.#default = defaultClass(section, this.#default);
    this.#section = section;
  }

  get section(): AdaptiveSection {
    return this.#section;
  }

  /** Requests admitted and not yet released. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The limit now. */
  get limit(): number {
    return this.#limit.limit;
  }

  get stats(): AdaptiveStats {
    return {
      ...this.#limit.state,
      inFlight: this.#inFlight,
      admitted: this.#admitted,
      refused: this.#refused,
      classes: [...this.#classes, this.#default].map((c) => ({ name: c.name, share: c.share, admitted: c.admitted, refused: c.refused })),
    };
  }

  /** Admits or refuses one request, whose tags `tag` reads (for its class). */
  tryAcquire(tag: TagLookup): AdaptiveAdmission {
    const cls = this.#classOf(tag);
    const limit = this.#limit.limit;
    const allowed = cls.share >= 1 ? limit : Math.max(1, Math.floor(limit * cls.share + 1e-9));
    if (this.#inFlight >= allowed) {
      cls.refused++;
      this.#refused++;
      return { admitted: false, className: cls.name, limit, inFlight: this.#inFlight, status: this.#section.status };
    }
    cls.admitted++;
    this.#admitted++;
    const inFlight = ++this.#inFlight;
    const algorithm = this.#limit;
    const epoch = algorithm.epoch;
    const start = this.#clock.now();
    let done = false;
    return {
      admitted: true,
      release: () => {
        if (done) return;
        done = true;
        this.#inFlight--;
        // A sample for the limit that admitted it; after a reconfigure the old one is gone.
        if (algorithm === this.#limit) algorithm.onSample(this.#clock.now() - start, inFlight, epoch);
      },
      cancel: () => {
        if (done) return;
        done = true;
        this.#inFlight--;
      },
    };
  }

  #classOf(tag: TagLookup): CompiledClass {
    for (const c of this.#classes) if (c.when?.(tag)) return c;
    return this.#default;
  }

  #newLimit(section: AdaptiveSection): AdaptiveLimit {
    const o = this.#options;
    const settings: Partial<AdaptiveLimitSettings> = {};
    for (const k of ADAPTIVE_LIMIT_KEYS) (settings as Record<string, number>)[k] = section[k];
    return new AdaptiveLimit({
      ...settings,
      ...(o.clock ? { clock: o.clock } : {}),
      ...(o.random ? { random: o.random } : {}),
      ...(o.eventLoopDelay ? { eventLoopDelay: o.eventLoopDelay } : {}),
      ...(o.eventLoopUtilization ? { eventLoopUtilization: o.eventLoopUtilization } : {}),
    });
  }
}

/** Classes of the new section; a class that keeps its name keeps its counters. */
function compileClasses(section: AdaptiveSection, old: readonly CompiledClass[]): CompiledClass[] {
  return section.classes.map((c) => {
    const kept = old.find((o) => o.name === c.name);
    return { name: c.name, share: c.share, when: compileConditions(c.when), admitted: kept?.admitted ?? 0, refused: kept?.refused ?? 0 };
  });
}

function defaultClass(section: AdaptiveSection, old: CompiledClass | undefined): CompiledClass {
  return { name: DEFAULT_CLASS, share: section.defaultShare, when: undefined, admitted: old?.admitted ?? 0, refused: old?.refused ?? 0 };
}
