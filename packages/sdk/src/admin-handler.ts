import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ADMIN_META_KEY,
  adminEndpoint,
  adminToken,
  badOption,
  canonicalPath,
  type Instance,
  MeshletError,
  requestPath,
} from '@meshlet/core';
import type { AdaptiveStats, OutboundAdaptiveStats } from '@meshlet/ratelimit';
import { writePrometheus } from '@meshlet/trace';
import { renderStatusMetrics } from './admin-metrics.js';

/** Core's ADMIN_META_KEY: the metadata key that tells `meshlet instances` where this instance's admin endpoint is. */
export { ADMIN_META_KEY };

/** Where the admin handler answers unless told otherwise. */
export const DEFAULT_ADMIN_PATH = '/_meshlet';

/** Shortest admin secret accepted: the endpoint tells an attacker which instances are failing. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

/** The rules this process follows for one service (core's RuleWatcherStatus, plus whose). */
export interface AdminRulesStatus {
  readonly service: string;
  /** Store revision of the document in force; 0 when none was ever applied. */
  readonly revision: number;
  readonly rejected: number;
  readonly lastError?: { readonly revision: number; readonly path: string; readonly message: string };
}

/** One breaker; @meshlet/breaker's BreakerSnapshot fits as it is. */
export interface AdminBreakerStatus {
  readonly breaker: {
    readonly level: 'service' | 'api' | 'instance';
    readonly service: string;
    readonly api?: string;
    readonly instance?: string;
  };
  readonly state: 'closed' | 'open' | 'half-open';
  readonly calls: number;
  readonly failures: number;
  readonly failureRate: number;
  readonly slowCallRate: number;
  readonly consecutiveFailures: number;
  readonly retryAt?: number;
  readonly rejected: number;
  readonly opened: number;
}

/** Inbound limiter counters; @meshlet/ratelimit's RateLimiterStats fits as it is. */
export interface AdminLimiterStatus {
  readonly allowed: number;
  readonly refused: number;
  readonly degraded: boolean;
  readonly outages: number;
  readonly degradedDecisions: number;
  readonly buckets: number;
  /** Requests holding a concurrency slot now (absent from older providers). */
  readonly inFlight?: number;
  /** Requests admitted that a ratelimit section in shadow mode would have refused. */
  readonly shadowRefused?: number;
  /** Redis keys of distributed rules this instance has written and Redis still holds (bounded per rule). */
  readonly redisKeys?: number;
  /** Requests of distributed rules sent to their rule's overflow key: a new `by` value past the per-rule bound. */
  readonly redisKeysOverflowed?: number;
  /** The adaptive concurrency limit, when one is on. */
  readonly adaptive?: AdminAdaptiveStatus;
  /**
   * Per rule in force (bounded by the rules of one document), and `(adaptive)` when that is
   * on; @meshlet/ratelimit's RuleLimitStats. Absent from older providers.
   */
  readonly rules?: readonly AdminRuleLimitStatus[];
}

/** One ratelimit rule's counts since it was applied under its name. */
export interface AdminRuleLimitStatus {
  readonly name: string;
  /** Requests it matched that were admitted. */
  readonly allowed: number;
  /** Requests it refused (429). */
  readonly refused: number;
  /** In shadow mode: requests it would have refused (admitted, so counted in `allowed` too). */
  readonly shadowRefused: number;
}

/**
 * What the `breaker` section of a called service, in shadow mode, would have done since it
 * was applied (@meshlet/breaker's BreakerShadowStats, with the service): one entry per
 * service whose section is in shadow mode now.
 */
export interface AdminBreakerShadowStatus {
  readonly service: string;
  /** Calls a service or API breaker would have rejected. */
  readonly wouldReject: number;
  /** Breakers that would have opened (an instance one: ejected its instance). */
  readonly wouldOpen: number;
  /** Attempts sent to an instance its breaker would have kept out of routing. */
  readonly wouldExclude: number;
  /** Attempts that outlived the section's timeoutMs. */
  readonly wouldTimeOut: number;
}

/**
 * One called service's retries since the destination was last followed (released when idle, the counts start again) (@meshlet/breaker's
 * RetryCountsSnapshot), by reason (RetryReason: `not-sent`, `broken`, `stale`, `other`,
 * a failed answer's status class `5xx`…, `answer`): those sent, those the retry budget refused.
 */
