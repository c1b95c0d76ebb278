import type { Attempt, AttemptInterceptor, AttemptObserver, RandomSource } from '@meshlet/core';
import {
  aroundObserver,
  type Clock,
  type Instance,
  type InstanceExclusion,
  type Logger,
  NoInstanceError,
  noExclusion,
  type Registry,
  type RuleFeed,
  SystemTag,
  silentLogger,
  systemClock,
  type TagLookup,
  type Unsubscribe,
} from '@meshlet/core';
import type { LoadCount } from './endpoint.js';
import type { InstancePool, PoolSettings } from './instance-pool.js';
import { LANE_TAG } from './lane.js';
import { DEFAULT_NEARBY, type Location, type NearbyLevel } from './nearby.js';
import { DEFAULT_LOAD_BALANCER, type LoadBalancerConfig, type NearbyConfig, type RouteSection, routeRuleKind } from './route-rule.js';
import {
  type CompiledRule,
  chooseIndex,
  type Redirect,
  type RouteSpanAttributes,
  RouteTable,
  type WeightedPools,
  withinSlice,
} from './route-table.js';
import { stickyPoint } from './sticky.js';

export interface RouterOptions {
  /** The caller's zone and region, for nearby routing. Without them nearby routing does nothing. */
  readonly location?: Location;
  /** Nearby defaults; a service's `route.nearby` overrides them. Default: enabled, 50%. */
  readonly nearby?: Partial<NearbyConfig>;
  /** Balancer for services whose rules name none. Default: DEFAULT_LOAD_BALANCER, weighted least requests. */
  readonly loadBalancer?: LoadBalancerConfig;
  /** Instances to leave out for now (open breakers). Default: none. */
  readonly exclusion?: InstanceExclusion;
  /** Default Math.random; inject a seeded source for repeatable tests. */
  readonly random?: RandomSource;
  /** The request tag naming a lane. Default LANE_TAG (`lane`). */
  readonly laneTag?: string;
  /**
   * Envoy's healthy panic threshold, percent: when fewer of a group's instances are
   * healthy, and at least one is, the group routes to all of them that are not ejected.
   * Default 50 (Envoy's `healthy_panic_threshold`); 0 turns it off.
   */
  readonly panicThresholdPercent?: number;
  /**
   * How long instances that stopped passing are remembered, ms, so that a sudden drop is
   * distrusted: a registry recovering from an outage reports most instances critical for a
   * few seconds. The departed count in the panic test, and are routed to in panic, until
   * they pass again, leave the registry, the grace ends, or a connection to one is refused
   * (`reportUnreachable`). An instance that left the registry (deregistered) is not one:
   * see `setInstances`. Default 35 000 (Meshlet's `deregisterDelayMs`, the longest a
   * stopping instance serves); 0 turns it off.
   */
  readonly departedGraceMs?: number;
  /** For the departed grace. Default systemClock. */
  readonly clock?: Clock;
  /** Told when a service's routing enters and leaves panic (once each way). Default: silent. */
  readonly logger?: Logger;
}

export const DEFAULT_PANIC_THRESHOLD_PERCENT = 50;
export const DEFAULT_DEPARTED_GRACE_MS = 35_000;

/** How a decision reached its instance. */
export type RouteVia = 'lane' | 'rule' | 'fallback' | 'default';

export interface RouteDecision {
  /** The instance's id (what the call executor's breakers and tried set key on). */
  readonly id: string;
  readonly instance: Instance;
  readonly via: RouteVia;
  /** The rule that matched, if one did (also set when its fallback or the default route served it). */
  readonly rule: string | undefined;
  /** The lane that served the request; undefined when the baseline did. */
  readonly lane: string | undefined;
  readonly level: NearbyLevel;
  /**
   * With the service's route section in shadow mode: the rule that section would have
   * applied (`(default)` when none of its rules matches); the call was routed without it.
   * Absent on a lane decision, to which no rule applies.
   */
  readonly shadow?: string;
  /**
   * Store revision of the rule document whose route section decided (as `follow` heard it;
   * 0 when none is in force or the rules were set directly). A span writes it as
   * `io.meshlet.rules.revision`; `RuleRepository.versionAt` names its version.
   */
  readonly revision: number;
  /**
   * Span attributes of the decision, when routing skipped instances of the pool it picked
   * from because their breakers are open (the InstanceExclusion): `io.meshlet.route.ejected`
   * (their count) and `io.meshlet.route.ejected_ids` (at most 10). One object per pool, made
   * when the routing table is rebuilt, never per call; undefined when none was skipped.
   */
  readonly spanAttributes?: Readonly<Record<string, string | number>> | undefined;
}

