import { NETWORK_ERROR_CODES } from '@meshlet/core';

/**
 * Characters kept of an attribute value a request decides (`url.full`, `url.path`,
 * `http.route`, `server.address` from Host): the queue is bounded in spans, so with this
 * bound it is bounded in bytes too. OpenTelemetry's attribute value length limit
 * (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`) has no default; 2,048 is what URLs are commonly
 * held to.
 */
export const MAX_REQUEST_VALUE_CHARS = 2048;

/** `value`, or its first characters and `…` (MAX_REQUEST_VALUE_CHARS in all), a surrogate pair never cut. */
export function boundedRequestValue(value: string): string {
  if (value.length <= MAX_REQUEST_VALUE_CHARS) return value;
  let end = MAX_REQUEST_VALUE_CHARS - 1;
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${value.slice(0, end)}…`;
}

/**
 * Attribute names. The HTTP ones are OpenTelemetry's stable HTTP semantic conventions
 * (v1.23+); Meshlet's own decisions live under the reverse-domain prefix `io.meshlet.`
 * so they can never collide with a future semantic convention.
 */
export const Attr = {
  httpRequestMethod: 'http.request.method',
  httpRequestMethodOriginal: 'http.request.method_original',
  httpResponseStatusCode: 'http.response.status_code',
  httpRequestResendCount: 'http.request.resend_count',
  httpRoute: 'http.route',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  urlFull: 'url.full',
  urlPath: 'url.path',
  urlQuery: 'url.query',
  urlScheme: 'url.scheme',
  errorType: 'error.type',
  servicePeerName: 'service.peer.name',
  clientAddress: 'client.address',
  serviceName: 'service.name',
  serviceVersion: 'service.version',
  serviceNamespace: 'service.namespace',
  serviceInstanceId: 'service.instance.id',
  codeFunctionName: 'code.function.name',
  /** The route rule that chose the destination. */
  meshletRoute: 'io.meshlet.route',
  /** The destination group that rule chose, its selector as JSON (`{"version":"1.21"}`). Set by routing. */
  meshletRouteGroup: 'io.meshlet.route.group',
  /** The tag that rule chooses its group by (its `stickyBy`), when it has one. */
  meshletRouteStickyBy: 'io.meshlet.route.sticky_by',
  /**
   * The chosen group had no instance to route to (none registered, passing, or out of open
   * breakers): where the call went instead, `fallback:<group>` (the rule's fallback) or
   * `default:<group>` (the default route). Logged as MESHLET_ROUTE_GROUP_EMPTY too.
   */
  meshletRouteFallback: 'io.meshlet.route.fallback',
  /** The lane (gray-release swim lane) the call ran in. */
  meshletLane: 'io.meshlet.lane',
  /** The limiter decision: `allowed`, `rejected`, or the limiter's name. */
  meshletLimiter: 'io.meshlet.limiter',
  /**
   * `shared` beside a refusal in io.meshlet.limiter: the rule's one bucket for requests
   * without a usable value of its `by` tags refused it, not a bucket of the caller's own.
   */
  meshletLimiterBucket: 'io.meshlet.limiter.bucket',
  /** The breaker state seen by the call: `closed`, `open`, `half_open`. */
  meshletBreaker: 'io.meshlet.breaker',
  /** The API key (`GET /orders/{id}`) of the api breaker the call passed, when an api breaker rule covers it. */
  meshletBreakerApi: 'io.meshlet.breaker.api',
  /** The instance id the attempt went to. */
  meshletInstance: 'io.meshlet.instance',
  /**
   * Store revision of the rule document whose rules decided on this span: the called
   * service's (route, breaker, fault) on a CLIENT span, this service's (auth, limits) on a
   * SERVER span. Absent when no document was in force. `RuleRepository.versionAt` (and
   * `meshlet explain` with a store) turns it into the version with its author and reason.
   */
  meshletRulesRevision: 'io.meshlet.rules.revision',
  /** The auth decision of a SERVER span when a rule (or the default of a section) decided: `<rule>:allowed|denied`, `(default):denied`. */
  meshletAuth: 'io.meshlet.auth',
  /** A rule in shadow mode would have decided otherwise: `<kind>:<rule>:<would-be outcome>`, e.g. `ratelimit:per-user:would-refuse`. */
  meshletShadow: 'io.meshlet.shadow',
  /**
   * The breaker that refused this call: `service` or `api` on a span with `error.type`
   * `circuit_open`; `instance` on a `no_instance` span when every instance routing offered
   * was refused by its own breaker. Written by the call executor (@meshlet/breaker).
   */
  meshletCircuitLevel: 'io.meshlet.circuit.level',
  /** The refusing breaker's API key (`GET /orders/{id}`), when its level is `api`. */
  meshletCircuitApi: 'io.meshlet.circuit.api',
  /** The refusing breaker's state: `open`, or `half_open` with all its probes out. */
  meshletCircuitState: 'io.meshlet.circuit.state',
  /**
   * Instances whose breakers refused this attempt's pick, space-separated (at most 10): the
   * attempt went to the next instance routing offered, or (level `instance`) nowhere.
   */
  meshletCircuitInstances: 'io.meshlet.circuit.instances',
  /**
   * A `breaker` section in shadow mode: the API key of the api breaker that would have
   * refused the call (`breaker:api:would-reject` in io.meshlet.shadow), on its first attempt.
   */
  meshletCircuitShadowApi: 'io.meshlet.circuit.shadow_api',
  /**
   * The call's breaker refused it and its fallback answered (nothing was sent): `breaker`,
   * beside the refusing breaker's io.meshlet.circuit.* and the fallback's status code.
   */
  meshletFallback: 'io.meshlet.fallback',
  /**
   * The mesh timed this attempt out (a breaker rule's `timeoutMs`, @meshlet/breaker's
   * TimeoutError): its timeout in ms, beside `error.type` `timeout`. Absent on a `timeout`
   * the caller's own deadline or AbortSignal.timeout cut.
   */
  meshletTimeoutMs: 'io.meshlet.timeout_ms',
  /**
   * Why this attempt is a retry (@meshlet/breaker's RetryReason): the failed attempt's
   * `not-sent`, `broken`, `stale` (its kept-alive connection went stale: this attempt may go
   * to the same instance, on a new connection) or `other`; a failed answer's status class
   * (`5xx`…); `answer` (an answer the caller asked to retry). Absent on a first attempt.
   */
  meshletRetry: 'io.meshlet.retry',
} as const;

/**
 * The documented values of `error.type` for governance outcomes, beside the HTTP status
 * code (as a string, e.g. `"503"`) and exception names that the conventions prescribe.
 */
export const GovernanceErrorType = {
  /** The breaker was open: no request was sent. */
  circuitOpen: 'circuit_open',
  /** A rate limiter rejected the call: no request was sent. */
  rateLimited: 'rate_limited',
  /** Discovery found no healthy instance (after routing and exclusions). */
  noInstance: 'no_instance',
  /** The attempt ran out of time (the per-try or overall timeout, or the inbound caller's deadline). */
  timeout: 'timeout',
  /** An authorization rule denied the call. */
  authDenied: 'auth_denied',
} as const;
export type GovernanceErrorType = (typeof GovernanceErrorType)[keyof typeof GovernanceErrorType];

/** Fallback value when nothing more specific is known, as the conventions say. */
export const OTHER_ERROR = '_OTHER';

// MeshletError codes that mean a governance outcome. Packages throwing these outcomes use
// these codes; anything else falls back to the error's name.
const BY_CODE: Readonly<Record<string, GovernanceErrorType>> = {
  MESHLET_CIRCUIT_OPEN: 'circuit_open',
  MESHLET_RATE_LIMITED: 'rate_limited',
  MESHLET_NO_INSTANCE: 'no_instance',
  MESHLET_TIMEOUT: 'timeout',
  // The inbound gRPC caller's deadline cut the call (core's DeadlineExceededError).
  MESHLET_DEADLINE: 'timeout',
  MESHLET_AUTH_DENIED: 'auth_denied',
};

/**
 * The `error.type` of a thrown value: a governance type for the MeshletError codes above
 * and for fetch's TimeoutError/AbortError from a timeout signal; for a network failure its
 * code (NETWORK_ERROR_CODES, on the error or its `cause`: `ECONNREFUSED`, `UND_ERR_SOCKET`);
 * else the error's name, else `_OTHER`.
 */
export function errorTypeOf(error: unknown): string {
  if (typeof error !== 'object' || error === null) return OTHER_ERROR;
  const { code, name, cause } = error as { code?: unknown; name?: unknown; cause?: unknown };
  if (typeof code === 'string') {
    const t = BY_CODE[code];
    if (t) return t;
    if (NETWORK_ERROR_CODES.has(code)) return code;
  }
  if (typeof cause === 'object' && cause !== null) {
    const inner = (cause as { code?: unknown }).code;
    if (typeof inner === 'string' && NETWORK_ERROR_CODES.has(inner)) return inner;
  }
  if (name === 'TimeoutError') return 'timeout';
  if (typeof name === 'string' && name !== '' && name !== 'Error') return name;
  return OTHER_ERROR;
}

/** Most attributes a span takes from one error (errorAttributesOf). */
const MAX_ERROR_ATTRIBUTES = 8;
/** Longest string value a span takes from an error. */
const MAX_ERROR_ATTRIBUTE_LENGTH = 512;

/**
 * The `io.meshlet.*` attributes a Meshlet error carries for the span that records it, as
 * its `spanAttributes` (CircuitOpenError: the refusing breaker's level, API key and state,
 * the rules revision): the executor knows which breaker refused, the span made for the
 * refused call does not. Undefined for any other error. Bounded: at most 8 attributes,
 * string values cut to 512 characters; anything else on the object is ignored.
 */
export function errorAttributesOf(error: unknown): Readonly<Record<string, string | number>> | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, spanAttributes } = error as { code?: unknown; spanAttributes?: unknown };
  if (typeof code !== 'string' || !code.startsWith('MESHLET_')) return undefined;
  if (typeof spanAttributes !== 'object' || spanAttributes === null) return undefined;
  const out: Record<string, string | number> = {};
  let n = 0;
  for (const [k, v] of Object.entries(spanAttributes)) {
    if (n >= MAX_ERROR_ATTRIBUTES) break;
    if (!k.startsWith('io.meshlet.')) continue;
    if (typeof v === 'string') out[k] = v.length > MAX_ERROR_ATTRIBUTE_LENGTH ? v.slice(0, MAX_ERROR_ATTRIBUTE_LENGTH) : v;
    else if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
    else continue;
    n++;
  }
  return n === 0 ? undefined : out;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);

/** The conventions' method rule: known methods as they are, anything else becomes `_OTHER`. */
export function normalizeMethod(method: string): string {
  if (KNOWN_METHODS.has(method)) return method;
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : OTHER_ERROR;
}