export interface AdminRetryStatus {
  readonly service: string;
  readonly sent: Readonly<Record<string, number>>;
  readonly budgetRefused: Readonly<Record<string, number>>;
}

/**
 * One called service's hedging (`breaker.hedge`), from @meshlet/breaker's HedgeStats: the
 * counters start again when the service's hedge rule changes (a new hedger).
 */
export interface AdminHedgeStatus {
  readonly service: string;
  /** Calls that could have hedged (idempotent, a delay known). */
  readonly eligible: number;
  /** Second attempts sent. */
  readonly hedges: number;
  /** Hedged calls the second attempt won. */
  readonly wins: number;
  /** Hedges the retry budget refused. */
  readonly denied: number;
  /** The delay in force, ms; absent while a percentile policy has too few samples. */
  readonly delayMs?: number;
}

/** The adaptive concurrency limit: @meshlet/ratelimit's own stats type (its AdaptiveLimitState and counters). */
export type AdminAdaptiveStatus = AdaptiveStats;

/** One destination's adaptive limit (`ratelimit.outboundAdaptive`): @meshlet/ratelimit's own stats type. */
export type AdminOutboundAdaptiveStatus = OutboundAdaptiveStats;

/** What an instance reports about itself; the mesh builds it on each request to the endpoint. */
export interface AdminStatus {
  readonly service: string;
  readonly instance?: string;
  readonly version?: string;
  /** One entry per watched service (this one and the services it calls). */
  readonly rules: readonly AdminRulesStatus[];
  readonly breakers: readonly AdminBreakerStatus[];
  /** Called services whose `breaker` section is in shadow mode, and what it would have done. */
  readonly breakerShadow?: readonly AdminBreakerShadowStatus[];
  /** Called services retried (or whose retries the budget refused), by reason. */
  readonly retries?: readonly AdminRetryStatus[];
  /** Called services whose rules hedge, and how their hedges fared. */
  readonly hedges?: readonly AdminHedgeStatus[];
  readonly limiter?: AdminLimiterStatus;
  /** The adaptive limit of each destination called, when `ratelimit.outboundAdaptive` is on. */
  readonly outboundAdaptive?: readonly AdminOutboundAdaptiveStatus[];
  readonly registry: { readonly mode: string; readonly degraded: boolean; readonly errors?: number; readonly snapshotErrors?: number };
  /** Named degraded flags (`registry`, `kv`, `ratelimitRedis`); true means running on a fallback. */
  readonly degraded: Readonly<Record<string, boolean>>;
  /** Coded log entries by code since start, written or throttled (`MESHLET_TAG_DROPPED`…). */
  readonly conditions?: Readonly<Record<string, number>>;
  /** Inbound identity checks by outcome (`verified`, `unsigned`, `expired`, `wrong-audience`…), with auth on. */
  readonly identity?: Readonly<Record<string, number>>;
}

export interface AdminHandlerOptions {
  /**
   * Required: the operator's admin secret, at least 16 characters (MIN_ADMIN_TOKEN_LENGTH). Callers send not it but
   * `Authorization: Bearer <core's adminToken(secret, "<address>:<port>")>`, for the address
   * `instance` is registered at.
   */
  readonly token: string;
  /**
   * This process's registration (address, port, metadata): the handler accepts only the token
   * for the address it names (the admin port when ADMIN_META_KEY says `:<port>`), so a token
   * sent to another registration opens nothing here. Undefined (not registered): every
   * request is answered 503 `MESHLET_ADMIN_NOT_REGISTERED`.
   */
  readonly instance: () => Instance | undefined;
  readonly status: () => AdminStatus | Promise<AdminStatus>;
  /** Mount point; the status is at `<path>/status`, its metrics at `<path>/metrics`. Default `/_meshlet`. */
  readonly path?: string;
  /** More Prometheus text for `<path>/metrics` (the tracing package's call metrics). */
  readonly metrics?: () => string;
}

/**
 * A node:http (and Express) handler. Requests outside its path go to `next` when given,
 * else get 404, so it can sit in front of an app or on its own admin port.
 */
