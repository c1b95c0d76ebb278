import {
  type Instance,
  type InstanceExclusion,
  NoInstanceError,
  noExclusion,
  type Registry,
  type RuleWatcher,
  SystemTag,
  type TagLookup,
  type Unsubscribe,
} from '@meshlet/core';
import type { LoadCounter } from './endpoint.js';
import type { InstancePool, PoolSettings } from './instance-pool.js';
import { LANE_TAG } from './lane.js';
import { DEFAULT_NEARBY, type Location, type NearbyLevel } from './nearby.js';
import type { RandomSource } from './random-source.js';
import { type LoadBalancerConfig, type NearbyConfig, type RouteSection, routeRuleKind } from './route-section.js';
import { choosePool, RouteTable } from './route-table.js';

export interface RouterOptions {
  /** The caller's zone and region, for nearby routing. Without them nearby routing does nothing. */
  readonly location?: Location;
  /** Nearby defaults; a service's `route.nearby` overrides them. Default: enabled, 50%. */
  readonly nearby?: Partial<NearbyConfig>;
  /** Balancer for services whose rules name none. Default: smooth weighted round robin. */
  readonly loadBalancer?: LoadBalancerConfig;
  /** Instances to leave out for now (open breakers). Default: none. */
  readonly exclusion?: InstanceExclusion;
  /** Default Math.random; inject a seeded source for repeatable tests. */
  readonly random?: RandomSource;
  /** The request tag naming a lane. Default LANE_TAG (`lane`). */
  readonly laneTag?: string;
}

/** How a decision reached its instance. */
export type RouteVia = 'lane' | 'rule' | 'fallback' | 'default';

export interface RouteDecision {
  readonly instance: Instance;
  readonly via: RouteVia;
  /** The rule that matched, if one did (also set when its fallback or the default route served it). */
  readonly rule: string | undefined;
  /** The lane that served the request; undefined when the baseline did. */
  readonly lane: string | undefined;
  readonly level: NearbyLevel;
}

interface ServiceState {
  section: RouteSection | undefined;
  instances: readonly Instance[];
  table: RouteTable | undefined;
  loads: Map<string, LoadCounter>;
}

const noop = () => {};

/**
 * Routes calls to services: lanes first, then the first matching rule by priority, its
 * groups by weight, the rule's fallback, the default route; nearby routing and the load
 * balancer inside the chosen group. Everything that depends on rules, instances and
 * exclusions is precomputed into a RouteTable when one of them changes (on the next
 * decision after the change), so a decision costs the rules it evaluates, never the
 * number of instances.
 */
export class Router {
  readonly #services = new Map<string, ServiceState>();
  readonly #location: Location;
  readonly #nearby: NearbyConfig;
  readonly #loadBalancer: LoadBalancerConfig;
  readonly #exclusion: InstanceExclusion;
  readonly #random: RandomSource;
  readonly #laneTag: string;
  readonly #unsubscribeExclusion: Unsubscribe;