interface ServiceState {
  section: RouteSection | undefined;
  /** Store revision of the document `section` came from (0: none, or set directly). */
  revision: number;
  /** A section in shadow mode: evaluated, not routed by. */
  shadowSection: RouteSection | undefined;
  shadowTable: RouteTable | undefined;
  instances: readonly Instance[];
  table: RouteTable | undefined;
  loads: Map<string, LoadCount>;
  /** Instances that stopped passing but are still registered, with the end of their grace. */
  departed: Map<string, { readonly instance: Instance; readonly until: number }>;
  /** The earliest end of a grace in `departed`; +Infinity when empty. */
  graceUntil: number;
  /** Some group was in panic at the last rebuild. */
  panicking: boolean;
  /** This service's picker, made on first use. */
  picker: RoutePicker | undefined;
}

/**
 * Routing's picker for one destination: the instance for a call's first attempt, then,
 * for each retry or hedge, the next one not yet tried — the same lane, rule and groups,
 * nearest locality first (the zone, the region, then anywhere), as Envoy's previous_hosts
 * and previous_priorities retry plug-ins do. The call executor keeps the tried set and
 * asks the picker directly; made once per destination (`Router.picker`), it holds nothing
 * of any call.
 */
export interface RoutePicker {
  readonly service: string;
  /** The first attempt's instance. Throws NoInstanceError, saying which groups were tried, when none is left. */
  first(tags: TagLookup): RouteDecision;
  /** An instance not in `tried` for a retry, or undefined when every usable one was tried. */
  next(tags: TagLookup, tried: ReadonlySet<string>): RouteDecision | undefined;
}

/** The pools a decision went through, for the explanation when nothing was left. */
interface Walk {
  lane: string | undefined;
  rule: string | undefined;
  tried: InstancePool | undefined;
  fallback: InstancePool | undefined;
  last: InstancePool | undefined;
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
  readonly #panic: number;
  readonly #graceMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #unsubscribeExclusion: Unsubscribe;

