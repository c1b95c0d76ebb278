import { type Condition, field, parseCondition, RuleValidationError, shownValue } from '@meshlet/core';
import { ADAPTIVE_BOUNDS, ADAPTIVE_DEFAULTS, ADAPTIVE_LIMIT_KEYS, type AdaptiveLimitSettings } from './adaptive-limit.js';

/** Status of a request refused because the service is over its adaptive limit. */
export const OVERLOAD_STATUSES = [429, 503] as const;
export type OverloadStatus = (typeof OVERLOAD_STATUSES)[number];

/** Most traffic classes; a class is one matcher per admission, so the list stays short. */
export const MAX_CLASSES = 16;
/** The class of requests no class's `when` matches. */
export const DEFAULT_CLASS = 'default';

/**
 * A traffic class for load shedding: requests whose tags match `when` may hold at most
 * `share` of the adaptive limit. Under overload (in flight near the limit) the classes
 * with the smallest shares are refused first; `share: 1` is never shed before the limit.
 */
export interface TrafficClass {
  readonly name: string;
  readonly when: readonly Condition[];
  /** (0, 1]: the fraction of the limit this class's requests may fill. */
  readonly share: number;
}

/**
 * The `adaptive` part of the `ratelimit` section: an adaptive concurrency limit for the
 * service's inbound requests, with load shedding by class.
 */
export interface AdaptiveSection extends AdaptiveLimitSettings {
  /** False turns off an adaptive limit the mesh options turned on. */
  readonly enabled: boolean;
  /** Status of a refusal: 503 (default, as Envoy's filter) or 429. */
  readonly status: OverloadStatus;
  /** First match wins; requests no class matches are in class `default`. */
  readonly classes: readonly TrafficClass[];
  /** The share of the limit requests of class `default` may fill. Default 1. */
  readonly defaultShare: number;
}

const KEYS = ['enabled', 'status', ...ADAPTIVE_LIMIT_KEYS, 'classes', 'defaultShare'];

/** An adaptive section with every default: what `adaptive: {}` and the `adaptive: true` mesh option mean. */
export const DEFAULT_ADAPTIVE_SECTION: AdaptiveSection = Object.freeze({
  ...ADAPTIVE_DEFAULTS,
  enabled: true,
  status: 503,
  classes: [],
  defaultShare: 1,
});

/**
 * Parses `ratelimit.adaptive`; throws RuleValidationError naming the field. Every number is
 * bounded here, so a rule can never build a limit that the algorithm would refuse.
 */
export function parseAdaptiveSection(raw: unknown, path: string): AdaptiveSection {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, KEYS);
  const d = DEFAULT_ADAPTIVE_SECTION;
  const enabled = obj.enabled === undefined ? true : field.boolean(obj.enabled, `${path}.enabled`);
  let status: OverloadStatus = d.status;
  if (obj.status !== undefined) {
    if (!OVERLOAD_STATUSES.includes(obj.status as OverloadStatus))
      throw new RuleValidationError(`${path}.status`, `must be 429 or 503 (got ${shownValue(obj.status)})`);
    status = obj.status as OverloadStatus;
  }
  const section: AdaptiveSection = {
    enabled,
    status,
    ...limitSettings(obj, path),
    classes: obj.classes === undefined ? [] : parseClasses(obj.classes, `${path}.classes`),
    defaultShare: obj.defaultShare === undefined ? d.defaultShare : field.number(obj.defaultShare, `${path}.defaultShare`, 0, 1),
  };
  if (section.defaultShare === 0)
    throw new RuleValidationError(
      `${path}.defaultShare`,
      'must be greater than 0 (a class with no share is never admitted; use an auth rule to block)',
    );
  return section;
}

/**
 * Parses the numbers of an adaptive limit alone (no status, no classes): `{}` is every
 * default. Throws RuleValidationError naming the field; the same bounds as the rule section.
 */