  constructor(options: RouterOptions = {}) {
    this.#location = options.location ?? {};
    this.#nearby = { ...DEFAULT_NEARBY, ...options.nearby };
    this.#loadBalancer = options.loadBalancer ?? { type: 'roundRobin' };
    this.#exclusion = options.exclusion ?? noExclusion;
    this.#random = options.random ?? Math.random;
    this.#laneTag = options.laneTag ?? LANE_TAG;
    this.#unsubscribeExclusion = this.#exclusion.subscribe(() => {
      for (const s of this.#services.values()) s.table = undefined;
    });
  }

  /** Replaces the `route` rules of calls to `service`; undefined means no rules (every instance). */
  setRules(service: string, section: RouteSection | undefined): void {
    const s = this.#state(service);
    s.section = section;
    s.table = undefined;
  }

  /**
   * Replaces the instances of `service`. Pass unhealthy ones too when the registry has
   * them: nearby routing measures a zone's healthy share against all its instances.
   */
  setInstances(service: string, instances: readonly Instance[]): void {
    const s = this.#state(service);
    s.instances = instances;
    s.table = undefined;
  }

  /** Follows the `route` section of a RuleWatcher of `service`'s rule document. */
  followRules(service: string, watcher: RuleWatcher): Unsubscribe {
    return watcher.subscribe((doc) => this.setRules(service, doc?.sections.get(routeRuleKind.name) as RouteSection | undefined));
  }

  /** Follows `service`'s instances in a registry. */
  followInstances(service: string, registry: Registry): Unsubscribe {
    return registry.watch(service, (instances) => this.setInstances(service, instances));
  }

  /**
   * Chooses the instance for one call to `service`. `tags` reads the request's tags
   * (system and custom; `destination.service` is answered here). Throws NoInstanceError
   * saying which groups were tried when nothing healthy is left.
   */
  decide(service: string, tags: TagLookup): RouteDecision {
    const table = this.#table(service);
    const lane = tags(this.#laneTag);
    if (lane !== undefined && lane !== '') {
      const pool = table.lanes.get(lane);
      const instance = pool?.pick(tags);
      // A lane without an instance of this service falls back to the baseline, as TSF and Polaris do.
      if (instance && pool) return { instance, via: 'lane', rule: undefined, lane, level: pool.level };
    }
    const lookup: TagLookup = table.readsDestination ? (t) => (t === SystemTag.destinationService ? service : tags(t)) : tags;
    const matched = table.rules[table.ruleIndex.first(lookup)];
    let tried: InstancePool | undefined;
    let triedFallback: InstancePool | undefined;
    if (matched) {
      tried = choosePool(matched.destinations, this.#random() * 100);
      const instance = tried.pick(lookup);
      if (instance) return { instance, via: 'rule', rule: matched.name, lane: undefined, level: tried.level };
      if (matched.fallback) {
        triedFallback = choosePool(matched.fallback, this.#random() * 100);
        const fb = triedFallback.pick(lookup);
        if (fb) return { instance: fb, via: 'fallback', rule: matched.name, lane: undefined, level: triedFallback.level };
      }
    }
    const last = choosePool(table.defaultRoute, this.#random() * 100);
    const instance = last.pick(lookup);
    if (instance) return { instance, via: 'default', rule: matched?.name, lane: undefined, level: last.level };
    throw new NoInstanceError(service, explain(table, lane, matched?.name, tried, triedFallback, last));
  }

  /** The instance for one call; `decide` without the explanation. */
  pick(service: string, tags: TagLookup): Instance {
    return this.decide(service, tags).instance;
  }

  /**
   * Reports that a call to `instance` started, for least-requests balancing; call the
   * returned function once when it ends (more calls are ignored).
   */
  callStarted(instance: Instance): () => void {
    const load = this.#services.get(instance.service)?.loads.get(instance.id);
    if (!load) return noop;
    load.outstanding++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      load.outstanding--;
    };
  }

  /** Stops listening to the exclusion. */
  close(): void {
    this.#unsubscribeExclusion();
  }

  #state(service: string): ServiceState {
    let s = this.#services.get(service);
    if (!s) {
      s = { section: undefined, instances: [], table: undefined, loads: new Map() };
      this.#services.set(service, s);
    }
    return s;
  }

  #table(service: string): RouteTable {
    const s = this.#state(service);
    if (s.table) return s.table;
    const { section } = s;
    const settings: PoolSettings = {
      location: this.#location,
      nearby: { ...this.#nearby, ...section?.nearby },
      loadBalancer: section?.loadBalancer ?? this.#loadBalancer,
      random: this.#random,
    };
    // Counters of instances that left are dropped here; the ones that stay keep counting.
    const loads = new Map<string, LoadCounter>();
    for (const i of s.instances) {
      const old = s.loads.get(i.id);
      if (old) loads.set(i.id, old);
    }
    s.loads = loads;
    s.table = new RouteTable({ service, section, instances: s.instances, exclusion: this.#exclusion, loads, settings });
    return s.table;
  }
}

function explain(
  table: RouteTable,
  lane: string | undefined,
  rule: string | undefined,
  tried: InstancePool | undefined,
  fallback: InstancePool | undefined,
  last: InstancePool,
): string {
  if (table.instanceCount === 0) return 'no instance is registered';
  const steps: string[] = [];
  if (lane) steps.push(`lane "${lane}" has no healthy instance, so the baseline was tried`);
  if (rule !== undefined && tried) {
    steps.push(`rule "${rule}" chose ${tried.describe()}`);
    steps.push(fallback ? `its fallback ${fallback.describe()}` : 'it has no fallback');
  } else steps.push('no rule matched');
  steps.push(`the default route ${last.describe()}`);
  if (table.baselineCount === 0) {
    steps.push(
      `all ${table.instanceCount} instances are in lanes (${[...table.lanes.keys()].join(', ')}); none serves requests outside them`,
    );
  }
  return `nothing left to route to: ${steps.join('; ')}`;
}
