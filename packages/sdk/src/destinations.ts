import { CallExecutor } from '@meshlet/breaker';
import {
  type CancelTimer,
  type Instance,
  MetaKey,
  RuleWatcher,
  type RuleWatcherStatus,
  TooManyDestinationsError,
  type Unsubscribe,
} from '@meshlet/core';
import { FaultInjector } from '@meshlet/fault';
import { Bulkheads, OutboundAdaptiveLimits } from '@meshlet/ratelimit';
import { Router, WarmupFeed } from '@meshlet/route';
import { type DestinationGuard, destinationGuard } from './destination-guard.js';
import type { MeshOptions } from './mesh-options.js';
import type { MeshSettings } from './mesh-settings.js';
import { ruleKinds } from './rule-kinds.js';
import { ServiceDirectory } from './service-directory.js';

/** How long the first call to a service waits for its rules before going on without them. */
const RULES_FIRST_LOAD_MS = 3_000;

/**
 * How long a destination stays followed after its last call, with no attempt in flight,
 * before it is released (its registry and rule watches ended, its state dropped), as
 * Envoy's dynamic forward proxy purges a host unused for its `host_ttl` (5 min): a name
 * called once does not hold watches for the life of the process. `destinations.idleMs`.
 */
export const DEFAULT_DESTINATION_IDLE_MS = 10 * 60_000;
/**
 * Destinations followed at once (`destinations.max`): each holds a registry watch (a
 * blocking query, a connection to a Consul agent, whose default `http_max_conns_per_client`
 * is 200 for the whole process) and a rule watch (on Consul, served by the store's one
 * query of `meshlet/rules/`). Envoy's DNS cache holds at most `max_hosts`, 1,024, and
 * refuses a new host past it.
 */
export const DEFAULT_MAX_DESTINATIONS = 1_024;
/** Longest time between two looks for idle destinations: one is released within idleMs and this of its last call. */
const IDLE_CHECK_MS = 60_000;

/** One service whose rules this mesh reads: a destination it calls, or itself. */
interface ServiceRecord {
  readonly watcher: RuleWatcher;
  /** What the followers of this service's rules returned: called when it is released, or on close. */
  readonly unsubscribes: Unsubscribe[];
  /** The last non-zero count of its healthy instances. */
  knownInstances: number;
  /** When the record was made or its rules last asked for (`rules`), on the mesh's clock. */
  touched: number;
}

/**
 * The services this mesh calls, followed: the service directory (names and healthy
 * instances from the registry), one rule watcher per service, and the parts that read a
 * destination's rules and instances — the Router (behind the warm-up feed), the
 * CallExecutor (breakers, retries) and the FaultInjector. A service is followed on its
 * first call: its rules' followers subscribe then, and each list of instances goes to
 * routing (warm-up and `instanceFilter` applied) and to the executor.
 *
 * A destination not called for `idleMs`, with no attempt in flight (Router.outstanding),
 * is released here and only here: its registry watch and rule watcher end, and every part
 * that keeps something per destination is told to forget it (`forget`). Its next call
 * follows it again, as a first call. At most `max` are followed at once: a new one past
 * the cap releases the least recently used one with nothing in flight, or is refused
 * (TooManyDestinationsError) when every one has. This service's own record is never released.
 */
export class Destinations {
  readonly router: Router;
  readonly executor: CallExecutor;
  readonly faults: FaultInjector;
  readonly bulkheads: Bulkheads | undefined;
  /** The adaptive limit per destination (`ratelimit.outboundAdaptive`), when on. */
  readonly outboundLimits: OutboundAdaptiveLimits | undefined;
  /** Both around one call, composed once for every protocol's calls; undefined when the mesh has neither. */
  readonly guard: DestinationGuard | undefined;
  readonly directory: ServiceDirectory;
  readonly #settings: MeshSettings;
  readonly #warmup: WarmupFeed;
  readonly #instanceFilter: MeshOptions['instanceFilter'];
  readonly #services = new Map<string, ServiceRecord>();
  readonly #idleMs: number;
  readonly #max: number;
  #idleCheck: CancelTimer | undefined;
  #closed = false;

