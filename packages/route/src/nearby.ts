import { MetaKey } from '@meshlet/core';
import type { Endpoint } from './endpoint.js';
import type { NearbyConfig } from './route-rule.js';

/** Where the calling process runs; instances say where they run in metadata `zone` / `region`. */
export interface Location {
  readonly zone?: string;
  readonly region?: string;
}

/** How far from the caller a decision went: its own zone, its region, or anywhere. */
export type NearbyLevel = 'zone' | 'region' | 'any';

/** An instance of a group with its health as of the last change (registry health and exclusions). */
export interface Member {
  readonly endpoint: Endpoint;
  /** Passing in the registry and not excluded. */
  readonly healthy: boolean;
  /** Left out by the InstanceExclusion (an ejected instance): never routed to, not even in panic. */
  readonly excluded?: boolean;
  /**
   * No longer registered: it left in a sudden drop and is remembered for a grace period.
   * Counted and routed to only in panic; nearby routing never sees it.
   */
  readonly departed?: boolean;
}

/** The rank of an instance's locality for the caller: 0 same zone, 1 same region, 2 elsewhere. */
export function localityRank(instance: Endpoint['instance'], location: Location): number {
  if (location.zone !== undefined && instance.metadata[MetaKey.zone] === location.zone) return 0;
  if (location.region !== undefined && instance.metadata[MetaKey.region] === location.region) return 1;
  return 2;
}

export const DEFAULT_NEARBY: NearbyConfig = { enabled: true, minHealthyPercent: 50 };

/**
 * The candidates of a group after nearby routing: the healthy instances of the caller's
 * zone while at least `minHealthyPercent` of that zone's instances are healthy, else of
 * its region under the same test, else every healthy instance. Evaluated when instances,
 * exclusions or rules change, so failover and return happen on the change that crosses
 * the threshold and cost nothing per call. A share exactly at the threshold stays.
 */
export function nearbyCandidates(
  members: readonly Member[],
  location: Location,
  config: NearbyConfig,
): { level: NearbyLevel; candidates: Endpoint[] } {
  if (config.enabled) {
    const levels: [NearbyLevel, string, string | undefined][] = [
      ['zone', MetaKey.zone, location.zone],
      ['region', MetaKey.region, location.region],
    ];
    for (const [level, key, want] of levels) {
      if (want === undefined) continue;
      const local = members.filter((m) => m.endpoint.instance.metadata[key] === want);
      const healthy = local.filter((m) => m.healthy);
      if (healthy.length > 0 && healthy.length * 100 >= config.minHealthyPercent * local.length) {
        return { level, candidates: healthy.map((m) => m.endpoint) };
      }
    }
  }
  return { level: 'any', candidates: members.filter((m) => m.healthy).map((m) => m.endpoint) };
}