export type AdminHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void;

/**
 * The admin endpoint's answer to a request by its canonical path (core's requestPath of
 * the whole target: what the rules and the API catalog compare; under an Express mount,
 * of `originalUrl`): true once it answered, false (nothing done) for a path outside the
 * endpoint's. The inbound pipeline gives it the path it computed for the request.
 */
export type AdminAnswer = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

/**
 * The admin token is missing or too short to be worth having. `field` names where it came
 * from: `admin.token` (createMesh), `meshlet.admin.token (MESHLET_ADMIN_TOKEN)` (createMeshFromConfig).
 */
export class AdminTokenError extends MeshletError {
  static readonly code = 'MESHLET_ADMIN_TOKEN';
  readonly field: string;
  constructor(field = 'admin.token') {
    super(
      AdminTokenError.code,
      `${field}: the admin endpoint needs a secret of at least ${MIN_ADMIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 24\`); it is off until given one`,
    );
    this.field = field;
  }
}

/**
 * The answers to a caller the endpoint does not serve. Each is the same for every caller and
 * every token sent, so that none tells a wrong token from another (no oracle), and none
 * echoes what was sent or the registered address.
 */
const UNAUTHORIZED = Object.freeze({
  error:
    'unauthorized: send Authorization: Bearer <token>, the token being adminToken(secret, "<address>:<port>") (HMAC-SHA256 in hex, keyed with the admin secret, of the address and port this instance is registered at; never the secret itself); see the sdk README\'s "Admin tokens"',
  code: 'MESHLET_ADMIN_UNAUTHORIZED',
});
// Whether an instance is registered is public (the registry lists it); the token is checked
// against the registered address, so before there is one no token can be right.
const NOT_REGISTERED = Object.freeze({
  error: 'not registered yet: the admin token is checked against the address this instance registers; call mesh.register() or mesh.serve()',
  code: 'MESHLET_ADMIN_NOT_REGISTERED',
});

/**
 * The admin endpoint: `GET <path>/status` answers the instance's status as JSON, and
 * `GET <path>/metrics` the same as Prometheus text, to a caller with this instance's admin
 * token (adminToken of the secret and its registered address; never the secret itself,
 * which would let any registration collect it). Off unless mounted. Only the fields of AdminStatus are
 * copied out, one by one, so a status provider that passes something bigger (a config
 * object, a snapshot with secrets) cannot leak it. `<path>` is the request's whole path,
 * compared in the canonical form (see AdminAnswer), its case kept as the catalog's is.
 */
export function createAdminHandler(options: AdminHandlerOptions): AdminHandler {
  const answer = adminAnswers(options);
  return (req, res, next) => {
    // A target with no one canonical path (see requestPath) is not the endpoint's.
    const path = requestPath((req as { originalUrl?: string }).originalUrl ?? req.url ?? '/');
    if (path !== undefined && answer(req, res, path)) return;
    if (next) next();
    else send(res, 404, { error: 'not found' });
  };
}

/** The admin endpoint (see createAdminHandler) by the request's canonical path. */
export function adminAnswers(options: AdminHandlerOptions): AdminAnswer {
  if (typeof options.token !== 'string' || options.token.length < MIN_ADMIN_TOKEN_LENGTH) throw new AdminTokenError();
  if (typeof options.instance !== 'function') throw badOption('instance', 'must be a function that returns the registered instance');
  const secret = options.token;
  const base = normalizePath(options.path ?? DEFAULT_ADMIN_PATH);
  // The digest of the token for the authority last registered, made again when it changes.
  let expected: { authority: string; digest: Buffer } | undefined;
  const expectedDigest = (instance: Instance): Buffer | undefined => {
    const authority = adminEndpoint(instance, base || '/')?.authority;
    if (authority === undefined) return undefined;
    if (expected?.authority !== authority) expected = { authority, digest: digest(adminToken(secret, authority)) };
    return expected.digest;
  };
  // In the form requestPath gives, so a path written with escapes or "//" is still met.
  const at = canonicalPath(base);
  const under = `${at}/`;
  const statusPath = `${at}/status`;
  const metricsPath = `${at}/metrics`;

  return (req, res, path) => {
    if (path !== at && !path.startsWith(under)) return false;
    const instance = options.instance();
    if (instance === undefined) {
      send(res, 503, NOT_REGISTERED);
      return true;
    }
    if (!authorized(req.headers.authorization, expectedDigest(instance))) {
      res.setHeader('www-authenticate', 'Bearer realm="meshlet-admin"');
      send(res, 401, UNAUTHORIZED);
      return true;
    }
    if (path !== statusPath && path !== metricsPath) {
      send(res, 404, { error: `not found; the status is at ${base}/status, metrics at ${base}/metrics` });
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, { error: 'method not allowed' });
      return true;
    }
    const asMetrics = path === metricsPath;
    const headOnly = req.method === 'HEAD';
    // Anything that throws on the way (a provider, a renderer) is a 500, never a crash.
    Promise.resolve()
      .then(() => options.status())
      .then((status) => {
        const open = publicStatus(status);
        if (asMetrics) writePrometheus(res, renderStatusMetrics(open) + (options.metrics?.() ?? ''), headOnly);
        else send(res, 200, open, headOnly);
      })
      .catch(() => send(res, 500, { error: 'status unavailable' }));
    return true;
  };
}