  constructor(settings: MeshSettings, options: MeshOptions) {
    const { clock, logger, metadata } = settings;
    this.#settings = settings;
    // Checked with the options (mesh-option-checks.ts).
    this.#idleMs = options.destinations?.idleMs ?? DEFAULT_DESTINATION_IDLE_MS;
    this.#max = options.destinations?.max ?? DEFAULT_MAX_DESTINATIONS;
    this.#instanceFilter = options.instanceFilter;
    this.faults = new FaultInjector({ logger });
    this.executor = new CallExecutor({ clock, logger, ...(options.callDefaults !== undefined ? { defaults: options.callDefaults } : {}) });
    this.router = new Router({
      clock,
      ...options.route,
      // A route.logger of the app's own is throttled as the mesh's is (the router's codes can
      // come with every call: MESHLET_ROUTE_GROUP_EMPTY, MESHLET_ROUTE_STICKY_TAG_ABSENT), and
      // its entries are counted with the mesh's, in meshlet_conditions_total.
      logger: options.route?.logger === undefined ? logger : logger.writingTo(options.route.logger),
      exclusion: this.executor.instanceBreakers,
      location: {
        ...(metadata[MetaKey.zone] ? { zone: metadata[MetaKey.zone] } : {}),
        ...(metadata[MetaKey.region] ? { region: metadata[MetaKey.region] } : {}),
      },
    });
    this.#warmup = new WarmupFeed(this.router, { clock, warmup: options.warmup });
    // Checked with the options (mesh-settings.ts), before anything started.
    const { bulkheads, outboundAdaptive } = settings.outboundLimits;
    this.bulkheads = bulkheads ? new Bulkheads(bulkheads) : undefined;
    this.outboundLimits = outboundAdaptive === undefined ? undefined : new OutboundAdaptiveLimits({ ...outboundAdaptive, clock });
    this.guard = destinationGuard(this.outboundLimits, this.bulkheads);
    this.directory = new ServiceDirectory(settings.registry, clock, logger, {
      follow: (service) => this.#follow(service),
      instances: (service, instances, unhealthy) => this.#instances(service, instances, unhealthy),
    });
  }

  /** The rule watcher of `service`, started on first use; it counts as a use (the idle time starts again). */
  rules(service: string): RuleWatcher {
    const r = this.#record(service);
    r.touched = this.#settings.clock.now();
    return r.watcher;
  }

  /** Keeps what a follower of `service`'s rules returned, to call on close. */
  keep(service: string, ...unsubscribes: Unsubscribe[]): void {
    this.#record(service).unsubscribes.push(...unsubscribes);
  }

  /** The last non-zero count of `service`'s healthy instances seen (0: none ever). */
  knownInstances(service: string): number {
    return this.#services.get(service)?.knownInstances ?? 0;
  }

