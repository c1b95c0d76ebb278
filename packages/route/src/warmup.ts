import { badOption, type Clock, type Instance, MetaKey, onlyOptionKeys, optionObject, shownValue, wholeNumber } from '@meshlet/core';

/**
 * Metadata key holding when an instance registered, as epoch milliseconds. Letters and
 * `-` only, so it is a valid Consul `Meta` key as it is.
 */
export const REGISTERED_AT_META = 'registered-at';
/**
 * Metadata key where the instance's own weight is kept while warm-up lowers `weight`, so
 * that adjusting an already adjusted list gives the same answer (never compounding).
 */
export const BASE_WEIGHT_META = 'warmup-base-weight';

// As route's instanceWeight (packages/route/src/endpoint.ts): 1-10000, anything else 100.
const DEFAULT_WEIGHT = 100;
const MAX_WEIGHT = 10_000;

export interface WarmupOptions {
  /** How long after registration an instance reaches its full weight. 0 turns warm-up off. */
  readonly windowMs: number;
  /** Share of the full weight a just-registered instance gets, 0-1. Default 0.01 (never below weight 1). */
  readonly floor?: number;
  /**
   * Shape of the ramp: share = floor + (1 - floor) × progress^curvature. 1 (the default) is
   * linear, as Dubbo's warm-up (weight × uptime / warmup); above 1 holds the weight low for
   * longer (a JVM still compiling), below 1 rises fast and then levels off.
   */
  readonly curvature?: number;
  /**
   * The ramp moves in this many equal steps, so the router is re-fed `steps` times per
   * warming instance instead of on every call. Default 10.
   */
  readonly steps?: number;
  /** Metadata key of the registration time. Default `registered-at`. */
  readonly metaKey?: string;
}

interface Ramp {
  readonly windowMs: number;
  readonly floor: number;
  readonly curvature: number;
  readonly steps: number;
  readonly metaKey: string;
}

/** The longest warm-up window (an hour), and the steps of a ramp at most. */
export const WARMUP_BOUNDS = Object.freeze({ windowMs: 3_600_000, steps: 1000, curvature: 10, metaKeyChars: 128 });
const WARMUP_KEYS = ['windowMs', 'floor', 'curvature', 'steps', 'metaKey'] as const;

/**
 * Checks warm-up options: MeshletError `MESHLET_BAD_OPTION`, the message starting with the
 * field (`warmup.windowMs: …` under createMesh, whose `prefix` is `warmup`). The window is
 * required (a misspelt one would turn warm-up off in silence); unknown keys are refused.
 */
export function checkWarmupOptions(options: unknown, prefix = ''): void {
  const at = (field: string) => (prefix === '' ? field : `${prefix}.${field}`);
  const w = optionObject(options, prefix === '' ? 'options' : prefix);
  onlyOptionKeys(w, prefix === '' ? 'options' : prefix, WARMUP_KEYS);
  if (!wholeNumber(w.windowMs, 0, WARMUP_BOUNDS.windowMs))
    throw badOption(
      at('windowMs'),
      `${shownValue(w.windowMs)} must be a whole number of milliseconds from 0 (off) to ${WARMUP_BOUNDS.windowMs}`,
    );
  if (w.floor !== undefined && !(typeof w.floor === 'number' && w.floor >= 0 && w.floor <= 1))
    throw badOption(at('floor'), `${shownValue(w.floor)} must be a share of the full weight from 0 to 1`);
  if (w.curvature !== undefined && !(typeof w.curvature === 'number' && w.curvature > 0 && w.curvature <= WARMUP_BOUNDS.curvature))
    throw badOption(at('curvature'), `${shownValue(w.curvature)} must be a number above 0, at most ${WARMUP_BOUNDS.curvature}`);
  if (w.steps !== undefined && !wholeNumber(w.steps, 1, WARMUP_BOUNDS.steps))
    throw badOption(at('steps'), `${shownValue(w.steps)} must be a whole number from 1 to ${WARMUP_BOUNDS.steps}`);
  if (w.metaKey !== undefined && !(typeof w.metaKey === 'string' && w.metaKey !== '' && w.metaKey.length <= WARMUP_BOUNDS.metaKeyChars))
    throw badOption(at('metaKey'), `${shownValue(w.metaKey)} must be a metadata key of 1 to ${WARMUP_BOUNDS.metaKeyChars} characters`);
}

function ramp(options: WarmupOptions): Ramp {
  checkWarmupOptions(options);
  const { windowMs } = options;
  const floor = options.floor ?? 0.01;
  const curvature = options.curvature ?? 1;
  const steps = options.steps ?? 10;
  return { windowMs, floor, curvature, steps, metaKey: options.metaKey ?? REGISTERED_AT_META };
}

/** The instance's own weight, as the router reads it, before any warm-up. */
export function baseWeight(instance: Instance): number {
  const raw = instance.metadata[BASE_WEIGHT_META] ?? instance.metadata[MetaKey.weight];
  if (raw === undefined) return DEFAULT_WEIGHT;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= MAX_WEIGHT ? n : DEFAULT_WEIGHT;
}

