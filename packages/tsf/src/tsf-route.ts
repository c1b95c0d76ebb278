import { type NoticeSink, ruleName, tsfField } from './tsf-fields.js';
import { TsfFieldError } from './tsf-rule-error.js';
import { convertTagList, type TsfLocalIdentity } from './tsf-tag-condition.js';

// Field lists from polaris-java connector-consul router/entity (RouteRuleGroup, RouteRule,
// RouteDest, RouteDestItem) and tencentyun/tsf-go pkg/route/router/rule.go; the ignored
// ones are console bookkeeping seen in tsf-go testdata/route2.
const GROUP_KEYS = ['ruleList', 'fallbackStatus', 'microserviceName', 'namespaceId'];
const GROUP_IGNORED = [
  'routeId',
  'routeName',
  'routeDesc',
  'microserviceId',
  'microserivceId',
  'namespaceName',
  'appId',
  'action',
  'enableStatus',
  'kv',
  'limit',
  'offset',
  'operator',
  'orderBy',
  'orderType',
  'projectId',
  'region',
  'requestId',
  'searchWord',
  'subAccountUin',
  'uin',
  'createTime',
  'updateTime',
];
const RULE_KEYS = ['routeRuleId', 'tagList', 'destList'];
const RULE_IGNORED = ['routeId', 'routeRuleIndex'];
const DEST_KEYS = ['destId', 'destWeight', 'destItemList'];
const DEST_IGNORED = ['routeRuleId'];
const ITEM_KEYS = ['destItemField', 'destItemValue'];
const ITEM_IGNORED = ['routeDestId', 'routeDestItemId'];
const META_KEY = /^[A-Za-z0-9_-]{1,128}$/;
// Metadata keys META_KEY allows that a plain object cannot hold as its own data: `__proto__`
// would be dropped (a selector on every instance), the others read Object.prototype.
const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Weights of one TSF destination list sum to this (TSF console's rule; Meshlet's too). */
export const TSF_ROUTE_WEIGHT_TOTAL = 100;

/**
 * Converts TSF's route document (`route/<ns>/<svc>/data`: a YAML list of route groups)
 * into a Meshlet `route` section. Only the first group is read, as both TSF SDKs do
 * (polaris-java RoutingService, tsf-go router). Destinations select instances by their
 * `Meta` (`destItemField` → metadata key, e.g. `TSF_GROUP_ID`); `fallbackStatus: true`
 * sends a rule whose chosen group has no instance to every instance.
 */
export function convertTsfRoute(doc: unknown, destination: string, local: TsfLocalIdentity, notice: NoticeSink): Record<string, unknown> {
  const group = firstRouteGroup(doc, destination, 'route', GROUP_KEYS, GROUP_IGNORED, notice);
  if (group === undefined) return { rules: [] };
  const fallback = tsfField.boolean(group.fallbackStatus, '[0].fallbackStatus', false);
  const names = new Set<string>();
  const rules: Record<string, unknown>[] = [];
  forEachRouteRule(group, { destination, local, notice, keys: RULE_KEYS, ignored: RULE_IGNORED }, (rule, p, tags, i) => {
    const rawDests = tsfField.optionalList(rule.destList, `${p}.destList`);
    if (rawDests.length === 0) {
      // polaris-java skips a rule without destinations.
      notice(`${p}.destList`, 'no destinations; the rule is skipped, as TSF skips it');
      return;
    }
    const destinations = rawDests.map((d, j) => convertDest(d, `${p}.destList[${j}]`, notice));
    const total = destinations.reduce((sum, d) => sum + d.weight, 0);
    if (total !== TSF_ROUTE_WEIGHT_TOTAL) {
      throw new TsfFieldError(`${p}.destList`, `destWeight values must sum to ${TSF_ROUTE_WEIGHT_TOTAL} (they sum to ${total})`);
    }
    if (tags.never !== undefined) {
      notice(p, `never matches calls from this process: ${tags.never}`);
      return;
    }
    let name = ruleName(tsfField.optionalText(rule.routeRuleId, `${p}.routeRuleId`), `tsf-route-${i}`);
    if (names.has(name)) name = `${name}-${i}`;
    names.add(name);
    rules.push({
      name,
      when: tags.when,
      destinations,
      ...(fallback ? { fallback: [{ group: {}, weight: 100 }] } : {}),
    });
  });
  return { rules };
}

