import {
  type Condition,
  field,
  parseCondition,
  type RuleKind,
  type RuleKindEntry,
  RuleValidationError,
  shippedSchema,
} from '@meshlet/core';

/** The priority of a rule that names none: after every explicit priority up to it, in document order. */
export const DEFAULT_PRIORITY = 1_000_000;

/**
 * Instance metadata a group's members must all have, e.g. `{ "version": "v1.21" }`.
 * An empty selector is every instance of the service.
 */
export type GroupSelector = Readonly<Record<string, string>>;

/** A share of the traffic a rule sends to one group. */
export interface Destination {
  readonly group: GroupSelector;
  /** Whole percent, 0-100; the weights of one list sum to 100. */
  readonly weight: number;
}

export interface RouteRule {
  readonly name: string;
  /** Lower runs first; equal priorities keep document order. */
  /** Lower runs first; equal priorities keep document order. Default DEFAULT_PRIORITY. */
  readonly priority: number;
  /** Core conditions, ANDed; an empty list matches every request. */
  readonly when: readonly Condition[];
  readonly destinations: readonly Destination[];
  /** Where the request goes when the group chosen by weight has no healthy instance. */
  readonly fallback?: readonly Destination[];
  /**
   * A request tag (e.g. `user-id`): a request carrying it goes to the group its value hashes
   * to (salted by the rule's name), so a user stays in one group; without it, or empty,
   * the group is drawn at random per request.
   */
  readonly stickyBy?: string;
}

export type LoadBalancerConfig =
  | { readonly type: 'roundRobin' }
  | { readonly type: 'random' }
  | { readonly type: 'leastRequests' }
  | { readonly type: 'consistentHash'; readonly hashTag: string; readonly virtualNodes?: number };

export const LOAD_BALANCERS = ['roundRobin', 'random', 'leastRequests', 'consistentHash'] as const;
/**
 * The balancer of a service whose rules name none (RouterOptions.loadBalancer changes it):
 * least requests, weighted, as Istio's default since 1.14. A slow or hung instance keeps
 * its calls in flight and stops being chosen; round robin would send it 1/n of all calls.
 */
export const DEFAULT_LOAD_BALANCER: LoadBalancerConfig = Object.freeze({ type: 'leastRequests' });
export type LoadBalancerType = (typeof LOAD_BALANCERS)[number];

export interface NearbyConfig {
  readonly enabled: boolean;
  /**
   * A level (zone, then region) is used while at least this percent of its instances are
   * healthy; under it, calls go to the next wider level until the share recovers.
   */
  readonly minHealthyPercent: number;
}

/** The `route` section of a service's rule document: how calls to that service are routed. */
export interface RouteSection {
  readonly rules: readonly RouteRule[];
  /** Used when no rule matches, or a rule's group and fallback are empty. Absent: every instance. */
  readonly default?: readonly Destination[];
  readonly loadBalancer?: LoadBalancerConfig;
  readonly nearby?: Partial<NearbyConfig>;
  /** `shadow`: calls route as if the section were absent; the rule it would have applied is reported. Absent: `enforce`. */
  readonly mode?: 'enforce' | 'shadow';
}

export const ROUTE_SECTION_MODES = ['enforce', 'shadow'] as const;

/** Bounds that keep a rule document cheap to compile and to evaluate. */
export const RouteLimits = {
  maxRules: 1000,
  maxConditions: 32,
  maxDestinations: 16,
  maxSelectorKeys: 16,
  maxVirtualNodes: 1000,
} as const;

// The same characters core allows in metadata keys, so a selector can name any key.
const META_KEY = /^[A-Za-z0-9_-]{1,128}$/;

/** Parses and validates a `route` section; every error names the field. */
export function parseRouteSection(raw: unknown, path = 'route'): RouteSection {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['rules', 'default', 'loadBalancer', 'nearby', 'mode']);
  const mode = obj.mode === undefined ? undefined : field.oneOf(obj.mode, `${path}.mode`, ROUTE_SECTION_MODES);
  const rawRules = obj.rules === undefined ? [] : field.array(obj.rules, `${path}.rules`);
  if (rawRules.length > RouteLimits.maxRules) throw new RuleValidationError(`${path}.rules`, `at most ${RouteLimits.maxRules} rules`);
  const rules = rawRules.map((r, i) => parseRule(r, `${path}.rules[${i}]`));
  const seen = new Map<string, number>();
  rules.forEach((r, i) => {
    const first = seen.get(r.name);
    if (first !== undefined)
      throw new RuleValidationError(`${path}.rules[${i}].name`, `"${r.name}" is already the name of rules[${first}]`);
    seen.set(r.name, i);
  });
  const section: {
    rules: RouteRule[];
    default?: readonly Destination[];
    loadBalancer?: LoadBalancerConfig;
    nearby?: Partial<NearbyConfig>;
    mode?: 'shadow';
  } = { rules };
  if (mode === 'shadow') section.mode = mode;
  if (obj.default !== undefined) section.default = parseDestinations(obj.default, `${path}.default`);
  if (obj.loadBalancer !== undefined) section.loadBalancer = parseLoadBalancer(obj.loadBalancer, `${path}.loadBalancer`);
  if (obj.nearby !== undefined) section.nearby = parseNearby(obj.nearby, `${path}.nearby`);
  return section;
}

