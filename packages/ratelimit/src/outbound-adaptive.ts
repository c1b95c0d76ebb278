import { type Clock, field, MeshletError, RuleValidationError, serviceNameProblem, systemClock } from '@meshlet/core';
import { AdaptiveLimit, type AdaptiveLimitSettings, type AdaptiveLimitState } from './adaptive-limit.js';
import { parseAdaptiveLimitSettings } from './adaptive-rule.js';

/** A destination's adaptive limit was full: the call was not sent. */
export class OutboundLimitError extends MeshletError {
  static readonly code = 'MESHLET_OUTBOUND_LIMITED';
  readonly service: string;
  readonly limit: number;
  readonly inFlight: number;

  constructor(service: string, limit: number, inFlight: number) {
    super(
      OutboundLimitError.code,
      `${service}: ${inFlight} calls in flight at its adaptive limit of ${limit} (its latency rose past the tolerance); the call was not sent. Try later, or another way.`,
    );
    this.service = service;
    this.limit = limit;
    this.inFlight = inFlight;
  }
}

/** One destination's adaptive limit as the admin status and metrics show it. */
export interface OutboundAdaptiveStats extends AdaptiveLimitState {
  readonly service: string;
  readonly inFlight: number;
  /** Calls let through since start. */
  readonly admitted: number;
  /** Calls refused with OutboundLimitError since start. */
  readonly refused: number;
}

export interface OutboundAdaptiveOptions {
  /** Settings for every destination (each field defaults as in `ADAPTIVE_DEFAULTS`). */
  readonly defaults?: Partial<AdaptiveLimitSettings>;
  /** Per destination: its own settings over the defaults, or `false` for no limit. */
  readonly services?: Readonly<Record<string, Partial<AdaptiveLimitSettings> | false>>;
  /**
   * Only these destinations get a limit (with `services`' settings or the defaults); every
   * destination when absent.
   */
  readonly only?: readonly string[];
  readonly clock?: Clock;
  /** [0, 1) for the probe jitter; seed it in tests. */
  readonly random?: () => number;
}

/**
 * Destinations with a limit of their own at most; calls to further ones are sent unlimited
 * (and counted in `untracked`): a destination is a name an application passes, and one
 * limit per name must not grow without bound.
 */
export const MAX_OUTBOUND_LIMITS = 1024;

/** The slot of one call: `done(sample)` gives it back, with the call's RTT as a sample or not. */
export interface OutboundSlot {
  done(sample: boolean): void;
}

/**
 * An adaptive concurrency limit on the calls to one destination (the same `AdaptiveLimit`
 * as the inbound one, without the event-loop signals: the RTT is the destination's). A call
 * over the limit is refused at once with OutboundLimitError, never queued.
 */
export class OutboundAdaptiveLimit {
  readonly service: string;
  readonly #limit: AdaptiveLimit;
  readonly #clock: Clock;
  #inFlight = 0;
  #admitted = 0;
  #refused = 0;

