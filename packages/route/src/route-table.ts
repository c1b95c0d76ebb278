import { compileConditions, type Instance, type InstanceExclusion, type Matcher, SystemTag } from '@meshlet/core';
import { type Endpoint, instanceWeight, LoadCount } from './endpoint.js';
import { InstancePool, type PoolSettings } from './instance-pool.js';
import { LANE_META_KEY } from './lane.js';
import type { Member } from './nearby.js';
import type { Destination, GroupSelector, RouteSection } from './route-rule.js';
import { RuleIndex } from './rule-index.js';
import { stickySalt } from './sticky.js';

/** Groups chosen by weight: pool i takes r in [cumulative[i-1], cumulative[i]) of r in [0, 100). */
export interface WeightedPools {
  readonly cumulative: readonly number[];
  readonly pools: readonly InstancePool[];
  /** Each pool's group as rules name it, keys sorted (`{"version":"1.21"}`, `{}` for every instance), cut for spans and logs. */
  readonly groups: readonly string[];
}

/** A decision's span attributes (RouteDecision `spanAttributes`). */
export type RouteSpanAttributes = Readonly<Record<string, string | number>>;

/**
 * What a rule's decision that left its chosen group for another tells: the span's
 * attributes, and the fields of its MESHLET_ROUTE_GROUP_EMPTY line.
 */
export interface Redirect {
  readonly spanAttributes: RouteSpanAttributes;
  readonly logFields: Readonly<Record<string, string | number>>;
}

export interface CompiledRule {
  readonly name: string;
  readonly matches: Matcher;
  readonly destinations: WeightedPools;
  readonly fallback: WeightedPools | undefined;
  /** The rule's `stickyBy` tag, if any, and its salt's hash state (see sticky.ts). */
  readonly stickyBy: string | undefined;
  readonly stickySalt: number;
  /**
   * Made on the first decision that needs each, kept with the table (rebuilt on any change),
   * so a decision allocates nothing: the span attributes of a decision served by destination
   * group i (`routed[i]`), and of one whose group i had nothing to route to and that went
   * to the fallback's group j (`redirects[i * width + j]`) or the default route's group k
   * (`redirects[i * width + fallbacks + k]`), width being fallbacks + defaults.
   */
  readonly routed: (RouteSpanAttributes | undefined)[];
  readonly redirects: (Redirect | undefined)[];
}

const EVERYTHING: readonly Destination[] = [{ group: {}, weight: 100 }];

/** Longest group name (its selector's JSON) on a span or a log line; 16 keys of 128 characters can be long. */
const GROUP_NAME_MAX = 256;

/**
 * Everything about routing to one service that depends only on its rules, its instances
 * and the exclusions: rules sorted and compiled, every group's pool with its nearby level
 * and balancer, and the lanes. Rebuilt whole on any change and swapped in at once, so a
 * decision sees either the old table or the new one, never a mix.
 */
export class RouteTable {
  readonly service: string;
  readonly rules: readonly CompiledRule[];
  /** Finds the first matching rule testing only the rules the request's tags can match. */
  readonly ruleIndex: RuleIndex;
  readonly defaultRoute: WeightedPools;
  /** Pools of the instances in each lane; lane instances never serve requests outside their lane. */
  readonly lanes: ReadonlyMap<string, InstancePool>;
  /** True when some condition reads `destination.service`: only then is the lookup wrapped. */
  readonly readsDestination: boolean;
  readonly instanceCount: number;
  readonly baselineCount: number;
  /** The groups (and lanes) in panic: too few healthy instances, so routing to all of them. */
  readonly panicking: readonly InstancePool[];

