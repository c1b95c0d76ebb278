import { type NoticeSink, tsfField } from './tsf-fields.js';
import { TsfFieldError } from './tsf-rule-error.js';

// polaris-java connector-consul circuitbreaker/entity: CircuitBreakerRule, CircuitBreakerStrategy,
// CircuitBreakerApi, TsfCircuitBreakerConstant; CircuitBreakingService for the conversion.
const RULE_KEYS = ['isolationLevel', 'strategyList', 'targetServiceName', 'targetNamespaceId'];
const RULE_IGNORED = ['ruleId', 'microserviceId', 'microserviceName', 'namespaceId', 'updateTime', 'effectTime', 'createTime'];
const STRATEGY_KEYS = [
  'apiList',
  'slidingWindowSize',
  'minimumNumberOfCalls',
  'failureRateThreshold',
  'waitDurationInOpenState',
  'maxEjectionPercent',
  'slowCallDurationThreshold',
  'slowCallRateThreshold',
];
const STRATEGY_IGNORED = ['strategyId', 'ruleId'];
const API_KEYS = ['path', 'method'];
const API_IGNORED = ['apiId', 'strategyId'];

/**
 * TSF's defaults for a field a strategy omits: the field initialisers of polaris-java
 * CircuitBreakerStrategy (TSF's Resilience4J settings).
 */
export const TsfBreakerDefaults = {
  /** Seconds of calls the failure rate is judged over. */
  slidingWindowSize: 10,
  minimumNumberOfCalls: 10,
  /** Percent. */
  failureRateThreshold: 50,
  /** Seconds open before half-open. */
  waitDurationInOpenState: 60,
  /** Percent of instances an instance-level breaker may eject. */
  maxEjectionPercent: 50,
  /** Milliseconds after which a call is slow. */
  slowCallDurationThreshold: 60_000,
  /** Percent. */
  slowCallRateThreshold: 50,
} as const;

/** Bounds TSF validates (TsfCircuitBreakerConstant). */
export const TsfBreakerBounds = {
  slidingWindowSize: [1, 9999],
  failureRateThreshold: [1, 100],
  waitDurationInOpenState: [1, 9999],
  maxEjectionPercent: [0, 100],
  minimumNumberOfCalls: [1, Number.MAX_SAFE_INTEGER],
} as const;

/** Successful probes that close a half-open breaker: polaris-java sets 3 ("default 3") for TSF rules. */
export const TSF_BREAKER_PROBES = 3;
/** TSF counts every HTTP 400-599 answer as a failure (CircuitBreakingService: RET_CODE IN 400..599). */
export const TSF_BREAKER_FAILURE_STATUSES = ['4xx', '5xx'] as const;
/** Meshlet's longest breaker window and sleep, in seconds (breaker-rule's one hour). */
const MESHLET_MAX_SECONDS = 3600;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

/**
 * Converts TSF's circuit breaker document
 * (`circuitbreaker/<callerNs>/<callerSvc>/<ns>/<svc>/data`: one rule) into a Meshlet
 * `breaker` section. SERVICE and INSTANCE rules have exactly one strategy (TSF's default
 * strategy when none is given); API rules one Meshlet API rule per strategy.
 */
export function convertTsfBreaker(doc: unknown, destination: string, notice: NoticeSink): Record<string, unknown> {
  if (doc === null || doc === undefined) return { rules: [] };
  const rule = tsfField.object(doc, '');
  tsfField.reportUnknown(rule, '', RULE_KEYS, RULE_IGNORED, notice);
  const target = tsfField.optionalText(rule.targetServiceName, '.targetServiceName');
  if (target !== undefined && target !== destination) {
    throw new TsfFieldError('.targetServiceName', `is "${target}", but the key is for "${destination}"`);
  }
  const level = tsfField.text(rule.isolationLevel, '.isolationLevel');
  if (level !== 'SERVICE' && level !== 'API' && level !== 'INSTANCE') {
    throw new TsfFieldError('.isolationLevel', `must be SERVICE, API or INSTANCE (got "${level}")`);
  }
  let strategies = tsfField.optionalList(rule.strategyList, '.strategyList');
  if (strategies.length === 0) {
    if (level === 'API') throw new TsfFieldError('.strategyList', 'an API rule needs at least one strategy with its apiList');
    // CircuitBreakerRule.validate: SERVICE and INSTANCE rules without a strategy get the default one.
    strategies = [{}];
  }
  if (level !== 'API' && strategies.length !== 1) {
    throw new TsfFieldError('.strategyList', `a ${level} rule has exactly one strategy (got ${strategies.length})`);
  }
  const rules = strategies.map((s, i) => convertStrategy(s, `.strategyList[${i}]`, level, notice));
  return { rules, failureStatuses: [...TSF_BREAKER_FAILURE_STATUSES] };
}

