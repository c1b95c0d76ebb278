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
  /** The lane (gray-release swim lane) the call ran in. */
  meshletLane: 'io.meshlet.lane',
  /** The limiter decision: `allowed`, `rejected`, or the limiter's name. */
  meshletLimiter: 'io.meshlet.limiter',
  /** The breaker state seen by the call: `closed`, `open`, `half_open`. */
  meshletBreaker: 'io.meshlet.breaker',
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
  /** The attempt ran out of time (the per-try or overall timeout). */
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
  MESHLET_AUTH_DENIED: 'auth_denied',
};

/**
 * The `error.type` of a thrown value: a governance type for the MeshletError codes above
 * and for fetch's TimeoutError/AbortError from a timeout signal, else the error's name,
 * else `_OTHER`.
 */
export function errorTypeOf(error: unknown): string {
  if (typeof error !== 'object' || error === null) return OTHER_ERROR;
  const { code, name } = error as { code?: unknown; name?: unknown };
  if (typeof code === 'string') {
    const t = BY_CODE[code];
    if (t) return t;
  }
  if (name === 'TimeoutError') return 'timeout';
  if (typeof name === 'string' && name !== '' && name !== 'Error') return name;
  return OTHER_ERROR;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);

/** The conventions' method rule: known methods as they are, anything else becomes `_OTHER`. */
export function normalizeMethod(method: string): string {
  if (KNOWN_METHODS.has(method)) return method;
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : OTHER_ERROR;
}
