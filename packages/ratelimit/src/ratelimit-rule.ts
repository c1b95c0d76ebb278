import {
  type Condition,
  field,
  parseCondition,
  type RuleKind,
  type RuleKindEntry,
  RuleValidationError,
  shippedSchema,
} from '@meshlet/core';
import { type AdaptiveSection, parseAdaptiveSection } from './adaptive-rule.js';
import { parsePathTemplate } from './path-matcher.js';

export const UNITS = ['second', 'minute', 'hour'] as const;
export type RateUnit = (typeof UNITS)[number];
export const MODES = ['local', 'distributed'] as const;
export type RateLimitMode = (typeof MODES)[number];
export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', '*'] as const;
export type ApiMethod = (typeof METHODS)[number];

const UNIT_MS: Record<RateUnit, number> = { second: 1_000, minute: 60_000, hour: 3_600_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
/** Longest `per`: a day. Longer windows belong to quotas, not to a token bucket. */
export const MAX_PER_MS = 86_400_000;
export const MAX_RULES = 256;
export const MAX_BY_TAGS = 4;
/** Most requests in flight a concurrency rule admits; past this a limit is no limit. */
export const MAX_CONCURRENCY = 100_000;

/** The API a rule limits: a method (or `*`) and a path template such as `/orders/{id}`. */
export interface ApiScope {
  readonly method: ApiMethod;
  readonly path: string;
}

/** Which requests a rule counts: the whole service, one API, or the requests whose tags match. */
export type RuleScope = 'service' | 'api' | 'tag';

/** What every rule has: its name and which requests it counts. */
export interface RuleTarget {
  /** Unique in the section; named in 429 bodies, logs and metrics. */
  readonly name: string;
  /** Limited to one API when given. */
  readonly api?: ApiScope;
  /** Limited to requests whose tags match every condition when given. */
  readonly when: readonly Condition[];
  /**
   * Tags whose values split the limit into one bucket (or one set of slots) per value
   * (per user, per caller). Empty: one limit for every request the rule counts.
   */
  readonly by: readonly string[];
}

/** A token bucket: `rate` per `perMs`, at most `burst` at one instant. */
export interface TokenBucketRule extends RuleTarget {
  /** Tokens added per `perMs`. */
  readonly rate: number;
  /** The refill window in milliseconds: `unit` or `per` as given. */
  readonly perMs: number;
  /** Bucket size: the most requests admitted at one instant. */
  readonly burst: number;
  readonly mode: RateLimitMode;
}

/**
 * At most `concurrency` matching requests in flight at once on this instance (TSF's
 * `THREAD` limits). Always per instance: a slot is held for the whole request, and
 * sharing slots through Redis would leak every slot of an instance that dies.
 */
export interface ConcurrencyRule extends RuleTarget {
  readonly concurrency: number;
  readonly mode: 'local';
}

/** One rate limit rule, validated: a token bucket or a concurrency limit. */
export type RateLimitRule = TokenBucketRule | ConcurrencyRule;

/** True for a `concurrency` rule. */
export const isConcurrencyRule = (rule: RateLimitRule): rule is ConcurrencyRule => 'concurrency' in rule;

/** `enforce` (the default) refuses with 429; `shadow` evaluates, counts and logs what it would refuse, and admits. */
export const SECTION_MODES = ['enforce', 'shadow'] as const;
export type SectionMode = (typeof SECTION_MODES)[number];

/** The `ratelimit` section of a service's rule document. */
export interface RateLimitSection {
  readonly rules: readonly RateLimitRule[];
  /** Absent means `enforce`. */
  readonly mode?: SectionMode;
  /** An adaptive concurrency limit for every inbound request, with load shedding by class. */
  readonly adaptive?: AdaptiveSection;
}

/** The broadest scope a rule has, for 429 bodies and logs. */
export function scopeOf(rule: RateLimitRule): RuleScope {
  if (rule.when.length > 0 || rule.by.length > 0) return 'tag';
  return rule.api ? 'api' : 'service';
}

/** The rule's rate as tokens per millisecond. */
export const tokensPerMs = (rule: Pick<TokenBucketRule, 'rate' | 'perMs'>): number => rule.rate / rule.perMs;

const RULE_KEYS = ['name', 'api', 'when', 'by', 'rate', 'unit', 'per', 'burst', 'concurrency', 'mode'];
/** The fields of the token bucket form, none of which a concurrency rule may give. */
const BUCKET_KEYS = ['rate', 'unit', 'per', 'burst'] as const;

/** Parses one rule; throws RuleValidationError naming the field. Used by the section and by `@RateLimit`. */
export function parseRateLimitRule(raw: unknown, path: string): RateLimitRule {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, RULE_KEYS);
  const name = field.ruleName(obj.name, `${path}.name`, 63);

  const api = obj.api === undefined ? undefined : parseApi(obj.api, `${path}.api`);
  const when = obj.when === undefined ? [] : field.array(obj.when, `${path}.when`).map((c, i) => parseCondition(c, `${path}.when[${i}]`));
  const by = obj.by === undefined ? [] : parseBy(obj.by, `${path}.by`);
  const target: RuleTarget = { name, ...(api ? { api } : {}), when, by };
  if (obj.concurrency !== undefined) return parseConcurrency(obj, path, target);
  if (obj.rate === undefined)
    throw new RuleValidationError(
      `${path}.rate`,
      'is required: give "rate" (a token bucket) or "concurrency" (requests in flight at once), one of the two',
    );

  const rate = field.number(obj.rate, `${path}.rate`);
  if (rate <= 0)
    throw new RuleValidationError(
      `${path}.rate`,
      `must be greater than 0 (got ${rate}); to block an API use an auth rule, to lift a limit delete the rule`,
    );
  if (rate > 1e9) throw new RuleValidationError(`${path}.rate`, 'must be at most 1e9');

  if (obj.unit !== undefined && obj.per !== undefined) throw new RuleValidationError(`${path}.per`, 'give "unit" or "per", not both');
  let perMs: number;
  if (obj.per !== undefined) perMs = parseDuration(obj.per, `${path}.per`);
  else perMs = UNIT_MS[obj.unit === undefined ? 'second' : field.oneOf(obj.unit, `${path}.unit`, UNITS)];

  // Default burst: one window's worth, so that a rule without one behaves like "rate per unit".
  const burst =
    obj.burst === undefined ? Math.max(1, Math.ceil(rate)) : field.integer(obj.burst, `${path}.burst`, Number.MIN_SAFE_INTEGER, 1e9);
  if (burst < 1)
    throw new RuleValidationError(`${path}.burst`, `must be at least 1 (got ${burst}): a bucket that holds no token admits nothing`);

  const mode = obj.mode === undefined ? 'local' : field.oneOf(obj.mode, `${path}.mode`, MODES);
  return { ...target, rate, perMs, burst, mode };
}