function convertDest(raw: unknown, path: string, notice: NoticeSink): { group: Record<string, string>; weight: number } {
  const dest = tsfField.object(raw, path);
  tsfField.reportUnknown(dest, path, DEST_KEYS, DEST_IGNORED, notice);
  const weight = tsfField.integer(dest.destWeight, `${path}.destWeight`, 0, TSF_ROUTE_WEIGHT_TOTAL);
  const group: Record<string, string> = {};
  tsfField.optionalList(dest.destItemList, `${path}.destItemList`).forEach((rawItem, k) => {
    const p = `${path}.destItemList[${k}]`;
    const item = tsfField.object(rawItem, p);
    tsfField.reportUnknown(item, p, ITEM_KEYS, ITEM_IGNORED, notice);
    const key = tsfField.text(item.destItemField, `${p}.destItemField`);
    if (!META_KEY.test(key)) throw new TsfFieldError(`${p}.destItemField`, 'instance metadata keys use letters, digits, "_" and "-" only');
    if (RESERVED_KEYS.has(key)) throw new TsfFieldError(`${p}.destItemField`, `"${key}" cannot be a metadata key of a selector`);
    const value = tsfField.text(item.destItemValue, `${p}.destItemValue`);
    if (Object.hasOwn(group, key) && group[key] !== value) {
      throw new TsfFieldError(`${p}.destItemField`, `${key} is already "${group[key]}" in this destination: no instance has both`);
    }
    group[key] = value;
  });
  return { group, weight };
}

/**
 * The first group of a TSF route-group list (route and fault documents share the shape;
 * TSF's SDKs read only the first), checked against the key's service. Undefined when
 * the list is empty.
 */
export function firstRouteGroup(
  doc: unknown,
  destination: string,
  what: string,
  keys: readonly string[],
  ignored: readonly string[],
  notice: NoticeSink,
): Record<string, unknown> | undefined {
  const groups = tsfField.list(doc, '');
  if (groups.length === 0) return undefined;
  if (groups.length > 1) notice('[1]', `${groups.length} ${what} groups; only the first is read, as TSF's SDKs do`);
  const group = tsfField.object(groups[0], '[0]');
  tsfField.reportUnknown(group, '[0]', keys, ignored, notice);
  const service = tsfField.optionalText(group.microserviceName, '[0].microserviceName');
  if (service !== undefined && service !== destination) {
    throw new TsfFieldError('[0].microserviceName', `is "${service}", but the key is for "${destination}"`);
  }
  return group;
}

/**
 * Calls `each` for every rule of a route group (route and fault documents share the
 * shape), with its path and its tag list converted for an outbound call to `destination`.
 */
export function forEachRouteRule(
  group: Record<string, unknown>,
  opts: {
    readonly destination: string;
    readonly local: TsfLocalIdentity;
    readonly notice: NoticeSink;
    readonly keys: readonly string[];
    readonly ignored: readonly string[];
  },
  each: (rule: Record<string, unknown>, path: string, tags: ReturnType<typeof convertTagList>, index: number) => void,
): void {
  tsfField.optionalList(group.ruleList, '[0].ruleList').forEach((item, i) => {
    const p = `[0].ruleList[${i}]`;
    const rule = tsfField.object(item, p);
    tsfField.reportUnknown(rule, p, opts.keys, opts.ignored, opts.notice);
    const tags = convertTagList(rule.tagList, `${p}.tagList`, {
      side: { side: 'outbound', destination: opts.destination },
      local: opts.local,
      notice: opts.notice,
      ignoredKeys: ['routeRuleId'],
    });
    each(rule, p, tags, i);
  });
}