  constructor(service: string, settings: Partial<AdaptiveLimitSettings>, options: { clock?: Clock; random?: () => number } = {}) {
    this.service = service;
    this.#clock = options.clock ?? systemClock;
    this.#limit = new AdaptiveLimit({
      ...settings,
      clock: this.#clock,
      ...(options.random ? { random: options.random } : {}),
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get limit(): number {
    return this.#limit.limit;
  }

  get stats(): OutboundAdaptiveStats {
    return { service: this.service, ...this.#limit.state, inFlight: this.#inFlight, admitted: this.#admitted, refused: this.#refused };
  }

  /** A slot for one call, or OutboundLimitError when the limit is full. */
  acquire(): OutboundSlot {
    const limit = this.#limit.limit;
    if (this.#inFlight >= limit) {
      this.#refused++;
      throw new OutboundLimitError(this.service, limit, this.#inFlight);
    }
    this.#admitted++;
    const inFlight = ++this.#inFlight;
    const epoch = this.#limit.epoch;
    const start = this.#clock.now();
    let done = false;
    return {
      done: (sample) => {
        if (done) return;
        done = true;
        this.#inFlight--;
        if (sample) this.#limit.onSample(this.#clock.now() - start, inFlight, epoch);
      },
    };
  }

  /**
   * Runs `fn` in a slot. Its RTT is a sample when it answers (any status: a 500 took the
   * destination's time too) or times out (a slow destination); not when it fails fast for
   * another reason (a breaker open, no instance, a refused connection) or the caller aborted
   * it — those say nothing about the destination's latency.
   */
  async execute<T>(fn: (signal?: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw signal.reason;
    const slot = this.acquire();
    try {
      const out = await fn(signal);
      slot.done(true);
      return out;
    } catch (error) {
      slot.done(!signal?.aborted && isTimeout(error));
      throw error;
    }
  }
}

function isTimeout(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return error.name === 'TimeoutError' || (typeof code === 'string' && code.includes('TIMEOUT'));
}

/**
 * One adaptive limit per destination, made on first use (as `Bulkheads`): `execute(service,
 * fn, signal)` around the call.
 */
export class OutboundAdaptiveLimits {
  readonly #options: OutboundAdaptiveOptions;
  readonly #only: ReadonlySet<string> | undefined;
  readonly #limits = new Map<string, OutboundAdaptiveLimit>();
  #untracked = 0;

  constructor(options: OutboundAdaptiveOptions = {}) {
    this.#options = options;
    this.#only = options.only ? new Set(options.only) : undefined;
  }

  /** The limit of `service`, or undefined when it has none (turned off, or past MAX_OUTBOUND_LIMITS). */
  for(service: string): OutboundAdaptiveLimit | undefined {
    const made = this.#limits.get(service);
    if (made) return made;
    const own = this.#options.services?.[service];
    if (own === false || (this.#only !== undefined && !this.#only.has(service))) return undefined;
    if (this.#limits.size >= MAX_OUTBOUND_LIMITS) {
      this.#untracked++;
      return undefined;
    }
    const limit = new OutboundAdaptiveLimit(
      service,
      { ...this.#options.defaults, ...own },
      {
        ...(this.#options.clock ? { clock: this.#options.clock } : {}),
        ...(this.#options.random ? { random: this.#options.random } : {}),
      },
    );
    this.#limits.set(service, limit);
    return limit;
  }

  /**
   * Drops the limit of `service`: the mesh released the destination. The next call starts
   * a new one from its initial limit, as a first call does.
   */
  forget(service: string): void {
    this.#limits.delete(service);
  }

  /** Runs `fn` within `service`'s adaptive limit (directly when it has none). */
  execute<T>(service: string, fn: (signal?: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    const limit = this.for(service);
    return limit ? limit.execute(fn, signal) : Promise.resolve().then(() => fn(signal));
  }

  /** Calls sent unlimited because MAX_OUTBOUND_LIMITS destinations already had a limit. */
  get untracked(): number {
    return this.#untracked;
  }

  /** Every destination's limit, by name. */
  get stats(): OutboundAdaptiveStats[] {
    const out: OutboundAdaptiveStats[] = [];
    for (const limit of this.#limits.values()) out.push(limit.stats);
    return out.sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
  }
}

/**
 * Parses the outbound adaptive option: `true` (every destination, every default) or
 * `{ defaults?, services?, only? }`, where `defaults` and each `services` entry hold the
 * adaptive limit's numbers (the names and bounds of the `ratelimit.adaptive` rule section,
 * without `status` and `classes`) and a `services` entry may be `false`. Throws
 * RuleValidationError naming the field.
 */
export function parseOutboundAdaptive(raw: unknown, path: string): Omit<OutboundAdaptiveOptions, 'clock' | 'random'> {
  if (raw === true) return {};
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['defaults', 'services', 'only']);
  const serviceName = (name: unknown, at: string): string => {
    const problem = serviceNameProblem(name);
    if (problem) throw new RuleValidationError(at, problem);
    return name as string;
  };
  const defaults = obj.defaults === undefined ? undefined : parseAdaptiveLimitSettings(obj.defaults, `${path}.defaults`);
  let services: Record<string, Partial<AdaptiveLimitSettings> | false> | undefined;
  if (obj.services !== undefined) {
    services = {};
    for (const [name, entry] of Object.entries(field.object(obj.services, `${path}.services`))) {
      const at = `${path}.services.${name}`;
      serviceName(name, at);
      // An entry's own numbers over the defaults: parsed alone for bounds, then only its own fields kept.
      if (entry === false) services[name] = false;
      else {
        const own = field.object(entry, at);
        const parsed = parseAdaptiveLimitSettings({ ...defaults, ...own }, at);
        services[name] = parsed;
      }
    }
  }
  const only =
    obj.only === undefined ? undefined : field.array(obj.only, `${path}.only`).map((n, i) => serviceName(n, `${path}.only[${i}]`));
  return { ...(defaults ? { defaults } : {}), ...(services ? { services } : {}), ...(only ? { only } : {}) };
}
