import type { Instance, TagLookup } from '@meshlet/core';
import { ConsistentHash } from './consistent-hash.js';
import type { Endpoint } from './endpoint.js';
import { LeastRequests } from './least-requests.js';
import type { LoadBalancer } from './load-balancer.js';
import { type Location, type Member, type NearbyLevel, nearbyCandidates } from './nearby.js';
import type { RandomSource } from './random-source.js';
import type { LoadBalancerConfig, NearbyConfig } from './route-section.js';
import { SmoothWeightedRoundRobin } from './smooth-weighted-round-robin.js';
import { WeightedRandom } from './weighted-random.js';

export interface PoolSettings {
  readonly location: Location;
  readonly nearby: NearbyConfig;
  readonly loadBalancer: LoadBalancerConfig;
  readonly random: RandomSource;
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
  readonly #balancer: LoadBalancer | undefined;

  constructor(label: string, members: readonly Member[], settings: PoolSettings) {
    this.label = label;
    this.total = members.length;
    this.healthy = members.reduce((n, m) => n + (m.healthy ? 1 : 0), 0);
    const { level, candidates } = nearbyCandidates(members, settings.location, settings.nearby);
    this.level = level;
    this.#balancer = candidates.length === 0 ? undefined : createLoadBalancer(settings.loadBalancer, candidates, settings.random);
  }

  /** An instance, or undefined when the pool has no healthy instance. */
  pick(tags: TagLookup): Instance | undefined {
    return this.#balancer?.pick(tags);
  }

  get empty(): boolean {
    return this.#balancer === undefined;
  }

  describe(): string {
    return `${this.label} (${this.healthy} of ${this.total} instances healthy)`;
  }
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
  }
}
