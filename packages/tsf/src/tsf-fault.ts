import { type NoticeSink, ruleName, tsfField } from './tsf-fields.js';
import { firstRouteGroup, forEachRouteRule } from './tsf-route.js';
import type { TsfLocalIdentity } from './tsf-tag-condition.js';

// The fault document is a route-group list whose rules carry `faultRule` (polaris-java
// connector-consul FaultService reads it as RouteRuleGroup/RouteRule; FaultRule entity).
const GROUP_KEYS = ['ruleList', 'microserviceName', 'namespaceId'];
const GROUP_IGNORED = [
  'routeId',
  'routeName',
  'routeDesc',
  'microserviceId',
  'namespaceName',
  'appId',
  'enableStatus',
  'fallbackStatus',
  'createTime',
  'updateTime',
];
const RULE_KEYS = ['routeRuleId', 'tagList', 'faultRule'];
const RULE_IGNORED = ['routeId', 'routeRuleIndex', 'destList'];
const FAULT_KEYS = ['enabled', 'fixedDelay', 'delayPercentage', 'abortHttpStatusCode', 'abortPercentage'];

/** Bounds Meshlet's `fault` section accepts (@meshlet/fault's FAULT_LIMITS); TSF's console stays inside them. */
export const TsfFaultBounds = { maxDelayMs: 60_000, minAbortStatus: 400, maxAbortStatus: 599 } as const;

/**
 * Converts TSF's fault document (`fault/<ns>/<svc>/data`) into a Meshlet `fault` section for
 * calls to `destination`. Only the first group is read (FaultService takes `get(0)`).
 * A rule with `enabled: false` is skipped. A delay needs `fixedDelay` (ms) and
 * `delayPercentage`, an abort `abortHttpStatusCode` and `abortPercentage`, as FaultService
 * requires both halves.
 *
 * TSF draws the delay and the abort independently; Meshlet takes the first matching rule
 * whose draw hits. So a rule with both becomes up to three Meshlet rules with the same
 * joint odds: `<id>` delay+abort at d·a, `<id>-delay` at d(1−a)/(1−d·a), `<id>-abort` at a.
 */
export function convertTsfFault(doc: unknown, destination: string, local: TsfLocalIdentity, notice: NoticeSink): Record<string, unknown> {
  const group = firstRouteGroup(doc, destination, 'fault', GROUP_KEYS, GROUP_IGNORED, notice);
  if (group === undefined) return { rules: [] };
  const names = new Set<string>();
  const rules: Record<string, unknown>[] = [];
  forEachRouteRule(group, { destination, local, notice, keys: RULE_KEYS, ignored: RULE_IGNORED }, (rule, p, tags, i) => {
    const fp = `${p}.faultRule`;
    const fault = tsfField.object(rule.faultRule, fp);
    tsfField.reportUnknown(fault, fp, FAULT_KEYS, [], notice);
    if (!tsfField.boolean(fault.enabled, `${fp}.enabled`, false)) return;
    const delay = pair(fault, fp, 'fixedDelay', 'delayPercentage', 0, TsfFaultBounds.maxDelayMs, notice);
    const abort = pair(
      fault,
      fp,
      'abortHttpStatusCode',
      'abortPercentage',
      TsfFaultBounds.minAbortStatus,
      TsfFaultBounds.maxAbortStatus,
      notice,
    );
    if (delay === undefined && abort === undefined) {
      notice(fp, 'neither a delay nor an abort; the rule is skipped, as TSF injects nothing');
      return;
    }
    if (tags.never !== undefined) {
      notice(p, `never matches calls from this process: ${tags.never}`);
      return;
    }
    let name = ruleName(tsfField.optionalText(rule.routeRuleId, `${p}.routeRuleId`), `tsf-fault-${i}`).slice(0, 56);
    if (names.has(name)) name = `${name}-${i}`;
    names.add(name);
    const when = tags.when;
    if (delay && abort) {
      const d = delay.percent / 100;
      const a = abort.percent / 100;
      const both = d * a;
      if (both > 0) rules.push({ name, when, percentage: both * 100, delay: delay.value, abort: abort.value });
      if (both < 1) {
        const delayOnly = (d * (1 - a)) / (1 - both);
        if (delayOnly > 0) rules.push({ name: `${name}-delay`, when, percentage: delayOnly * 100, delay: delay.value });
        if (a > 0) rules.push({ name: `${name}-abort`, when, percentage: a * 100, abort: abort.value });
      }
    } else if (delay) rules.push({ name, when, percentage: delay.percent, delay: delay.value });
    else if (abort) rules.push({ name, when, percentage: abort.percent, abort: abort.value });
  });
  return { rules };
}

function pair(
  fault: Record<string, unknown>,
  path: string,
  valueKey: string,
  percentKey: string,
  min: number,
  max: number,
  notice: NoticeSink,
): { value: number; percent: number } | undefined {
  const hasValue = fault[valueKey] !== undefined && fault[valueKey] !== null;
  const hasPercent = fault[percentKey] !== undefined && fault[percentKey] !== null;
  if (hasValue !== hasPercent) {
    notice(`${path}.${hasValue ? percentKey : valueKey}`, `absent, so ${hasValue ? valueKey : percentKey} is not applied (TSF needs both)`);
    return undefined;
  }
  if (!hasValue) return undefined;
  return {
    value: tsfField.integer(fault[valueKey], `${path}.${valueKey}`, min, max),
    percent: tsfField.integer(fault[percentKey], `${path}.${percentKey}`, 0, 100),
  };
}