  constructor(opts: {
    service: string;
    section: RouteSection | undefined;
    instances: readonly Instance[];
    /** Instances that left in a sudden drop, still in their grace: routed to only in panic. */
    departed?: readonly Instance[];
    exclusion: InstanceExclusion;
    loads: Map<string, LoadCount>;
    settings: PoolSettings;
  }) {
    const { section, settings } = opts;
    this.service = opts.service;
    const baseline: Member[] = [];
    const byLane = new Map<string, Member[]>();
    const departed = opts.departed ?? [];
    const all = departed.length === 0 ? opts.instances : [...opts.instances, ...departed];
    for (let n = 0; n < all.length; n++) {
      const instance = all[n] as Instance;
      let load = opts.loads.get(instance.id);
      if (!load) {
        load = new LoadCount();
        opts.loads.set(instance.id, load);
      }
      const endpoint: Endpoint = { instance, weight: instanceWeight(instance), load };
      const excluded = opts.exclusion.isExcluded(instance.id);
      const member: Member =
        n < opts.instances.length
          ? { endpoint, healthy: instance.health === 'passing' && !excluded, excluded }
          : { endpoint, healthy: false, excluded, departed: true };
      const lane = instance.metadata[LANE_META_KEY];
      if (lane === undefined || lane === '') baseline.push(member);
      else {
        const list = byLane.get(lane) ?? [];
        list.push(member);
        byLane.set(lane, list);
      }
    }
    this.instanceCount = opts.instances.length;
    this.baselineCount = baseline.reduce((c, m) => c + (m.departed ? 0 : 1), 0);
    this.lanes = new Map([...byLane].map(([lane, members]) => [lane, new InstancePool(`lane "${lane}"`, members, settings)]));

    // The baseline by metadata key, then value, in baseline order; a key's index is made the
    // first time a selector names it. A selector then filters the shortest of its lists, so
    // the table costs the instances once per key named, not once per distinct selector
    // (3,264 groups over 10,000 instances filtered 32 million members).
    const byKey = new Map<string, Map<string, Member[]>>();
    const withValue = (key: string, value: string): readonly Member[] => {
      let values = byKey.get(key);
      if (values === undefined) {
        values = new Map();
        for (const m of baseline) {
          const v = m.endpoint.instance.metadata[key];
          if (typeof v !== 'string') continue; // absent (or Object.prototype's `constructor`)
          const list = values.get(v);
          if (list === undefined) values.set(v, [m]);
          else list.push(m);
        }
        byKey.set(key, values);
      }
      return values.get(value) ?? [];
    };
    // One pool per distinct selector, shared by every rule that names it.
    const pools = new Map<string, InstancePool>();
    const names = new Map<InstancePool, string>();
    const poolFor = (group: GroupSelector): InstancePool => {
      const entries = Object.entries(group).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const key = JSON.stringify(entries);
      let pool = pools.get(key);
      if (!pool) {
        const name = JSON.stringify(Object.fromEntries(entries));
        let shortest: readonly Member[] = baseline;
        for (const [k, v] of entries) {
          const list = withValue(k, v);
          if (list.length < shortest.length) shortest = list;
        }
        const members = shortest.filter((m) => entries.every(([k, v]) => m.endpoint.instance.metadata[k] === v));
        pool = new InstancePool(entries.length === 0 ? 'every instance' : `group ${name}`, members, settings);
        pools.set(key, pool);
        names.set(pool, name.length > GROUP_NAME_MAX ? `${name.slice(0, GROUP_NAME_MAX)}…` : name);
      }
      return pool;
    };
    const weighted = (list: readonly Destination[]): WeightedPools => {
      let sum = 0;
      const chosen = list.map((d) => poolFor(d.group));
      return { cumulative: list.map((d) => (sum += d.weight)), pools: chosen, groups: chosen.map((p) => names.get(p) as string) };
    };
    // Array sort is stable: equal priorities keep document order.
    const sorted = [...(section?.rules ?? [])].sort((a, b) => a.priority - b.priority);
    this.rules = sorted.map((r) => ({
      name: r.name,
      matches: compileConditions(r.when),
      destinations: weighted(r.destinations),
      fallback: r.fallback ? weighted(r.fallback) : undefined,
      stickyBy: r.stickyBy,
      stickySalt: r.stickyBy === undefined ? 0 : stickySalt(r.name),
      routed: [],
      redirects: [],
    }));
    this.ruleIndex = new RuleIndex(sorted.map((r, i) => ({ when: r.when, matches: (this.rules[i] as CompiledRule).matches })));
    this.defaultRoute = weighted(section?.default ?? EVERYTHING);
    this.readsDestination = sorted.some((r) => r.when.some((c) => c.tag === SystemTag.destinationService));
    this.panicking = [...pools.values(), ...this.lanes.values()].filter((p) => p.panic);
  }
}

/** The index of the pool that `r` in [0, 100) falls in. */
export function chooseIndex(w: WeightedPools, r: number): number {
  const { cumulative } = w;
  for (let i = 0; i < cumulative.length; i++) if (r < (cumulative[i] as number)) return i;
  return cumulative.length - 1;
}

/** `r`'s place in pool `i`'s slice of [0, 100), stretched to [0, 100). */
export function withinSlice(w: WeightedPools, i: number, r: number): number {
  const lo = i === 0 ? 0 : (w.cumulative[i - 1] as number);
  const width = (w.cumulative[i] as number) - lo;
  return width > 0 ? ((r - lo) / width) * 100 : r;
}
