import {
  type ApiTemplate,
  apiKey,
  field,
  isHeaderName,
  isHeaderValue,
  normalizeTemplate,
  pathTemplateProblem,
  type RuleKind,
  type RuleKindEntry,
  RuleValidationError,
  shippedSchema,
} from '@meshlet/core';
import { type BreakerPolicy, defaultBreakerPolicy } from './breaker-policy.js';
import { type FailureClassifier, type StatusSpec, statusClassifier } from './failure-classifier.js';
import { type HedgePolicy, parseHedgePolicy } from './hedge.js';
import type { WindowSpec } from './sliding-window.js';

/** Lowercase, as every other enum in the rule document (`equals`, `count`). */
export const ISOLATION_LEVELS = ['service', 'api', 'instance'] as const;
export type IsolationLevel = (typeof ISOLATION_LEVELS)[number];

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', '*'] as const;

/** A response a rule returns instead of calling an open circuit. A non-string body is sent as JSON. */
export interface StaticFallback {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The body as sent, serialised when the rule was parsed (JSON for a non-string body), so
   * that answering for an open circuit cannot throw; null without a body.
   */
  readonly bodyText?: string | null;
}

/** Longest fallback body, in characters, as sent. */
export const MAX_FALLBACK_BODY = 65_536;

export interface RetryPolicy {
  /** Retries after the first attempt; each goes to an instance not tried yet. */
  readonly maxRetries: number;
  readonly backoff: { readonly baseMs: number; readonly maxMs: number };
  /** Retry POST and PATCH too: only when the upstream is known to deduplicate. */
  readonly retryNonIdempotent: boolean;
  readonly budget: { readonly percent: number; readonly minPerSecond: number; readonly windowMs: number };
}

export interface ServiceRule {
  readonly policy: BreakerPolicy;
  readonly fallback?: StaticFallback;
}
export interface ApiRule extends ServiceRule {
  readonly apis: readonly ApiTemplate[];
}
export interface InstanceRule {
  readonly policy: BreakerPolicy;
  readonly maxEjectionPercent: number;
}

/** The parsed `breaker` section of a service's rule document. */
export interface BreakerRules {
  readonly service?: ServiceRule;
  readonly apis: readonly ApiRule[];
  readonly instance?: InstanceRule;
  /** Per attempt, ms. */
  readonly timeoutMs?: number;
  readonly retry?: RetryPolicy;
  /** Hedged requests for idempotent calls, paid from the retry budget. */
  readonly hedge?: HedgePolicy;
  readonly failureStatuses: readonly StatusSpec[];
  readonly classifier: FailureClassifier;
  /**
   * `shadow`: the section's breakers and timeout are evaluated and what they would do is
   * reported, not enforced; calls are governed by the defaults alone. Absent: `enforce`.
   */
  readonly mode?: 'enforce' | 'shadow';
}

export const BREAKER_SECTION_MODES = ['enforce', 'shadow'] as const;

export const defaultRetryPolicy: RetryPolicy = {
  maxRetries: 2,
  backoff: { baseMs: 25, maxMs: 1000 },
  retryNonIdempotent: false,
  budget: { percent: 20, minPerSecond: 10, windowMs: 10_000 },
};

const HOUR = 3_600_000;
/** A breaker policy's fields, as a rule and `@CircuitBreaker` give them. */
export const BREAKER_POLICY_KEYS = [
  'window',
  'failureRateThreshold',
  'minimumCalls',
  'consecutiveFailures',
  'slowCallThresholdMs',
  'slowCallRateThreshold',
  'sleepWindowMs',
  'maxSleepWindowMs',
  'probes',
] as const;

const RULE_KEYS = ['level', 'apis', ...BREAKER_POLICY_KEYS, 'maxEjectionPercent', 'fallback'];

function optional<T>(value: unknown, fallback: T, read: (v: unknown) => T): T {
  return value === undefined ? fallback : read(value);
}

function parseWindow(raw: unknown, path: string): WindowSpec {
  const w = field.object(raw, path);
  const type = field.oneOf(w.type, `${path}.type`, ['count', 'time'] as const);
  if (type === 'count') {
    field.onlyKeys(w, path, ['type', 'size']);
    return { type, size: field.integer(w.size, `${path}.size`, 1, 10_000) };
  }
  field.onlyKeys(w, path, ['type', 'ms', 'buckets']);
  const ms = field.integer(w.ms, `${path}.ms`, 1, HOUR);
  const buckets = optional(w.buckets, 10, (v) => field.integer(v, `${path}.buckets`, 1, 60));
  if (buckets > ms) throw new RuleValidationError(`${path}.buckets`, `must be at most ms (${ms})`);
  return { type, ms, buckets };
}