function authorized(header: string | undefined, expected: Buffer | undefined): boolean {
  if (header === undefined || expected === undefined) return false;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (!m?.[1]) return false;
  return timingSafeEqual(digest(m[1]), expected);
}

// Compare digests: equal lengths for timingSafeEqual, and the token's length does not leak.
const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

function normalizePath(path: string): string {
  if (!path.startsWith('/') || /[?#\s]/.test(path)) {
    throw new MeshletError('MESHLET_ADMIN_PATH', `admin path "${path}": must start with "/" and hold no "?", "#" or spaces`);
  }
  return path.replace(/\/+$/, '') || '';
}

function send(res: ServerResponse, status: number, body: unknown, headOnly = false): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(headOnly ? undefined : text);
}

const LEVELS = ['service', 'api', 'instance'] as const;
const STATES = ['closed', 'open', 'half-open'] as const;
const pick = <T extends string>(v: unknown, allowed: readonly T[], fallback: T): T => (allowed.includes(v as T) ? (v as T) : fallback);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const opt = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };

/** Copies exactly the documented fields, so nothing else a provider hands over is ever sent. */
export function publicStatus(s: AdminStatus): AdminStatus {
  const degraded: Record<string, boolean> = {};
  for (const [k, v] of Object.entries(s.degraded ?? {})) degraded[k] = v === true;
  return {
    service: String(s.service),
    ...opt('instance', str(s.instance)),
    ...opt('version', str(s.version)),
    rules: (s.rules ?? []).map((r) => ({
      service: String(r.service),
      revision: num(r.revision),
      rejected: num(r.rejected),
      ...opt(
        'lastError',
        r.lastError
          ? { revision: num(r.lastError.revision), path: String(r.lastError.path), message: String(r.lastError.message) }
          : undefined,
      ),
    })),
    breakers: (s.breakers ?? []).map((b) => ({
      breaker: {
        level: pick(b.breaker.level, LEVELS, 'service'),
        service: String(b.breaker.service),
        ...opt('api', str(b.breaker.api)),
        ...opt('instance', str(b.breaker.instance)),
      },
      state: pick(b.state, STATES, 'closed'),
      calls: num(b.calls),
      failures: num(b.failures),
      failureRate: num(b.failureRate),
      slowCallRate: num(b.slowCallRate),
      consecutiveFailures: num(b.consecutiveFailures),
      ...opt('retryAt', typeof b.retryAt === 'number' ? b.retryAt : undefined),
      rejected: num(b.rejected),
      opened: num(b.opened),
    })),
    ...opt(
      'breakerShadow',
      s.breakerShadow?.map((b) => ({
        service: String(b.service),
        wouldReject: num(b.wouldReject),
        wouldOpen: num(b.wouldOpen),
        wouldExclude: num(b.wouldExclude),
        wouldTimeOut: num(b.wouldTimeOut),
      })),
    ),
    ...opt(
      'retries',
      s.retries?.map((r) => ({
        service: String(r.service),
        sent: conditionCounts(r.sent),
        budgetRefused: conditionCounts(r.budgetRefused),
      })),
    ),
    ...opt(
      'hedges',
      s.hedges?.map((h) => ({
        service: String(h.service),
        eligible: num(h.eligible),
        hedges: num(h.hedges),
        wins: num(h.wins),
        denied: num(h.denied),
        ...opt('delayMs', typeof h.delayMs === 'number' ? h.delayMs : undefined),
      })),
    ),
    ...opt(
      'limiter',
      s.limiter
        ? {
            allowed: num(s.limiter.allowed),
            refused: num(s.limiter.refused),
            degraded: s.limiter.degraded === true,
            outages: num(s.limiter.outages),
            degradedDecisions: num(s.limiter.degradedDecisions),
            buckets: num(s.limiter.buckets),
            ...opt('inFlight', typeof s.limiter.inFlight === 'number' ? s.limiter.inFlight : undefined),
            ...opt('shadowRefused', typeof s.limiter.shadowRefused === 'number' ? s.limiter.shadowRefused : undefined),
            ...opt('redisKeys', typeof s.limiter.redisKeys === 'number' ? s.limiter.redisKeys : undefined),
            ...opt('redisKeysOverflowed', typeof s.limiter.redisKeysOverflowed === 'number' ? s.limiter.redisKeysOverflowed : undefined),
            ...opt('adaptive', s.limiter.adaptive ? publicAdaptive(s.limiter.adaptive) : undefined),
            ...opt(
              'rules',
              s.limiter.rules?.map((r) => ({
                name: String(r.name),
                allowed: num(r.allowed),
                refused: num(r.refused),
                shadowRefused: num(r.shadowRefused),
              })),
            ),
          }
        : undefined,
    ),
    ...opt('outboundAdaptive', s.outboundAdaptive?.map(publicOutboundAdaptive)),
    registry: {
      mode: String(s.registry?.mode ?? 'unknown'),
      degraded: s.registry?.degraded === true,
      ...opt('errors', typeof s.registry?.errors === 'number' ? s.registry.errors : undefined),
      ...opt('snapshotErrors', typeof s.registry?.snapshotErrors === 'number' ? s.registry.snapshotErrors : undefined),
    },
    degraded,
    ...opt('conditions', s.conditions ? conditionCounts(s.conditions) : undefined),
    ...opt('identity', s.identity ? conditionCounts(s.identity) : undefined),
  };
}

