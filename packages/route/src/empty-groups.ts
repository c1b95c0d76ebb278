import type { Instance } from '@meshlet/core';
import { LANE_META_KEY } from './lane.js';
import type { Destination, GroupSelector, RouteSection } from './route-rule.js';

/** A group a route section sends traffic to that no instance serves now. */
export interface EmptyGroup {
  /** The rule that sends to it; undefined for the section's `default`. */
  readonly rule: string | undefined;
  /** Where in the rule: its `destinations`, its `fallback`, or the section's `default`. */
  readonly list: 'destinations' | 'fallback' | 'default';
  readonly group: GroupSelector;
  /** Instances in the group, passing or not (a group with some, none passing, is empty all the same). */
  readonly registered: number;
}

/**
 * The groups `section` sends traffic to (weight over 0) that none of `instances` serves
 * now, as the routing table selects them: instances in no lane whose metadata has every
 * key and value of the group, passing their health checks. For a warning before rules are
 * applied (`meshlet rules apply`): instances may register later, so an empty group is not
 * an error. Each group once per list of each rule.
 */
export function emptyGroups(section: RouteSection, instances: readonly Instance[]): EmptyGroup[] {
  const baseline = instances.filter((i) => {
    const lane = i.metadata[LANE_META_KEY];
    return lane === undefined || lane === '';
  });
  const out: EmptyGroup[] = [];
  const check = (rule: string | undefined, list: EmptyGroup['list'], destinations: readonly Destination[] | undefined) => {
    const seen = new Set<string>();
    for (const d of destinations ?? []) {
      const entries = Object.entries(d.group);
      const key = JSON.stringify(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      if (d.weight <= 0 || seen.has(key)) continue;
      seen.add(key);
      const members = baseline.filter((i) => entries.every(([k, v]) => i.metadata[k] === v));
      if (!members.some((i) => i.health === 'passing')) out.push({ rule, list, group: d.group, registered: members.length });
    }
  };
  for (const r of section.rules) {
    check(r.name, 'destinations', r.destinations);
    check(r.name, 'fallback', r.fallback);
  }
  check(undefined, 'default', section.default);
  return out;
}
