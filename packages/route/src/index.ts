export { ConsistentHash, DEFAULT_VIRTUAL_NODES, hashString, MAX_RING_POINTS } from './consistent-hash.js';
export { type EmptyGroup, emptyGroups } from './empty-groups.js';
export { DEFAULT_WEIGHT, type Endpoint, instanceWeight, type LoadCounter, MAX_WEIGHT } from './endpoint.js';
export { createLoadBalancer, InstancePool, type PoolSettings } from './instance-pool.js';
export { LANE_META_KEY, LANE_TAG } from './lane.js';
export { LeastRequests } from './least-requests.js';
export type { LoadBalancer } from './load-balancer.js';
export { DEFAULT_NEARBY, type Location, type Member, type NearbyLevel, nearbyCandidates } from './nearby.js';
export {
  DEFAULT_LOAD_BALANCER,
  type Destination,
  type GroupSelector,
  LOAD_BALANCERS,
  type LoadBalancerConfig,
  type LoadBalancerType,
  type NearbyConfig,
  parseRouteSection,
  RouteLimits,
  type RouteRule,
  type RouteSection,
  routeRule,
  routeRuleKind,
} from './route-rule.js';
export { type RouteDecision, type RoutePicker, Router, type RouterOptions, type RouteVia } from './router.js';
export { buildSchedule, MAX_SCHEDULE, SmoothWeightedRoundRobin } from './smooth-weighted-round-robin.js';
export {
  applyWarmup,
  BASE_WEIGHT_META,
  baseWeight,
  checkWarmupOptions,
  type InstanceSink,
  nextWarmupChangeAt,
  REGISTERED_AT_META,
  registeredAt,
  WARMUP_BOUNDS,
  WarmupFeed,
  type WarmupOptions,
  warmupWeight,
} from './warmup.js';
export { WeightedRandom } from './weighted-random.js';