/** Statuses whose response has no body: `new Response(body, { status })` throws on any body with them. */
const NULL_BODY_STATUSES: readonly number[] = [204, 205, 304];

function parseFallback(raw: unknown, path: string): StaticFallback {
  const f = field.object(raw, path);
  field.onlyKeys(f, path, ['status', 'body', 'headers']);
  const status = field.integer(f.status, `${path}.status`, 200, 599);
  // Checked here: every fallback the parser accepts must make a Response when the circuit opens.
  if (f.body !== undefined && NULL_BODY_STATUSES.includes(status))
    throw new RuleValidationError(`${path}.body`, `a ${status} response has no body; remove "body" or use another status`);
  let headers: Record<string, string> | undefined;
  if (f.headers !== undefined) {
    const h = field.object(f.headers, `${path}.headers`);
    headers = {};
    for (const [k, v] of Object.entries(h)) {
      if (!isHeaderName(k)) throw new RuleValidationError(`${path}.headers.${k}`, 'not a header name');
      // JSON.parse makes "__proto__" an own key; assigned below it would set the prototype, and the header would vanish.
      if (k === '__proto__') throw new RuleValidationError(`${path}.headers.${k}`, '"__proto__" cannot be a header name here');
      const value = field.string(v, `${path}.headers.${k}`, 4096);
      if (!isHeaderValue(value))
        throw new RuleValidationError(
          `${path}.headers.${k}`,
          'not a header value: tab, space, visible ASCII and Latin-1 only (no CR, LF, NUL or other control characters)',
        );
      headers[k] = value;
    }
  }
  let bodyText: string | null = null;
  if (typeof f.body === 'string') bodyText = field.string(f.body, `${path}.body`, MAX_FALLBACK_BODY);
  else if (f.body !== undefined) {
    // Serialised now, not when the circuit opens: whatever the body is, a call never throws on it.
    try {
      bodyText = JSON.stringify(f.body);
    } catch (err) {
      throw new RuleValidationError(`${path}.body`, `cannot be sent as JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (bodyText.length > MAX_FALLBACK_BODY)
      throw new RuleValidationError(`${path}.body`, `must be at most ${MAX_FALLBACK_BODY} characters as JSON`);
  }
  return { status, ...(f.body !== undefined ? { body: f.body } : {}), ...(headers ? { headers } : {}), bodyText };
}

/**
 * A breaker policy on its own (`@CircuitBreaker`'s options), checked as a rule's: the same
 * bounds, RuleValidationError naming the field; unknown keys refused; defaults filled.
 */
export function parseBreakerPolicy(raw: unknown, path: string): BreakerPolicy {
  const r = field.object(raw, path);
  field.onlyKeys(r, path, BREAKER_POLICY_KEYS);
  return parsePolicy(r, path);
}

/** A retry count and backoff on their own (`@Retry`'s), checked as a rule's `retry` section's. */
export function parseRetryCount(
  raw: { readonly maxRetries?: unknown; readonly backoff?: unknown },
  path: string,
): Pick<RetryPolicy, 'maxRetries' | 'backoff'> {
  const { maxRetries, backoff } = parseRetry(
    {
      ...(raw.maxRetries !== undefined ? { maxRetries: raw.maxRetries } : {}),
      ...(raw.backoff !== undefined ? { backoff: raw.backoff } : {}),
    },
    path,
  );
  return { maxRetries, backoff };
}

function parsePolicy(r: Record<string, unknown>, path: string, d: BreakerPolicy = defaultBreakerPolicy): BreakerPolicy {
  const sleepWindowMs = optional(r.sleepWindowMs, d.sleepWindowMs, (v) => field.integer(v, `${path}.sleepWindowMs`, 1, HOUR));
  let maxSleepWindowMs = d.maxSleepWindowMs;
  if (r.maxSleepWindowMs !== undefined) {
    maxSleepWindowMs = field.integer(r.maxSleepWindowMs, `${path}.maxSleepWindowMs`, 1, HOUR);
    if (maxSleepWindowMs < sleepWindowMs)
      throw new RuleValidationError(`${path}.maxSleepWindowMs`, `must be at least sleepWindowMs (${sleepWindowMs})`);
  }
  return {
    window: optional(r.window, d.window, (v) => parseWindow(v, `${path}.window`)),
    failureRateThreshold: optional(r.failureRateThreshold, d.failureRateThreshold, (v) =>
      field.number(v, `${path}.failureRateThreshold`, 0, 100),
    ),
    minimumCalls: optional(r.minimumCalls, d.minimumCalls, (v) => field.integer(v, `${path}.minimumCalls`, 1, 100_000)),
    consecutiveFailures: optional(r.consecutiveFailures, d.consecutiveFailures, (v) =>
      field.integer(v, `${path}.consecutiveFailures`, 0, 100_000),
    ),
    slowCallThresholdMs: optional(r.slowCallThresholdMs, d.slowCallThresholdMs, (v) =>
      field.integer(v, `${path}.slowCallThresholdMs`, 0, HOUR),
    ),
    slowCallRateThreshold: optional(r.slowCallRateThreshold, d.slowCallRateThreshold, (v) =>
      field.number(v, `${path}.slowCallRateThreshold`, 0, 100),
    ),
    sleepWindowMs,
    ...(maxSleepWindowMs !== undefined ? { maxSleepWindowMs } : {}),
    probes: optional(r.probes, d.probes, (v) => field.integer(v, `${path}.probes`, 1, 1000)),
  };
}

function parseApis(raw: unknown, path: string): ApiTemplate[] {
  const list = field.array(raw, path);
  if (list.length === 0) throw new RuleValidationError(path, 'must name at least one API');
  if (list.length > 1000) throw new RuleValidationError(path, 'at most 1000 APIs');
  return list.map((item, i) => {
    const p = `${path}[${i}]`;
    const a = field.object(item, p);
    field.onlyKeys(a, p, ['method', 'path']);
    const method = field.oneOf(a.method, `${p}.method`, HTTP_METHODS);
    const tpl = field.string(a.path, `${p}.path`, 1024);
    const problem = pathTemplateProblem(tpl);
    if (problem) throw new RuleValidationError(`${p}.path`, problem);
    // Canonical spelling, so `/a/:id/` and `/a/{id}` are one API with one key, the key ApiMatcher returns.
    return { method, path: normalizeTemplate(tpl) };
  });
}

function parseRetry(raw: unknown, path: string): RetryPolicy {
  const r = field.object(raw, path);
  field.onlyKeys(r, path, ['maxRetries', 'backoff', 'retryNonIdempotent', 'budget']);
  const d = defaultRetryPolicy;
  const backoff = optional(r.backoff, d.backoff, (v) => {
    const b = field.object(v, `${path}.backoff`);
    field.onlyKeys(b, `${path}.backoff`, ['baseMs', 'maxMs']);
    const baseMs = optional(b.baseMs, d.backoff.baseMs, (x) => field.integer(x, `${path}.backoff.baseMs`, 0, 60_000));
    const maxMs = optional(b.maxMs, Math.max(baseMs, d.backoff.maxMs), (x) => field.integer(x, `${path}.backoff.maxMs`, 0, 60_000));
    if (maxMs < baseMs) throw new RuleValidationError(`${path}.backoff.maxMs`, `must be at least baseMs (${baseMs})`);
    return { baseMs, maxMs };
  });
  const budget = optional(r.budget, d.budget, (v) => {
    const b = field.object(v, `${path}.budget`);
    field.onlyKeys(b, `${path}.budget`, ['percent', 'minPerSecond', 'windowMs']);
    return {
      percent: optional(b.percent, d.budget.percent, (x) => field.number(x, `${path}.budget.percent`, 0, 100)),
      minPerSecond: optional(b.minPerSecond, d.budget.minPerSecond, (x) => field.number(x, `${path}.budget.minPerSecond`, 0, 100_000)),
      windowMs: optional(b.windowMs, d.budget.windowMs, (x) => field.integer(x, `${path}.budget.windowMs`, 10, HOUR)),
    };
  });
  return {
    maxRetries: optional(r.maxRetries, d.maxRetries, (v) => field.integer(v, `${path}.maxRetries`, 0, 10)),
    backoff,
    retryNonIdempotent: optional(r.retryNonIdempotent, d.retryNonIdempotent, (v) => field.boolean(v, `${path}.retryNonIdempotent`)),
    budget,
  };
}

function parseStatuses(raw: unknown, path: string): StatusSpec[] {
  return field.array(raw, path).map((s, i) => {
    if (s === '4xx' || s === '5xx') return s;
    if (typeof s === 'string') throw new RuleValidationError(`${path}[${i}]`, 'must be a status code or "4xx" / "5xx"');
    return field.integer(s, `${path}[${i}]`, 100, 599);
  });
}

/**
 * Parses the `breaker` section:
 * `{ rules: [{ level: "instance", consecutiveFailures: 5, … }], timeoutMs, retry, failureStatuses }`.
 * At most one rule for the service level and one for the instance level; API rules list
 * their APIs, and an API may be in one rule only.
 */
export function parseBreakerRules(raw: unknown, path: string): BreakerRules {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['rules', 'timeoutMs', 'retry', 'failureStatuses', 'hedge', 'mode']);
  const mode = obj.mode === undefined ? undefined : field.oneOf(obj.mode, `${path}.mode`, BREAKER_SECTION_MODES);
  let service: ServiceRule | undefined;
  let instance: InstanceRule | undefined;
  const apis: ApiRule[] = [];
  const seenApis = new Set<string>();
  const rules = obj.rules === undefined ? [] : field.array(obj.rules, `${path}.rules`);
  if (rules.length > 100) throw new RuleValidationError(`${path}.rules`, 'at most 100 rules');
  rules.forEach((item, i) => {
    const p = `${path}.rules[${i}]`;
    const r = field.object(item, p);
    field.onlyKeys(r, p, RULE_KEYS);
    const level = field.oneOf(r.level, `${p}.level`, ISOLATION_LEVELS);
    if (level !== 'api' && r.apis !== undefined) throw new RuleValidationError(`${p}.apis`, 'only for level "api"');
    if (level !== 'instance' && r.maxEjectionPercent !== undefined) {
      throw new RuleValidationError(`${p}.maxEjectionPercent`, 'only for level "instance"');
    }
    if (level === 'instance' && r.fallback !== undefined) {
      throw new RuleValidationError(`${p}.fallback`, 'not for level "instance": an open instance is routed around, not answered for');
    }
    const policy = parsePolicy(r, p);
    const fallback = r.fallback === undefined ? undefined : parseFallback(r.fallback, `${p}.fallback`);
    if (level === 'service') {
      if (service) throw new RuleValidationError(`${p}.level`, 'a second "service" rule; there is one service breaker');
      service = { policy, ...(fallback ? { fallback } : {}) };
    } else if (level === 'instance') {
      if (instance) throw new RuleValidationError(`${p}.level`, 'a second "instance" rule');
      const maxEjectionPercent = optional(r.maxEjectionPercent, 50, (v) => field.number(v, `${p}.maxEjectionPercent`, 0, 100));
      instance = { policy, maxEjectionPercent };
    } else {
      if (r.apis === undefined) throw new RuleValidationError(`${p}.apis`, 'level "api" needs the list of APIs it covers');
      const list = parseApis(r.apis, `${p}.apis`);
      list.forEach((a, j) => {
        const key = apiKey(a);
        if (seenApis.has(key)) throw new RuleValidationError(`${p}.apis[${j}]`, `${key} is already covered by an earlier rule`);
        seenApis.add(key);
      });
      apis.push({ policy, apis: list, ...(fallback ? { fallback } : {}) });
    }
  });
  const timeoutMs = obj.timeoutMs === undefined ? undefined : field.integer(obj.timeoutMs, `${path}.timeoutMs`, 1, 600_000);
  const retry = obj.retry === undefined ? undefined : parseRetry(obj.retry, `${path}.retry`);
  const hedge = obj.hedge === undefined ? undefined : parseHedgePolicy(obj.hedge, `${path}.hedge`);
  const failureStatuses =
    obj.failureStatuses === undefined ? (['5xx'] as StatusSpec[]) : parseStatuses(obj.failureStatuses, `${path}.failureStatuses`);
  return {
    ...(service ? { service } : {}),
    apis,
    ...(instance ? { instance } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(retry ? { retry } : {}),
    ...(hedge ? { hedge } : {}),
    failureStatuses,
    classifier: statusClassifier(failureStatuses),
    ...(mode === 'shadow' ? { mode } : {}),
  };
}

/** The `breaker` section of the rule document, for RuleWatcher's kinds. */
export const breakerRuleKind: RuleKind<BreakerRules> = { name: 'breaker', parse: parseBreakerRules };

/** The `breaker` rule kind as this package publishes it: parser and JSON Schema. */
export const breakerRule: RuleKindEntry<BreakerRules> = {
  kind: breakerRuleKind,
  schema: shippedSchema('@meshlet/breaker', 'schema/breaker.schema.json', import.meta.url),
};
