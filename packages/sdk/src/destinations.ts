import { CallExecutor } from '@meshlet/breaker';
import { type Instance, MetaKey, RuleWatcher, type RuleWatcherStatus, type Unsubscribe } from '@meshlet/core';
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

/** One service whose rules this mesh reads: a destination it calls, or itself. */
interface ServiceRecord {
  readonly watcher: RuleWatcher;
  /** What the followers of this service's rules returned: called on close. */
  readonly unsubscribes: Unsubscribe[];
  /** The last non-zero count of its healthy instances. */
  knownInstances: number;
}

/**
 * The services this mesh calls, followed: the service directory (names and healthy
 * instances from the registry), one rule watcher per service, and the parts that read a
 * destination's rules and instances — the Router (behind the warm-up feed), the
 * CallExecutor (breakers, retries) and the FaultInjector. A service is followed on its
 * first call: its rules' followers subscribe then, and each list of instances goes to
 * routing (warm-up and `instanceFilter` applied) and to the executor.
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

  constructor(settings: MeshSettings, options: MeshOptions) {
    const { clock, logger, metadata } = settings;
    this.#settings = settings;
    this.#instanceFilter = options.instanceFilter;
    this.faults = new FaultInjector({ logger });
    this.executor = new CallExecutor({ clock, logger, ...(options.callDefaults !== undefined ? { defaults: options.callDefaults } : {}) });
    this.router = new Router({
      clock,
      logger,
      ...options.route,
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
    this.directory = new ServiceDirectory(settings.registry, {
      follow: (service) => this.#follow(service),
      instances: (service, instances, unhealthy) => this.#instances(service, instances, unhealthy),
    });
  }

  /** The rule watcher of `service`, started on first use. */
  rules(service: string): RuleWatcher {
    return this.#record(service).watcher;
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
      const { kv, logger } = this.#settings;
      r = { watcher: new RuleWatcher({ kv, service, kinds: ruleKinds, logger }).start(), unsubscribes: [], knownInstances: 0 };
      this.#services.set(service, r);
    }
    return r;
  }

  async #follow(service: string): Promise<void> {
    const { watcher, unsubscribes } = this.#record(service);
    unsubscribes.push(this.router.follow(watcher), this.executor.follow(watcher), this.faults.follow(watcher));
    // A rule stored before the first call (a gray release) applies from that call on; a
    // rule store that does not answer does not block calls for long.
    await Promise.race([watcher.ready, new Promise((r) => setTimeout(r, RULES_FIRST_LOAD_MS).unref())]);
  }

  #instances(service: string, instances: readonly Instance[], unhealthy: readonly Instance[] | undefined): void {
    if (instances.length > 0) this.#record(service).knownInstances = instances.length;
    // `unhealthy` only tells routing which instances are still registered: not filtered.
    this.#warmup.setInstances(service, this.#instanceFilter ? this.#instanceFilter(service, instances) : instances, unhealthy);
    this.executor.setInstances(
      service,
      instances.map((i) => i.id),
    );
  }
}
