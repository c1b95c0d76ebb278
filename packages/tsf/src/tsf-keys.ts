/**
 * Where TSF keeps its rules in Consul KV, as its SDKs read them (polaris-java
 * connector-consul RoutingService, RateLimitingService, AuthorityService,
 * CircuitBreakingService). Each value is a YAML document.
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
} as const;