export function parseAdaptiveLimitSettings(raw: unknown, path: string): AdaptiveLimitSettings {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ADAPTIVE_LIMIT_KEYS);
  return limitSettings(obj, path);
}

function limitSettings(obj: Readonly<Record<string, unknown>>, path: string): AdaptiveLimitSettings {
  const d = ADAPTIVE_DEFAULTS;
  const int = (key: string, fallback: number, min: number, max: number) =>
    obj[key] === undefined ? fallback : field.integer(obj[key], `${path}.${key}`, min, max);
  const num = (key: string, fallback: number, min: number, max: number) =>
    obj[key] === undefined ? fallback : field.number(obj[key], `${path}.${key}`, min, max);
  const minLimit = int('minLimit', d.minLimit, 1, ADAPTIVE_BOUNDS.maxLimit);
  const maxLimit = int('maxLimit', Math.max(d.maxLimit, minLimit), 1, ADAPTIVE_BOUNDS.maxLimit);
  if (maxLimit < minLimit) throw new RuleValidationError(`${path}.maxLimit`, `must be at least minLimit (${minLimit}); got ${maxLimit}`);
  const initialLimit = int('initialLimit', Math.min(maxLimit, Math.max(minLimit, d.initialLimit)), 1, ADAPTIVE_BOUNDS.maxLimit);
  if (initialLimit < minLimit || initialLimit > maxLimit)
    throw new RuleValidationError(
      `${path}.initialLimit`,
      `must be between minLimit (${minLimit}) and maxLimit (${maxLimit}); got ${initialLimit}`,
    );
  return {
    initialLimit,
    minLimit,
    maxLimit,
    tolerance: num('tolerance', d.tolerance, ADAPTIVE_BOUNDS.minTolerance, ADAPTIVE_BOUNDS.maxTolerance),
    windowMs: num('windowMs', d.windowMs, 1, ADAPTIVE_BOUNDS.maxWindowMs),
    minWindowSamples: int('minWindowSamples', d.minWindowSamples, 1, ADAPTIVE_BOUNDS.windowCapacity),
    quantile: num('quantile', d.quantile, 0.01, 1),
    probeIntervalMs: num('probeIntervalMs', d.probeIntervalMs, 1000, ADAPTIVE_BOUNDS.maxProbeIntervalMs),
    probeJitter: num('probeJitter', d.probeJitter, 0, 1),
    probeSamples: int('probeSamples', d.probeSamples, 1, ADAPTIVE_BOUNDS.windowCapacity),
    stuckWindows: int('stuckWindows', d.stuckWindows, 1, 1000),
  };
}

function parseClasses(raw: unknown, path: string): TrafficClass[] {
  const list = field.array(raw, path);
  if (list.length > MAX_CLASSES) throw new RuleValidationError(path, `at most ${MAX_CLASSES} classes`);
  const seen = new Set<string>([DEFAULT_CLASS]);
  return list.map((item, i) => {
    const at = `${path}[${i}]`;
    const obj = field.object(item, at);
    field.onlyKeys(obj, at, ['name', 'when', 'share']);
    const name = field.ruleName(obj.name, `${at}.name`, 63);
    if (seen.has(name))
      throw new RuleValidationError(
        `${at}.name`,
        name === DEFAULT_CLASS
          ? '"default" is the class of unmatched requests; set its share with defaultShare'
          : `"${name}" is used by an earlier class`,
      );
    seen.add(name);
    const conditions = field.array(obj.when, `${at}.when`);
    if (conditions.length === 0) throw new RuleValidationError(`${at}.when`, 'must hold at least one condition');
    const when = conditions.map((c, j) => parseCondition(c, `${at}.when[${j}]`));
    const share = field.number(obj.share, `${at}.share`, 0, 1);
    if (share === 0)
      throw new RuleValidationError(
        `${at}.share`,
        'must be greater than 0 (a class with no share is never admitted; use an auth rule to block)',
      );
    return { name, when, share };
  });
}