/** The fields of an adaptive limit's state, as numbers (the inbound and the outbound limits share them). */
function publicLimitState(a: AdaptiveLimitStateLike) {
  return {
    limit: num(a.limit),
    mode: a.mode === 'probe' ? ('probe' as const) : ('track' as const),
    minRttMs: num(a.minRttMs),
    sampleRttMs: num(a.sampleRttMs),
    eventLoopDelayMs: num(a.eventLoopDelayMs),
    probes: num(a.probes),
    busyProbes: num(a.busyProbes),
  };
}
type AdaptiveLimitStateLike = Pick<
  AdaptiveStats,
  'limit' | 'mode' | 'minRttMs' | 'sampleRttMs' | 'eventLoopDelayMs' | 'probes' | 'busyProbes'
>;

function publicOutboundAdaptive(a: AdminOutboundAdaptiveStatus): AdminOutboundAdaptiveStatus {
  return {
    service: String(a.service),
    ...publicLimitState(a),
    inFlight: num(a.inFlight),
    admitted: num(a.admitted),
    refused: num(a.refused),
  };
}

function publicAdaptive(a: AdminAdaptiveStatus): AdminAdaptiveStatus {
  return {
    ...publicLimitState(a),
    inFlight: num(a.inFlight),
    admitted: num(a.admitted),
    refused: num(a.refused),
    classes: (a.classes ?? []).map((c) => ({
      name: String(c.name),
      share: num(c.share),
      admitted: num(c.admitted),
      refused: num(c.refused),
    })),
  };
}

/** Condition counts by code: codes are constants of the code (`MESHLET_…`), counts numbers. */
function conditionCounts(c: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(c)) if (/^[A-Za-z0-9_-]{1,64}$/.test(k)) out[k] = num(v);
  return out;
}