function parseConcurrency(obj: Record<string, unknown>, path: string, target: RuleTarget): ConcurrencyRule {
  // Exactly one form: a rule with both would leave open which limit the numbers mean.
  for (const key of BUCKET_KEYS) {
    if (obj[key] !== undefined)
      throw new RuleValidationError(
        `${path}.${key}`,
        'not allowed with "concurrency": give "rate" (a token bucket) or "concurrency", not both',
      );
  }
  const concurrency = field.integer(obj.concurrency, `${path}.concurrency`, 1, MAX_CONCURRENCY);
  if (obj.mode !== undefined && field.oneOf(obj.mode, `${path}.mode`, MODES) !== 'local')
    throw new RuleValidationError(`${path}.mode`, 'a concurrency limit counts the requests in flight on this instance: only "local"');
  return { ...target, concurrency, mode: 'local' };
}

function parseApi(raw: unknown, path: string): ApiScope {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['method', 'path']);
  const method = obj.method === undefined ? '*' : field.oneOf(obj.method, `${path}.method`, METHODS);
  const template = field.string(obj.path, `${path}.path`, 1024);
  parsePathTemplate(template, `${path}.path`);
  return { method, path: template };
}

function parseBy(raw: unknown, path: string): string[] {
  const tags = field.array(raw, path).map((t, i) => field.string(t, `${path}[${i}]`, 128));
  if (tags.length > MAX_BY_TAGS) throw new RuleValidationError(path, `at most ${MAX_BY_TAGS} tags`);
  tags.forEach((t, i) => {
    if (t.length === 0) throw new RuleValidationError(`${path}[${i}]`, 'must not be empty');
    if (tags.indexOf(t) !== i) throw new RuleValidationError(`${path}[${i}]`, `"${t}" is listed twice`);
  });
  return tags;
}

/** Parses `500ms`, `10s`, `5m`, `1h` into milliseconds. */
export function parseDuration(raw: unknown, path: string): number {
  const text = field.string(raw, path, 32);
  const m = DURATION.exec(text);
  if (!m) throw new RuleValidationError(path, `must be a duration such as "500ms", "10s", "5m" or "1h" (got ${JSON.stringify(text)})`);
  const ms = Number(m[1]) * (DURATION_MS[m[2] as string] as number);
  if (ms < 1 || ms > MAX_PER_MS) throw new RuleValidationError(path, `must be between 1ms and 24h (got ${text})`);
  return ms;
}

/**
 * Parses the `ratelimit` section: `{ "rules": [ ... ], "adaptive": { ... }, "mode"?: "enforce" | "shadow" }`
 * (`rules` may be left out when `adaptive` is given).
 */
export function parseRateLimitSection(raw: unknown, path: string): RateLimitSection {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['rules', 'adaptive', 'mode']);
  const mode = obj.mode === undefined ? undefined : field.oneOf(obj.mode, `${path}.mode`, SECTION_MODES);
  const adaptive = obj.adaptive === undefined ? undefined : parseAdaptiveSection(obj.adaptive, `${path}.adaptive`);
  const list = obj.rules === undefined && adaptive !== undefined ? [] : field.array(obj.rules, `${path}.rules`);
  if (list.length > MAX_RULES) throw new RuleValidationError(`${path}.rules`, `at most ${MAX_RULES} rules`);
  const rules = list.map((r, i) => parseRateLimitRule(r, `${path}.rules[${i}]`));
  const seen = new Set<string>();
  rules.forEach((r, i) => {
    if (seen.has(r.name))
      throw new RuleValidationError(`${path}.rules[${i}].name`, `"${r.name}" is used by an earlier rule; names must be unique`);
    seen.add(r.name);
  });
  return { rules, ...(adaptive === undefined ? {} : { adaptive }), ...(mode === 'shadow' ? { mode } : {}) };
}

/** The `ratelimit` rule kind: hand it to RuleWatcher / RuleRepository with the other kinds. */
export const ratelimitRuleKind: RuleKind<RateLimitSection> = { name: 'ratelimit', parse: parseRateLimitSection };

/** The `ratelimit` rule kind as this package publishes it: parser and JSON Schema. */
export const ratelimitRule: RuleKindEntry<RateLimitSection> = {
  kind: ratelimitRuleKind,
  schema: shippedSchema('@meshlet/ratelimit', 'schema/ratelimit.schema.json', import.meta.url),
};
