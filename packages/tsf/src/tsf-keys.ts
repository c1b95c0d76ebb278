/**
 * Where TSF keeps its rules in Consul KV, as its SDKs read them (polaris-java
 * connector-consul RoutingService, RateLimitingService, AuthorityService,
 * CircuitBreakingService, NearByRouteRuleService, FaultService, LosslessService,
 * LaneService). Each value is a YAML document.
 */
export const tsfRuleKey = {
  /** Routes for calls to `service` (read by its callers). */
  route: (namespace: string, service: string) => `route/${namespace}/${service}/data`,
  /** Rate limits of `service` (read by the service itself). */
  ratelimit: (namespace: string, service: string) => `ratelimit/${namespace}/${service}/data`,
  /** Authority (allow/block lists) of `service` (read by the service itself). */
  authority: (namespace: string, service: string) => `authority/${namespace}/${service}/data`,
  /** The breaker a caller puts around calls to `service`. */
  circuitbreaker: (callerNamespace: string, callerService: string, namespace: string, service: string) =>
    `circuitbreaker/${callerNamespace}/${callerService}/${namespace}/${service}/data`,
  /** Nearby (zone) affinity of every service in `namespace` (polaris-java NearByRouteRuleService). */
  affinity: (namespace: string) => `affinity/${namespace}/data`,
  /** Faults a caller injects into calls to `service` (polaris-java FaultService). */
  fault: (namespace: string, service: string) => `fault/${namespace}/${service}/data`,
  /** Warm-up of one deployment group (polaris-java LosslessService reads the group id from the third segment). */
  warmup: (namespace: string, groupId: string) => `warmup/${namespace}/${groupId}/data`,
  /** Prefix of a namespace's warm-up documents, one per deployment group. */
  warmupPrefix: (namespace: string) => `warmup/${namespace}/`,
  /** Prefix of the lane documents (`LaneInfo`, one per lane), global to the TSF instance (polaris-java LaneService). */
  laneInfoPrefix: 'lane/info/',
  /** Prefix of the lane rule documents (`LaneRule`, one per rule). */
  laneRulePrefix: 'lane/rule/',
} as const;