/** Registration time from metadata; undefined when absent or not a number (such an instance gets no warm-up). */
export function registeredAt(instance: Instance, metaKey = REGISTERED_AT_META): number | undefined {
  const raw = instance.metadata[metaKey];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * The weight of an instance of weight `full`, `ageMs` after it registered. A negative age
 * (a registration clock ahead of ours) counts as just registered. Never below 1.
 */
export function warmupWeight(full: number, ageMs: number, options: WarmupOptions): number {
  const r = ramp(options);
  return weightAt(full, ageMs, r);
}

/**
 * The registration time the ramp starts from, or undefined when the instance is not warmed:
 * none, not a number, or more than one window ahead of `now`. A clock a little ahead
 * holds the instance at the floor until then; one days ahead (or a registry writer's
 * nonsense) would hold it at weight 1 for as long, so it reads as unreadable.
 */
function rampStart(instance: Instance, now: number, r: Ramp): number | undefined {
  const at = registeredAt(instance, r.metaKey);
  return at !== undefined && at - now <= r.windowMs ? at : undefined;
}

function weightAt(full: number, ageMs: number, r: Ramp): number {
  if (r.windowMs === 0 || ageMs >= r.windowMs) return full;
  const progress = Math.floor((Math.max(0, ageMs) / r.windowMs) * r.steps) / r.steps;
  const share = r.floor + (1 - r.floor) * progress ** r.curvature;
  return Math.min(full, Math.max(1, Math.round(full * share)));
}

/**
 * The instances with their `weight` metadata lowered while they warm up, for the router's
 * `setInstances`. Instances not warming (no or bad registration time, one more than a
 * window ahead of `now`, or past the window) come back as the same objects; warming ones as copies with `weight` and
 * `warmup-base-weight` set.
 */
export function applyWarmup(instances: readonly Instance[], now: number, options: WarmupOptions): Instance[] {
  const r = ramp(options);
  return instances.map((instance) => {
    const at = rampStart(instance, now, r);
    const full = baseWeight(instance);
    const warming = at !== undefined && now - at < r.windowMs;
    if (!warming) {
      if (instance.metadata[BASE_WEIGHT_META] === undefined) return instance;
      // Warmed up since the last adjustment: give the instance its own weight back.
      const { [BASE_WEIGHT_META]: _base, ...rest } = instance.metadata;
      return { ...instance, metadata: { ...rest, [MetaKey.weight]: String(full) } };
    }
    const weight = weightAt(full, now - at, r);
    return { ...instance, metadata: { ...instance.metadata, [MetaKey.weight]: String(weight), [BASE_WEIGHT_META]: String(full) } };
  });
}

/**
 * When the next weight changes, over all instances: the earliest step boundary after
 * `now` of any instance still warming, or undefined when none is. The SDK sets one timer
 * for it and re-feeds `applyWarmup` to the router then (the router precomputes on
 * `setInstances`, so the weights only move when fed).
 */
export function nextWarmupChangeAt(instances: readonly Instance[], now: number, options: WarmupOptions): number | undefined {
  const r = ramp(options);
  if (r.windowMs === 0) return undefined;
  const stepMs = r.windowMs / r.steps;
  let next: number | undefined;
  for (const instance of instances) {
    const at = rampStart(instance, now, r);
    if (at === undefined || now - at >= r.windowMs) continue;
    // Ages below zero sit at the floor until registration time, then step as usual.
    const age = Math.max(0, now - at);
    const k = Math.floor(age / stepMs) + 1;
    const due = at + Math.min(r.windowMs, k * stepMs);
    if (next === undefined || due < next) next = due;
  }
  return next;
}

/** What a warm-up feed feeds: the Router (its `setInstances`). */
export interface InstanceSink {
  setInstances(service: string, instances: readonly Instance[], unhealthy?: readonly Instance[]): void;
}

/**
 * A feed in front of `Router.setInstances`: passes each service's instances on with
 * warm-up weights, and re-feeds the same list once when the ramp next moves (one timer per
 * service on the injected clock, replaced by every new list). Without options, or with a
 * window of 0, it passes lists on untouched and sets no timer.
 */
export class WarmupFeed {
  readonly #sink: InstanceSink;
  readonly #clock: Clock;
  readonly #options: WarmupOptions | undefined;
  readonly #timers = new Map<string, () => void>();

  constructor(sink: InstanceSink, options: { readonly clock: Clock; readonly warmup?: WarmupOptions | undefined }) {
    this.#sink = sink;
    this.#clock = options.clock;
    if (options.warmup !== undefined) checkWarmupOptions(options.warmup, 'warmup');
    this.#options = options.warmup && options.warmup.windowMs > 0 ? options.warmup : undefined;
  }

  /** Feeds `service`'s instances now, warm-up applied; `unhealthy` (Router.setInstances) passes as it is. */
  setInstances(service: string, instances: readonly Instance[], unhealthy?: readonly Instance[]): void {
    this.#timers.get(service)?.();
    this.#timers.delete(service);
    const warmup = this.#options;
    if (!warmup) {
      this.#sink.setInstances(service, instances, unhealthy);
      return;
    }
    // Wall time: `registered-at` is the instance's wall clock, not this process's monotonic one.
    const now = this.#clock.wallNow();
    this.#sink.setInstances(service, applyWarmup(instances, now, warmup), unhealthy);
    const at = nextWarmupChangeAt(instances, now, warmup);
    if (at !== undefined)
      this.#timers.set(
        service,
        this.#clock.setTimeout(() => this.setInstances(service, instances, unhealthy), at - now),
      );
  }

  /** Cancels every pending re-feed. */
  /** Cancels `service`'s pending warm-up step: the mesh released the destination. */
  forget(service: string): void {
    this.#timers.get(service)?.();
    this.#timers.delete(service);
  }

  close(): void {
    for (const cancel of this.#timers.values()) cancel();
    this.#timers.clear();
  }
}