/** The `route` rule kind, for RuleWatcher and RuleRepository. */
export const routeRuleKind: RuleKind<RouteSection> = { name: 'route', parse: parseRouteSection };

/** The `route` rule kind as this package publishes it: parser and JSON Schema. */
export const routeRule: RuleKindEntry<RouteSection> = {
  kind: routeRuleKind,
  schema: shippedSchema('@meshlet/route', 'schema/route.schema.json', import.meta.url),
};

function parseRule(raw: unknown, path: string): RouteRule {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['name', 'priority', 'when', 'destinations', 'fallback', 'stickyBy']);
  const name = field.ruleName(obj.name, `${path}.name`, 128);
  // Optional: a rule without one runs after the rules that name one, in document order.
  const priority = obj.priority === undefined ? DEFAULT_PRIORITY : field.integer(obj.priority, `${path}.priority`, 0, 1_000_000);
  const rawWhen = obj.when === undefined ? [] : field.array(obj.when, `${path}.when`);
  if (rawWhen.length > RouteLimits.maxConditions)
    throw new RuleValidationError(`${path}.when`, `at most ${RouteLimits.maxConditions} conditions`);
  const when = rawWhen.map((c, i) => parseCondition(c, `${path}.when[${i}]`));
  const destinations = parseDestinations(obj.destinations, `${path}.destinations`);
  const rule: {
    name: string;
    priority: number;
    when: Condition[];
    destinations: readonly Destination[];
    fallback?: readonly Destination[];
    stickyBy?: string;
  } = {
    name,
    priority,
    when,
    destinations,
  };
  if (obj.fallback !== undefined) rule.fallback = parseDestinations(obj.fallback, `${path}.fallback`);
  if (obj.stickyBy !== undefined) rule.stickyBy = tagName(obj.stickyBy, `${path}.stickyBy`);
  return rule;
}

function parseDestinations(raw: unknown, path: string): readonly Destination[] {
  const list = field.array(raw, path);
  if (list.length === 0) throw new RuleValidationError(path, 'must name at least one group');
  if (list.length > RouteLimits.maxDestinations) throw new RuleValidationError(path, `at most ${RouteLimits.maxDestinations} groups`);
  const out = list.map((d, i) => parseDestination(d, `${path}[${i}]`));
  const total = out.reduce((sum, d) => sum + d.weight, 0);
  if (total !== 100) throw new RuleValidationError(path, `weights must sum to 100 (they sum to ${total})`);
  return out;
}

function parseDestination(raw: unknown, path: string): Destination {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['group', 'weight']);
  const groupObj = field.object(obj.group, `${path}.group`);
  const keys = Object.keys(groupObj);
  if (keys.length > RouteLimits.maxSelectorKeys)
    throw new RuleValidationError(`${path}.group`, `at most ${RouteLimits.maxSelectorKeys} metadata keys`);
  const group: Record<string, string> = {};
  for (const k of keys) {
    if (!META_KEY.test(k)) throw new RuleValidationError(`${path}.group.${k}`, 'metadata keys use letters, digits, "_" and "-" only');
    // JSON.parse makes "__proto__" an own key; assigned below it would set the prototype, and the
    // selector would silently lose it (`{}`: every instance).
    if (k === '__proto__') throw new RuleValidationError(`${path}.group.${k}`, '"__proto__" cannot be a metadata key in a selector');
    group[k] = field.string(groupObj[k], `${path}.group.${k}`);
  }
  return { group, weight: field.integer(obj.weight, `${path}.weight`, 0, 100) };
}

function parseLoadBalancer(raw: unknown, path: string): LoadBalancerConfig {
  const obj = field.object(raw, path);
  const type = field.oneOf(obj.type, `${path}.type`, LOAD_BALANCERS);
  if (type !== 'consistentHash') {
    field.onlyKeys(obj, path, ['type']);
    return { type };
  }
  field.onlyKeys(obj, path, ['type', 'hashTag', 'virtualNodes']);
  const hashTag = tagName(obj.hashTag, `${path}.hashTag`);
  if (obj.virtualNodes === undefined) return { type, hashTag };
  return { type, hashTag, virtualNodes: field.integer(obj.virtualNodes, `${path}.virtualNodes`, 1, RouteLimits.maxVirtualNodes) };
}

/** A tag a rule reads: as a condition's `tag`, 1-128 characters. */
function tagName(raw: unknown, path: string): string {
  const tag = field.string(raw, path, 128);
  if (tag.length === 0) throw new RuleValidationError(path, 'must not be empty');
  return tag;
}

function parseNearby(raw: unknown, path: string): Partial<NearbyConfig> {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['enabled', 'minHealthyPercent']);
  const out: { enabled?: boolean; minHealthyPercent?: number } = {};
  if (obj.enabled !== undefined) out.enabled = field.boolean(obj.enabled, `${path}.enabled`);
  if (obj.minHealthyPercent !== undefined) out.minHealthyPercent = field.number(obj.minHealthyPercent, `${path}.minHealthyPercent`, 0, 100);
  return out;
}