  constructor(options: RouterOptions = {}) {
    this.#location = options.location ?? {};
    this.#nearby = { ...DEFAULT_NEARBY, ...options.nearby };
    this.#loadBalancer = options.loadBalancer ?? DEFAULT_LOAD_BALANCER;
    this.#exclusion = options.exclusion ?? noExclusion;
    this.#random = options.random ?? Math.random;
    this.#laneTag = options.laneTag ?? LANE_TAG;
    this.#panic = options.panicThresholdPercent ?? DEFAULT_PANIC_THRESHOLD_PERCENT;
    this.#graceMs = options.departedGraceMs ?? DEFAULT_DEPARTED_GRACE_MS;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#unsubscribeExclusion = this.#exclusion.subscribe(() => {
      for (const s of this.#services.values()) {
        s.table = undefined;
        s.shadowTable = undefined;
      }
    });
  }

  /**
   * Replaces the `route` rules of calls to `service`; undefined means no rules (every
   * instance). `revision`: the store revision of the document they came from, for decisions.
   */
  setRules(service: string, section: RouteSection | undefined, revision = 0): void {
    const s = this.#state(service);
    s.revision = revision;
    const shadow = section?.mode === 'shadow';
    s.section = shadow ? undefined : section;
    s.shadowSection = shadow ? section : undefined;
    s.table = undefined;
    s.shadowTable = undefined;
  }

  /**
   * Replaces the instances of `service`. Pass unhealthy ones too when the registry has
   * them: nearby routing measures a zone's healthy share against all its instances.
   * `unhealthy`: the instances the registry has registered but not passing (a Registry
   * watch's second argument). Given, a passing instance no longer listed is remembered as
   * departed only when it is among them: one that left the registry was deregistered on
   * purpose and is gone, as Envoy leaves a host removed from discovery out of its panic
   * threshold. Not given, every passing instance no longer listed is remembered.
   */
  setInstances(service: string, instances: readonly Instance[], unhealthy?: readonly Instance[]): void {
    const s = this.#state(service);
    if (this.#graceMs > 0 && this.#panic > 0) this.#noteDepartures(s, instances, unhealthy);
    s.instances = instances;
    s.table = undefined;
    s.shadowTable = undefined;
  }

  /** Instances of `service` that left within the grace and are still remembered. */
  departed(service: string): readonly Instance[] {
    return [...(this.#services.get(service)?.departed.values() ?? [])].map((d) => d.instance);
  }

  /**
   * Says that a connection to `instance` was refused (nothing was sent): if it is a
   * departed instance, it really is gone, and panic stops routing to it.
   */
  reportUnreachable(instance: Instance): void {
    const s = this.#services.get(instance.service);
    if (s === undefined || !s.departed.delete(instance.id)) return;
    this.#noteDepartures(s, s.instances, undefined);
    s.table = undefined;
  }

  /**
   * Remembers, for the grace, the healthy instances this update removes that are still
   * registered (all of them when `unhealthy` is not given: see setInstances); forgets the
   * ones that are back, those that left the registry, and those whose grace is over. They
   * matter only when the rest are too few (the panic threshold), and not at all when none
   * is left: a drop to none is the registry's to judge.
   */
  #noteDepartures(s: ServiceState, next: readonly Instance[], unhealthy: readonly Instance[] | undefined): void {
    const now = this.#clock.now();
    const departed = s.departed;
    const ids = new Set<string>();
    for (const i of next) {
      ids.add(i.id);
      departed.delete(i.id);
    }
    // Registered but not passing: the only ones a registry's sudden drop can be wrong about.
    const notPassing = unhealthy && new Set(unhealthy.map((i) => i.id));
    for (const [id, d] of departed) if (d.until <= now || (notPassing !== undefined && !notPassing.has(id))) departed.delete(id);
    if (next !== s.instances) {
      for (const i of s.instances) {
        if (i.health === 'passing' && !ids.has(i.id) && (notPassing === undefined || notPassing.has(i.id)))
          departed.set(i.id, { instance: i, until: now + this.#graceMs });
      }
    }
    let until = Number.POSITIVE_INFINITY;
    for (const d of departed.values()) if (d.until < until) until = d.until;
    s.graceUntil = until;
  }

  /** Follows the `route` section of a service's rules (core's RuleWatcher), now and on change. */
  follow(rules: RuleFeed): Unsubscribe {
    const service = rules.service;
    return rules.follow(routeRuleKind, (section, revision) => this.setRules(service, section, revision));
  }

  /** Follows `service`'s instances in a registry (and the unhealthy ones, when it gives them: see setInstances). */
  followInstances(service: string, registry: Registry): Unsubscribe {
    return registry.watch(service, (instances, unhealthy) => this.setInstances(service, instances, unhealthy));
  }

  /**
   * Chooses the instance for one call to `service`. `tags` reads the request's tags
   * (system and custom; `destination.service` is answered here). Throws NoInstanceError
   * saying which groups were tried when nothing healthy is left.
   */
  decide(service: string, tags: TagLookup): RouteDecision {
    return this.#decideIn(this.#state(service), service, tags);
  }

  #decideIn(s: ServiceState, service: string, tags: TagLookup): RouteDecision {
    const table = this.#tableOf(s, service);
    let decision = this.#route(table, service, tags, undefined, undefined, s.revision);
    let walk: Walk | undefined;
    if (decision === undefined) {
      // Nothing left: walk again, noting the pools, for the explanation (not paid by calls that route).
      walk = { lane: undefined, rule: undefined, tried: undefined, fallback: undefined, last: undefined };
      decision = this.#route(table, service, tags, undefined, walk, s.revision);
    }
    // A lane request goes to its lane before any rule is tested, enforced or not: a shadow
    // section would not have applied one to it either.
    if (decision) return s.shadowSection && decision.via !== 'lane' ? this.#withShadow(s, service, tags, decision) : decision;
    throw Object.assign(new NoInstanceError(service, explain(table, walk as Walk)), {
      spanAttributes: refusalAttributes(s.revision, (walk as Walk).rule),
    });
  }

  /**
   * The instance for a retry of a call to `service`: the same lane, rule and groups as
   * `decide`, but an instance not in `tried`, across localities (see InstancePool.pickUntried).
   * Undefined when no instance is left to try.
   */
  decideRetry(service: string, tags: TagLookup, tried: ReadonlySet<string>): RouteDecision | undefined {
    const s = this.#state(service);
    return this.#route(this.#tableOf(s, service), service, tags, tried, undefined, s.revision);
  }

  /**
   * The picker of `service`: `first` is `decide`, `next` is `decideRetry`. One object per
   * destination, kept until the destination is forgotten (`forget`): ask for it per call,
   * not once for a client's life; the call executor asks it for every attempt.
   */
  picker(service: string): RoutePicker {
    const s = this.#state(service);
    // The service's state is held, not looked up per pick: a call in flight when the
    // destination is forgotten goes on with the state it started with.
    s.picker ??= {
      service,
      first: (tags) => this.#decideIn(s, service, tags),
      next: (tags, tried) => this.#route(this.#tableOf(s, service), service, tags, tried, undefined, s.revision),
    };
    return s.picker;
  }

  /**
   * The in-flight count of each attempt (least-requests balancing), as an observer of the
   * outbound chain: counted when the attempt starts, uncounted when it settles. The count
   * it took is kept on the record (`attempt.load`), so settling looks nothing up and
   * nothing is allocated per attempt. It is an interceptor too (`aroundObserver`), for a
   * chain of interceptors.
   */
  readonly inFlight: AttemptObserver & AttemptInterceptor = aroundObserver({
    started: (attempt: Attempt): void => {
      const instance = attempt.target.instance;
      const load = this.#services.get(instance.service)?.loads.get(instance.id);
      if (load === undefined) return;
      load.outstanding++;
      attempt.load = load;
    },
    settled: (attempt: Attempt): void => {
      const load = attempt.load;
      if (load === undefined) return;
      attempt.load = undefined;
      load.outstanding--;
    },
  });

  #route(
    table: RouteTable,
    service: string,
    tags: TagLookup,
    tried: ReadonlySet<string> | undefined,
    walk: Walk | undefined,
    revision: number,
  ): RouteDecision | undefined {
    const lane = tags(this.#laneTag);
    if (lane !== undefined && lane !== '') {
      if (walk) walk.lane = lane;
      const pool = table.lanes.get(lane);
      const instance = pool && pickIn(pool, tags, tried);
      // A lane without an instance of this service falls back to the baseline, as TSF and Polaris do.
      if (instance && pool)
        return {
          id: instance.id,
          instance,
          via: 'lane',
          rule: undefined,
          lane,
          level: pool.level,
          revision,
          spanAttributes: pool.spanAttributes,
        };
    }
    const lookup: TagLookup = table.readsDestination ? (t) => (t === SystemTag.destinationService ? service : tags(t)) : tags;
    const matched = table.rules[table.ruleIndex.first(lookup)];
    // Only a first attempt's decision tells of an empty group: a retry that tried the
    // group's every instance, or the walk for an explanation, is not one.
    const report = tried === undefined && walk === undefined;
    let chosen = -1;
    if (matched) {
      if (walk) walk.rule = matched.name;
      const point = this.#pointOf(matched, lookup, service, report);
      chosen = chooseIndex(matched.destinations, point);
      const pool = matched.destinations.pools[chosen] as InstancePool;
      if (walk) walk.tried = pool;
      const instance = pickIn(pool, lookup, tried);
      if (instance)
        return {
          id: instance.id,
          instance,
          via: 'rule',
          rule: matched.name,
          lane: undefined,
          level: pool.level,
          revision,
          spanAttributes: matched.routed[chosen] ?? routedAttributes(matched, chosen),
        };
      if (matched.fallback) {
        // The same point, its place in the chosen group's slice stretched to [0, 100): a
        // sticky rule's user keeps one place in the fallback while the group is empty (not
        // one drawn per request), and the fallback's weights still hold among the group's
        // users (the point as it is would send a 20% group's users all to the fallback's first 20%).
        const index = chooseIndex(matched.fallback, withinSlice(matched.destinations, chosen, point));
        const fallback = matched.fallback.pools[index] as InstancePool;
        if (walk) walk.fallback = fallback;
        const fb = pickIn(fallback, lookup, tried);
        if (fb) {
          return {
            id: fb.id,
            instance: fb,
            via: 'fallback',
            rule: matched.name,
            lane: undefined,
            level: fallback.level,
            revision,
            // A retry that has tried the group's every instance leaves a group that is not empty.
            spanAttributes: pool.empty
              ? this.#redirect(table, matched, chosen, index, report).spanAttributes
              : (matched.routed[chosen] ?? routedAttributes(matched, chosen)),
          };
        }
      }
    }
    const index = chooseIndex(table.defaultRoute, this.#random() * 100);
    const last = table.defaultRoute.pools[index] as InstancePool;
    if (walk) walk.last = last;
    const instance = pickIn(last, lookup, tried);
    if (instance)
      return {
        id: instance.id,
        instance,
        via: 'default',
        rule: matched?.name,
        lane: undefined,
        level: last.level,
        revision,
        spanAttributes:
          matched === undefined
            ? last.spanAttributes
            : (matched.destinations.pools[chosen] as InstancePool).empty
              ? this.#redirect(table, matched, chosen, (matched.fallback?.pools.length ?? 0) + index, report).spanAttributes
              : (matched.routed[chosen] ?? routedAttributes(matched, chosen)),
      };
    return undefined;
  }

  /**
   * Where in [0, 100) a request falls for `rule`'s weights: its `stickyBy` tag's hash when
   * the rule has one and the request carries it, else a random draw. A sticky rule's request
   * without the tag is told (`report`: on a first attempt only, not again for its retries),
   * counted and throttled as a per-request code: a misnamed tag shows as a count, not as a
   * silent per-request split.
   */
  #pointOf(rule: CompiledRule, tags: TagLookup, service: string, report: boolean): number {
    const tag = rule.stickyBy;
    if (tag === undefined) return this.#random() * 100;
    const value = tags(tag);
    if (value !== undefined && value !== '') return stickyPoint(rule.stickySalt, value);
    if (report)
      this.#logger.info('request without the tag of a sticky route rule: group drawn at random', {
        code: 'MESHLET_ROUTE_STICKY_TAG_ABSENT',
        service,
        rule: rule.name,
        tag,
      });
    return this.#random() * 100;
  }

  /**
   * What a decision that left `rule`'s chosen group (`chosen`, with nothing to route to)
   * for another tells, `target` indexing the fallback's groups then the default route's:
   * made once per table. On a first attempt (`report`), logged as a per-request code (the
   * mesh's logger throttles and counts it): a rule applied in code, or whose group's
   * instances all left, routes every call elsewhere without a word otherwise.
   */
  #redirect(table: RouteTable, rule: CompiledRule, chosen: number, target: number, report: boolean): Redirect {
    const fallbacks = rule.fallback?.pools.length ?? 0;
    const at = chosen * (fallbacks + table.defaultRoute.pools.length) + target;
    let redirect = rule.redirects[at];
    if (redirect === undefined) {
      redirect = redirectOf(table, rule, chosen, target);
      rule.redirects[at] = redirect;
    }
    if (report) this.#logger.warn("a route rule's group has no instance to route to: calls go to another group", redirect.logFields);
    return redirect;
  }

  /** Adds the rule a section in shadow mode would have applied; counted and logged (the mesh's logger throttles the code). */
  #withShadow(s: ServiceState, service: string, tags: TagLookup, decision: RouteDecision): RouteDecision {
    s.shadowTable ??= new RouteTable({
      service,
      section: s.shadowSection,
      instances: s.instances,
      departed: [],
      exclusion: this.#exclusion,
      loads: new Map(),
      settings: {
        location: this.#location,
        nearby: { ...this.#nearby, ...s.shadowSection?.nearby },
        loadBalancer: s.shadowSection?.loadBalancer ?? this.#loadBalancer,
        random: this.#random,
        panicThresholdPercent: this.#panic,
      },
    });
    const table = s.shadowTable;
    const lookup: TagLookup = table.readsDestination ? (t) => (t === SystemTag.destinationService ? service : tags(t)) : tags;
    const shadow = table.rules[table.ruleIndex.first(lookup)]?.name ?? '(default)';
    this.#logger.info('route rules in shadow mode would have routed this call', { code: 'MESHLET_ROUTE_SHADOW', service, rule: shadow });
    return { ...decision, shadow };
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

  /**
   * Attempts to `service` in flight now (started, not settled: a stream's for its life),
   * as the in-flight count sees them; 0 when none, or the service is not routed.
   */
  outstanding(service: string): number {
    const s = this.#services.get(service);
    if (s === undefined) return 0;
    let n = 0;
    for (const load of s.loads.values()) n += load.outstanding;
    return n;
  }

  /**
   * Drops everything kept for `service` (rules, instances, loads, departed, picker): the
   * mesh released the destination (idle). A call still holding its picker goes on with the
   * state it had; the next call to the name starts from nothing, as a first call does.
   */
  forget(service: string): void {
    this.#services.delete(service);
  }

  /** Stops listening to the exclusion. */
  close(): void {
    this.#unsubscribeExclusion();
  }

  #state(service: string): ServiceState {
    let s = this.#services.get(service);
    if (!s) {
      s = {
        section: undefined,
        revision: 0,
        shadowSection: undefined,
        shadowTable: undefined,
        instances: [],
        table: undefined,
        loads: new Map(),
        departed: new Map(),
        graceUntil: Number.POSITIVE_INFINITY,
        panicking: false,
        picker: undefined,
      };
      this.#services.set(service, s);
    }
    return s;
  }

  #table(service: string): RouteTable {
    return this.#tableOf(this.#state(service), service);
  }

  #tableOf(s: ServiceState, service: string): RouteTable {
    // A departed instance's grace ended: rebuild without it. One comparison while none is remembered.
    if (s.graceUntil !== Number.POSITIVE_INFINITY && this.#clock.now() >= s.graceUntil) {
      this.#noteDepartures(s, s.instances, undefined);
      s.table = undefined;
    }
    if (s.table) return s.table;
    const { section } = s;
    const settings: PoolSettings = {
      location: this.#location,
      nearby: { ...this.#nearby, ...section?.nearby },
      loadBalancer: section?.loadBalancer ?? this.#loadBalancer,
      random: this.#random,
      panicThresholdPercent: this.#panic,
    };
    // Counters of instances that left are dropped here; the ones that stay keep counting.
    const previous = s.loads;
    const loads = new Map<string, LoadCount>();
    for (const i of s.instances) {
      const old = previous.get(i.id);
      if (old) loads.set(i.id, old);
    }
    for (const d of s.departed.values()) {
      const old = previous.get(d.instance.id);
      if (old) loads.set(d.instance.id, old);
    }
    s.loads = loads;
    s.table = new RouteTable({
      service,
      section,
      instances: s.instances,
      departed: [...s.departed.values()].map((d) => d.instance),
      exclusion: this.#exclusion,
      loads,
      settings,
    });
    // Logged on the change, not per call: a rebuild happens when instances, rules or exclusions change.
    const panicking = s.table.panicking.length > 0;
    if (panicking !== s.panicking) {
      s.panicking = panicking;
      if (panicking) {
        this.#logger.warn('too few healthy instances: routing to all of them (panic)', {
          code: 'MESHLET_ROUTE_PANIC',
          service,
          groups: s.table.panicking.map((p) => p.describe()).join('; '),
          departed: s.departed.size,
        });
      } else this.#logger.info('enough healthy instances again: panic over', { code: 'MESHLET_ROUTE_PANIC_OVER', service });
    }
    return s.table;
  }
}

