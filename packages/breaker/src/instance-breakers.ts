import { type Clock, type InstanceExclusion, systemClock, type Unsubscribe } from '@meshlet/core';
import { Breaker, type BreakerGroupOptions, type BreakerSnapshot, REJECTED } from './breaker.js';
import { BreakerEvents, type CircuitState } from './breaker-events.js';
import type { BreakerPolicy } from './breaker-policy.js';

export interface InstanceBreakersOptions {
  readonly clock?: Clock;
  /** Where transitions of every instance breaker are announced; a new set by default. */
  readonly events?: BreakerEvents;
}

/**
 * Instance breakers of one destination service. Breakers are made on an instance's first
 * call; `maxEjectionPercent` caps how many may be open or half-open at once, and never
 * all of them: a breaker that would pass the cap stays closed (counted in `vetoedTrips`),
 * because sending to a failing instance beats having nowhere to send.
 */
export class ServiceInstanceBreakers {
  readonly service: string;
  readonly policy: BreakerPolicy;
  readonly maxEjectionPercent: number;
  readonly #owner: InstanceBreakers;
  readonly #group: BreakerGroupOptions;
  readonly #breakers = new Map<string, Breaker>();
  #known: ReadonlySet<string> | undefined;
  #ejected = 0;

  /** @internal made by InstanceBreakers.configure */
  constructor(owner: InstanceBreakers, service: string, policy: BreakerPolicy, maxEjectionPercent: number, group: BreakerGroupOptions) {
    this.#owner = owner;
    this.service = service;
    this.policy = policy;
    this.maxEjectionPercent = maxEjectionPercent;
    this.#group = {
      ...group,
      mayOpen: () => this.#ejected < this.maxEjections,
      onTransition: (b, from, to) => {
        if (from === 'closed') this.#ejected++;
        else if (to === 'closed') this.#ejected--;
        owner.transitioned(b, from, to);
      },
    };
  }

  /** How many instances may be ejected now: at least one (if there are two or more), never all. */
  get maxEjections(): number {
    const total = Math.max(this.#known?.size ?? 0, this.#breakers.size);
    if (total <= 1) return 0;
    return Math.min(total - 1, Math.max(1, Math.floor((total * this.maxEjectionPercent) / 100)));
  }

  /** Instances open or half-open now. */
  get ejected(): number {
    return this.#ejected;
  }

  breaker(instanceId: string): Breaker {
    let b = this.#breakers.get(instanceId);
    if (b === undefined) {
      b = new Breaker({ level: 'instance', service: this.service, instance: instanceId }, this.policy, this.#group);
      this.#breakers.set(instanceId, b);
      this.#owner.added(instanceId, b);
    }
    return b;
  }

  /** A permit for a call to `instanceId`, or REJECTED when its breaker is open or its probes are taken. */
  acquire(instanceId: string): number {
    const b = this.breaker(instanceId);
    if (b.state === 'closed') return b.tryAcquire();
    const permit = b.tryAcquire();
    // The last probe permit taken: routing must stop sending here until the probes finish,
    // or until their deadline (Breaker.wakeAt), which poll() keeps.
    if (permit !== REJECTED && b.state === 'half-open' && b.isRejecting()) {
      this.#owner.sleeping(b);
      this.#owner.changed();
    }
    return permit;
  }

  record(instanceId: string, permit: number, failed: boolean, durationMs: number, now?: number, bodyFollows = false): void {
    this.#breakers.get(instanceId)?.record(permit, failed, durationMs, now, bodyFollows);
  }

  /** How the body of an answer recorded with `bodyFollows` ended (see Breaker.bodyEnded). */
  bodyEnded(instanceId: string, permit: number, failed: boolean, now?: number): void {
    this.#breakers.get(instanceId)?.bodyEnded(permit, failed, now);
  }

  release(instanceId: string, permit: number): void {
    const b = this.#breakers.get(instanceId);
    if (b === undefined || b.state !== 'half-open') return;
    const was = b.isRejecting();
    b.release(permit);
    if (was && !b.isRejecting()) this.#owner.changed();
  }

  /** The instances the service has now; breakers of instances that left are dropped. */
  setInstances(ids: Iterable<string>): void {
    const known = new Set(ids);
    this.#known = known;
    let changed = false;
    for (const [id, b] of this.#breakers) {
      if (known.has(id)) continue;
      if (b.state !== 'closed') {
        this.#ejected--;
        changed = true;
      }
      this.#breakers.delete(id);
      this.#owner.removed(id, b);
    }
    if (changed) this.#owner.changed();
  }

  /** @internal */
  drop(): void {
    for (const [id, b] of this.#breakers) this.#owner.removed(id, b);
    this.#breakers.clear();
  }

  snapshot(): BreakerSnapshot[] {
    return [...this.#breakers.values()].map((b) => b.snapshot());
  }
}

/**
 * Every instance breaker of this process, as the router's InstanceExclusion: an instance
 * is excluded while its breaker is open, and while it is half-open with all its probe
 * permits taken.
 *
 * Probes: when the sleep window ends, the instance is let back into routing (subscribers
 * are told) and takes ordinary traffic through the normal load balancer; the first
 * `probes` calls routed to it are the probes. Once they are all in flight it is excluded
 * again until they finish; all succeed → closed, one fails → open for another window. No
 * timer: the sleep window is checked by `poll()`, which the call executor runs at the
 * start of every call (one comparison unless a window has ended).
 */
export class InstanceBreakers implements InstanceExclusion {
  readonly events: BreakerEvents;
  readonly #clock: Clock;
  readonly #groups = new Map<string, ServiceInstanceBreakers>();
  readonly #byId = new Map<string, Breaker>();
  /** Breakers that time alone will change (Breaker.wakeAt): open ones, and half-open ones whose probes are all out. */
  readonly #sleeping = new Set<Breaker>();
  readonly #listeners = new Set<() => void>();
  #nextWake = Number.POSITIVE_INFINITY;

  constructor(options: InstanceBreakersOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.events = options.events ?? new BreakerEvents();
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

  /** Sets (or with `undefined`, removes) the instance breakers of `service`. Existing breakers of the service are reset. */
  configure(service: string, policy: BreakerPolicy | undefined, maxEjectionPercent = 50): ServiceInstanceBreakers | undefined {
    const old = this.#groups.get(service);
    if (old) {
      old.drop();
      this.#groups.delete(service);
    }
    if (policy === undefined) {
      if (old) this.changed();
      return undefined;
    }
    const group = new ServiceInstanceBreakers(this, service, policy, maxEjectionPercent, { clock: this.#clock, events: this.events });
    this.#groups.set(service, group);
    if (old) this.changed();
    return group;
  }

  forService(service: string): ServiceInstanceBreakers | undefined {
    return this.#groups.get(service);
  }

  isExcluded(instanceId: string): boolean {
    const b = this.#byId.get(instanceId);
    return b !== undefined && b.state !== 'closed' && b.isRejecting(this.#clock.now());
  }

  subscribe(listener: () => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Wakes every breaker whose time has come (Breaker.wake: an open one whose sleep is over
   * turns half-open; a half-open one whose probes outlived their deadline opens again), and
   * tells subscribers through the transitions.
   */
  poll(now = this.#clock.now()): void {
    if (now < this.#nextWake) return;
    let next = Number.POSITIVE_INFINITY;
    for (const b of [...this.#sleeping]) {
      b.wake(now);
      const at = b.wakeAt;
      if (at === Number.POSITIVE_INFINITY) this.#sleeping.delete(b);
      else if (at < next) next = at;
    }
    this.#nextWake = next;
  }

  snapshot(): BreakerSnapshot[] {
    return [...this.#groups.values()].flatMap((g) => g.snapshot());
  }

  /** @internal */
  added(id: string, b: Breaker): void {
    this.#byId.set(id, b);
  }

  /** @internal */
  removed(id: string, b: Breaker): void {
    if (this.#byId.get(id) === b) this.#byId.delete(id);
    this.#sleeping.delete(b);
  }

  /** @internal */
  transitioned(b: Breaker, _from: CircuitState, to: CircuitState): void {
    if (to === 'open') this.sleeping(b);
    else this.#sleeping.delete(b);
    this.changed();
  }

  /** @internal `b` will change when its time comes (Breaker.wakeAt): poll() wakes it then. */
  sleeping(b: Breaker): void {
    this.#sleeping.add(b);
    if (b.wakeAt < this.#nextWake) this.#nextWake = b.wakeAt;
  }

  /** @internal tells subscribers that the excluded set may have changed. */
  changed(): void {
    for (const l of [...this.#listeners]) l();
  }
}
