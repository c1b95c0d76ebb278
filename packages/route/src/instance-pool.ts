import { badOption, type Instance, namedIds, type RandomSource, shownValue, type TagLookup } from '@meshlet/core';
import { ConsistentHash } from './consistent-hash.js';
import type { Endpoint } from './endpoint.js';
import { LeastRequests } from './least-requests.js';
import type { LoadBalancer } from './load-balancer.js';
import { type Location, localityRank, type Member, type NearbyLevel, nearbyCandidates } from './nearby.js';
import { LOAD_BALANCERS, type LoadBalancerConfig, type NearbyConfig } from './route-rule.js';
import { SmoothWeightedRoundRobin } from './smooth-weighted-round-robin.js';
import { WeightedRandom } from './weighted-random.js';

export interface PoolSettings {
  readonly location: Location;
  readonly nearby: NearbyConfig;
  readonly loadBalancer: LoadBalancerConfig;
  readonly random: RandomSource;
  /**
   * Envoy's healthy panic threshold: when fewer than this percent of a pool's instances
   * (registered and recently departed) are healthy, and at least one is, the pool routes
   * to every instance that is not excluded, so the few healthy ones are not flooded. 0 turns it off.
   */
  readonly panicThresholdPercent: number;
}

/** An instance a retry may go to, with its locality rank (see localityRank). */
interface Ranked {
  readonly endpoint: Endpoint;
  readonly rank: number;
}

/**
 * One group of instances (a lane, or the instances a rule's group selects) with its
 * nearby level and load balancer decided up front. Built when rules, instances or
 * exclusions change; `pick` is the per-call part.
 */
export class InstancePool {
  /** What the pool is, for error messages: `group {"version":"v1.21"}`. */
  readonly label: string;
  readonly level: NearbyLevel;
  readonly total: number;
  readonly healthy: number;
  /** True when too few instances are healthy and the pool routes to all it may (see PoolSettings). */
  readonly panic: boolean;
  /**
   * The decision's span attributes when instances of this pool are left out because their
   * breakers are open: their count and ids (at most ten, core's `namedIds`). Undefined when none is.
   */
  readonly spanAttributes: Readonly<Record<string, string | number>> | undefined;
  readonly #balancer: LoadBalancer | undefined;
  /** Every instance a retry may go to, nearest locality first. */
  readonly #retryOrder: readonly Ranked[];
  readonly #random: RandomSource;

  constructor(label: string, members: readonly Member[], settings: PoolSettings) {
    this.label = label;
    const registered = members.filter((m) => !m.departed);
    this.total = registered.length;
    this.healthy = registered.reduce((n, m) => n + (m.healthy ? 1 : 0), 0);
    this.#random = settings.random;
    this.spanAttributes = ejectedAttributes(registered);
    const threshold = settings.panicThresholdPercent;
    // No healthy instance at all is not panic: the group is empty, and routing falls
    // through to the rule's fallback and the default route (how a gray release fails over).
    this.panic = threshold > 0 && this.healthy > 0 && this.healthy * 100 < threshold * members.length;
    let candidates: Endpoint[];
    if (this.panic) {
      this.level = 'any';
      candidates = members.filter((m) => !m.excluded).map((m) => m.endpoint);
    } else {
      const nearby = nearbyCandidates(registered, settings.location, settings.nearby);
      this.level = nearby.level;
      candidates = nearby.candidates;
    }
    this.#balancer = candidates.length === 0 ? undefined : createLoadBalancer(settings.loadBalancer, candidates, settings.random);
    // A retry goes to the balancer's candidates first, then may leave them: every usable
    // instance, the others ranked by locality after them.
    const usable = this.panic ? candidates : registered.filter((m) => m.healthy).map((m) => m.endpoint);
    const first = new Set(candidates);
    this.#retryOrder = usable
      .map((endpoint) => ({
        endpoint,
        rank: first.has(endpoint) ? 0 : 1 + (settings.nearby.enabled ? localityRank(endpoint.instance, settings.location) : 0),
      }))
      .sort((a, b) => a.rank - b.rank);
  }

  /** An instance, or undefined when the pool has no healthy instance. */
  pick(tags: TagLookup): Instance | undefined {
    return this.#balancer?.pick(tags);
  }

  /**
   * An instance not in `tried`, for a retry: one of the untried instances by weight, drawn
   * from the balancer's candidates while any is left, then from the nearest locality that
   * has any — this zone, this region, then anywhere. So a retry fails over to the next
   * locality when its zone's only instance failed, as Envoy's previous_hosts and
   * previous_priorities retry plug-ins do. The balancer is not asked: a retry must not move
   * the round-robin cursor that first attempts share, or with a dead instance in rotation
   * every retry steps past it and every next first attempt lands on it again. And the draw
   * is independent, not the schedule's next untried, so dead instances side by side in the
   * schedule do not fail the retries of each other. Undefined when every usable instance
   * was tried. The request's tags play no part in the draw.
   */
  pickUntried(tried: ReadonlySet<string>): Instance | undefined {
    let rank = -1;
    let total = 0;
    let chosen: Instance | undefined;
    for (const r of this.#retryOrder) {
      if (tried.has(r.endpoint.instance.id)) continue;
      if (rank === -1) rank = r.rank;
      else if (r.rank > rank) break;
      // Weighted reservoir: each untried instance of this rank with probability weight / total.
      total += r.endpoint.weight;
      if (this.#random() * total < r.endpoint.weight) chosen = r.endpoint.instance;
    }
    return chosen;
  }

  get empty(): boolean {
    return this.#balancer === undefined;
  }

  describe(): string {
    return `${this.label} (${this.healthy} of ${this.total} instances healthy)`;
  }
}

/**
 * `io.meshlet.route.ejected` and `.ejected_ids` (@meshlet/trace's names) for the excluded
 * members (core's `namedIds`: at most ten named), or undefined.
 */
function ejectedAttributes(registered: readonly Member[]): Readonly<Record<string, string | number>> | undefined {
  const ids: string[] = [];
  for (const m of registered) if (m.excluded) ids.push(m.endpoint.instance.id);
  if (ids.length === 0) return undefined;
  return { 'io.meshlet.route.ejected': ids.length, 'io.meshlet.route.ejected_ids': namedIds(ids) };
}

export function createLoadBalancer(config: LoadBalancerConfig, endpoints: readonly Endpoint[], random: RandomSource): LoadBalancer {
  switch (config.type) {
    case 'roundRobin':
      return new SmoothWeightedRoundRobin(endpoints, random);
    case 'random':
      return new WeightedRandom(endpoints, random);
    case 'leastRequests':
      return new LeastRequests(endpoints, random);
    case 'consistentHash':
      return new ConsistentHash(endpoints, config.hashTag, config.virtualNodes);
    default: {
      // A type no parser checked (a Router built directly, a cast): refused, never a pool with no balancer.
      const unknown: never = config;
      const type: unknown = (unknown as { type?: unknown }).type;
      throw badOption('loadBalancer.type', `${shownValue(type)} must be one of ${LOAD_BALANCERS.join(', ')}`);
    }
  }
}