  /** The rules status of every service whose rules are read. */
  rulesStatus(): ({ service: string } & RuleWatcherStatus)[] {
    return [...this.#services.entries()].map(([service, r]) => ({ service, ...r.watcher.status }));
  }

  close(): void {
    this.#closed = true;
    this.#idleCheck?.();
    this.#idleCheck = undefined;
    this.#warmup.close();
    this.directory.close();
    this.router.close();
    for (const r of this.#services.values()) for (const unsubscribe of r.unsubscribes.splice(0)) unsubscribe();
    for (const r of this.#services.values()) r.watcher.close();
    this.#services.clear();
  }

  #record(service: string): ServiceRecord {
    let r = this.#services.get(service);
    if (!r) {
      const { kv, logger, clock } = this.#settings;
      if (service !== this.#settings.service) this.#makeRoom(service);
      r = {
        watcher: new RuleWatcher({ kv, service, kinds: ruleKinds, logger }).start(),
        unsubscribes: [],
        knownInstances: 0,
        touched: clock.now(),
      };
      this.#services.set(service, r);
      this.#armIdleCheck();
    }
    return r;
  }

  /** Not async: a refusal (the cap) throws before the directory keeps anything of the service. */
  #follow(service: string): Promise<void> {
    const { watcher, unsubscribes } = this.#record(service);
    unsubscribes.push(this.router.follow(watcher), this.executor.follow(watcher), this.faults.follow(watcher));
    // A rule stored before the first call (a gray release) applies from that call on; a
    // rule store that does not answer does not block calls for long.
    return Promise.race([watcher.ready, new Promise<void>((r) => setTimeout(r, RULES_FIRST_LOAD_MS).unref())]);
  }

  /**
   * When `service` was last used: its last call, its rules last asked for. +Infinity while
   * a first call waits for it, or while an attempt to it is in flight: not releasable.
   */
  #lastUse(service: string, r: ServiceRecord, now: number): number {
    if (this.router.outstanding(service) > 0) return Number.POSITIVE_INFINITY;
    return Math.max(r.touched, this.directory.lastCalled(service, now) ?? Number.NEGATIVE_INFINITY);
  }

  /** Past the cap: releases the least recently used destination with nothing in flight, else refuses `service`. */
  #makeRoom(service: string): void {
    const own = this.#settings.service;
    if (this.#services.size - (this.#services.has(own) ? 1 : 0) < this.#max) return;
    let oldest: string | undefined;
    let oldestUse = Number.POSITIVE_INFINITY;
    const now = this.#settings.clock.now();
    for (const [name, r] of this.#services) {
      if (name === own) continue;
      const used = this.#lastUse(name, r, now);
      if (used < oldestUse) {
        oldest = name;
        oldestUse = used;
      }
    }
    if (oldest === undefined) {
      this.#settings.logger.warn('a call to a new destination refused: every destination followed has a call in flight', {
        code: TooManyDestinationsError.code,
        service,
        max: this.#max,
      });
      throw new TooManyDestinationsError(service, this.#max);
    }
    this.#release(oldest, 'cap');
  }

  /** Looks for idle destinations while any is followed; no timer while none is. */
  #armIdleCheck(): void {
    if (this.#idleCheck !== undefined || this.#closed) return;
    const own = this.#settings.service;
    if (this.#services.size - (this.#services.has(own) ? 1 : 0) === 0) return;
    this.#idleCheck = this.#settings.clock.setTimeout(
      () => {
        this.#idleCheck = undefined;
        this.#releaseIdle();
        this.#armIdleCheck();
      },
      Math.min(this.#idleMs, IDLE_CHECK_MS),
    );
  }

  #releaseIdle(): void {
    const now = this.#settings.clock.now();
    const own = this.#settings.service;
    for (const [service, r] of [...this.#services]) {
      if (service !== own && now - this.#lastUse(service, r, now) >= this.#idleMs) this.#release(service, 'idle');
    }
  }

  /**
   * Ends what follows `service` (its registry watch, its rule watcher and the followers of
   * its rules) and has every part that keeps state per destination forget it. A call still
   * in flight holds what it needs (routing's picker, its breakers) and ends on that.
   */
  #release(service: string, why: 'idle' | 'cap'): void {
    const r = this.#services.get(service);
    if (r === undefined) return;
    this.#services.delete(service);
    this.directory.unfollow(service);
    for (const unsubscribe of r.unsubscribes.splice(0)) unsubscribe();
    r.watcher.close();
    this.#warmup.forget(service);
    this.router.forget(service);
    this.executor.forget(service);
    this.faults.forget(service);
    this.bulkheads?.forget(service);
    this.outboundLimits?.forget(service);
    this.#settings.logger.debug('destination released: its next call follows it again', {
      code: 'MESHLET_DESTINATION_RELEASED',
      service,
      reason: why,
      ...(why === 'idle' ? { idleMs: this.#idleMs } : { max: this.#max }),
    });
  }

  #instances(service: string, instances: readonly Instance[], unhealthy: readonly Instance[] | undefined): void {
    const r = this.#services.get(service);
    if (r !== undefined && instances.length > 0) r.knownInstances = instances.length;
    // `unhealthy` only tells routing which instances are still registered: not filtered.
    this.#warmup.setInstances(service, this.#instanceFilter ? this.#instanceFilter(service, instances) : instances, unhealthy);
    this.executor.setInstances(
      service,
      instances.map((i) => i.id),
    );
  }
}