/** The span attributes of a decision `rule`'s destination group `chosen` served (kept in `rule.routed`). */
function routedAttributes(rule: CompiledRule, chosen: number): RouteSpanAttributes {
  const { destinations, stickyBy } = rule;
  const attributes: Record<string, string | number> = { 'io.meshlet.route.group': destinations.groups[chosen] as string };
  if (stickyBy !== undefined) attributes['io.meshlet.route.sticky_by'] = stickyBy;
  Object.assign(attributes, (destinations.pools[chosen] as InstancePool).spanAttributes);
  rule.routed[chosen] = attributes;
  return attributes;
}

/**
 * The span attributes and log fields of a decision that left `rule`'s group `chosen` for
 * its fallback's group `target`, or (past the fallback's groups) the default route's: the
 * group the rule chose, and `io.meshlet.route.fallback`, where the call went instead
 * (`fallback:<group>` or `default:<group>`).
 */
function redirectOf(table: RouteTable, rule: CompiledRule, chosen: number, target: number): Redirect {
  const fallbacks = rule.fallback?.pools.length ?? 0;
  const toFallback = target < fallbacks;
  const to: WeightedPools = toFallback ? (rule.fallback as WeightedPools) : table.defaultRoute;
  const index = toFallback ? target : target - fallbacks;
  const group = rule.destinations.groups[chosen] as string;
  const empty = rule.destinations.pools[chosen] as InstancePool;
  const servedBy = `${toFallback ? 'fallback' : 'default'}:${to.groups[index] as string}`;
  const spanAttributes: Record<string, string | number> = { 'io.meshlet.route.group': group, 'io.meshlet.route.fallback': servedBy };
  // The fallback's group is found from the sticky point; the default route's is drawn at random.
  if (rule.stickyBy !== undefined && toFallback) spanAttributes['io.meshlet.route.sticky_by'] = rule.stickyBy;
  Object.assign(spanAttributes, (to.pools[index] as InstancePool).spanAttributes);
  const logFields = {
    code: 'MESHLET_ROUTE_GROUP_EMPTY',
    service: table.service,
    rule: rule.name.length > 128 ? `${rule.name.slice(0, 128)}…` : rule.name,
    group,
    registered: empty.total,
    healthy: empty.healthy,
    to: servedBy,
  };
  return { spanAttributes, logFields };
}

function pickIn(pool: InstancePool, tags: TagLookup, tried: ReadonlySet<string> | undefined): Instance | undefined {
  return tried === undefined ? pool.pick(tags) : pool.pickUntried(tried);
}

/**
 * The span attributes of a call routing refused (its NoInstanceError's `spanAttributes`):
 * the revision of the rule document whose route section decided, and the rule that matched
 * when one did, as a routed call's span has them (RouteDecision `revision`, `rule`).
 */
function refusalAttributes(revision: number, rule: string | undefined): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  if (revision > 0) out['io.meshlet.rules.revision'] = revision;
  if (rule !== undefined) out['io.meshlet.route'] = rule;
  return out;
}

function explain(table: RouteTable, walk: Walk): string {
  const { lane, rule, tried, fallback } = walk;
  const last = walk.last as InstancePool;
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