function convertStrategy(raw: unknown, path: string, level: 'SERVICE' | 'API' | 'INSTANCE', notice: NoticeSink): Record<string, unknown> {
  const s = tsfField.object(raw, path);
  tsfField.reportUnknown(s, path, STRATEGY_KEYS, STRATEGY_IGNORED, notice);
  const d = TsfBreakerDefaults;
  const b = TsfBreakerBounds;
  const windowS = tsfField.optionalInteger(s.slidingWindowSize, `${path}.slidingWindowSize`, d.slidingWindowSize, ...b.slidingWindowSize);
  const sleepS = tsfField.optionalInteger(
    s.waitDurationInOpenState,
    `${path}.waitDurationInOpenState`,
    d.waitDurationInOpenState,
    ...b.waitDurationInOpenState,
  );
  if (windowS > MESHLET_MAX_SECONDS)
    throw new TsfFieldError(`${path}.slidingWindowSize`, `Meshlet's longest window is ${MESHLET_MAX_SECONDS} s`);
  if (sleepS > MESHLET_MAX_SECONDS)
    throw new TsfFieldError(`${path}.waitDurationInOpenState`, `Meshlet's longest open state is ${MESHLET_MAX_SECONDS} s`);
  const out: Record<string, unknown> = {
    level: level.toLowerCase(),
    window: { type: 'time', ms: windowS * 1000, buckets: Math.min(10, windowS) },
    failureRateThreshold: tsfField.optionalInteger(
      s.failureRateThreshold,
      `${path}.failureRateThreshold`,
      d.failureRateThreshold,
      ...b.failureRateThreshold,
    ),
    minimumCalls: tsfField.optionalInteger(s.minimumNumberOfCalls, `${path}.minimumNumberOfCalls`, d.minimumNumberOfCalls, 1, 100_000),
    // Resilience4J, and so TSF, has no consecutive-failure trigger.
    consecutiveFailures: 0,
    slowCallThresholdMs: tsfField.optionalInteger(
      s.slowCallDurationThreshold,
      `${path}.slowCallDurationThreshold`,
      d.slowCallDurationThreshold,
      1,
      MESHLET_MAX_SECONDS * 1000,
    ),
    slowCallRateThreshold: tsfField.optionalInteger(
      s.slowCallRateThreshold,
      `${path}.slowCallRateThreshold`,
      d.slowCallRateThreshold,
      ...b.failureRateThreshold,
    ),
    sleepWindowMs: sleepS * 1000,
    probes: TSF_BREAKER_PROBES,
  };
  const ejection = tsfField.optionalInteger(
    s.maxEjectionPercent,
    `${path}.maxEjectionPercent`,
    d.maxEjectionPercent,
    ...b.maxEjectionPercent,
  );
  if (level === 'INSTANCE') out.maxEjectionPercent = ejection;
  else if (s.maxEjectionPercent !== undefined && s.maxEjectionPercent !== null)
    notice(`${path}.maxEjectionPercent`, 'only for INSTANCE rules; not applied');
  const apis = tsfField.optionalList(s.apiList, `${path}.apiList`);
  if (level === 'API') {
    if (apis.length === 0) throw new TsfFieldError(`${path}.apiList`, 'an API strategy names at least one API');
    out.apis = apis.map((a, j) => {
      const p = `${path}.apiList[${j}]`;
      const api = tsfField.object(a, p);
      tsfField.reportUnknown(api, p, API_KEYS, API_IGNORED, notice);
      const method = tsfField.text(api.method, `${p}.method`).toUpperCase();
      if (!HTTP_METHODS.includes(method)) throw new TsfFieldError(`${p}.method`, `must be an HTTP method (got "${method}")`);
      const apiPath = tsfField.text(api.path, `${p}.path`);
      if (!apiPath.startsWith('/')) throw new TsfFieldError(`${p}.path`, 'must start with "/"');
      return { method, path: apiPath };
    });
  } else if (apis.length > 0) notice(`${path}.apiList`, `only for API rules; not applied to a ${level} rule`);
  return out;
}
