import { type NoticeSink, ruleName, tsfField } from './tsf-fields.js';
import { TsfFieldError } from './tsf-rule-error.js';
import { convertTagList, type TsfLocalIdentity } from './tsf-tag-condition.js';

// polaris-java connector-consul RateLimitingService.parseResponse and ratelimiting/entity/Rule.
const RULE_KEYS = [
  'id',
  'name',
  'limitMode',
  'conditionModel',
  'duration',
  'quota',
  'concurrentThreads',
  'limitedResponse',
  'conditions',
  'conditionExpression',
];
const RULE_IGNORED = ['ruleStatus', 'createTime', 'updateTime', 'microserviceId', 'namespaceId', 'description'];

/** A rule that names no limit mode is a cluster limit (polaris-java Rule.Mode.getModeByStr). */
export const TSF_DEFAULT_LIMIT_MODE = 'CLUSTER';
/** A rule that names no condition model counts requests per period (Rule.Condition.getConditionByStr). */
export const TSF_DEFAULT_CONDITION_MODEL = 'QPS';
/** Meshlet's longest rate-limit window, in seconds (ratelimit's MAX_PER_MS). */
const MAX_DURATION_S = 86_400;

/**
 * Converts TSF's rate limit document (`ratelimit/<ns>/<svc>/data`: `{rules: [...]}`)
 * into a Meshlet `ratelimit` section. `quota` requests per `duration` seconds, a full
 * bucket of `quota`; `CLUSTER` is Meshlet's `distributed` (Redis, else the local share),
 * `STANDALONE` its `local`. Conditions are TSF tags on the arriving request;
 * `destination.interface` is the request path.
 */
export function convertTsfRateLimit(doc: unknown, local: TsfLocalIdentity, notice: NoticeSink): Record<string, unknown> {
  if (doc === null || doc === undefined) return { rules: [] };
  const root = tsfField.object(doc, '');
  tsfField.reportUnknown(root, '', ['rules'], [], notice);
  const names = new Set<string>();
  const rules: Record<string, unknown>[] = [];
  tsfField.optionalList(root.rules, '.rules').forEach((item, i) => {
    const p = `.rules[${i}]`;
    const rule = tsfField.object(item, p);
    tsfField.reportUnknown(rule, p, RULE_KEYS, RULE_IGNORED, notice);
    const mode = (tsfField.optionalText(rule.limitMode, `${p}.limitMode`) ?? TSF_DEFAULT_LIMIT_MODE).toUpperCase();
    if (mode !== 'CLUSTER' && mode !== 'STANDALONE')
      throw new TsfFieldError(`${p}.limitMode`, `must be CLUSTER or STANDALONE (got "${mode}")`);
    const model = (tsfField.optionalText(rule.conditionModel, `${p}.conditionModel`) ?? TSF_DEFAULT_CONDITION_MODEL).toUpperCase();
    if (model !== 'QPS') {
      throw new TsfFieldError(`${p}.conditionModel`, `"${model}" is not supported by Meshlet (only QPS: requests per duration)`);
    }
    if (rule.concurrentThreads !== undefined && rule.concurrentThreads !== null)
      notice(`${p}.concurrentThreads`, 'only for THREAD rules; not applied');
    if (rule.limitedResponse !== undefined && rule.limitedResponse !== null && rule.limitedResponse !== '') {
      notice(`${p}.limitedResponse`, "a custom 429 body is not supported; Meshlet's own 429 body is sent");
    }
    checkAndOnly(rule.conditionExpression, `${p}.conditionExpression`);
    const duration = tsfField.integer(rule.duration, `${p}.duration`, 1, MAX_DURATION_S);
    const quota = tsfField.integer(rule.quota, `${p}.quota`, 1, 1e9);
    const tags = convertTagList(rule.conditions, `${p}.conditions`, { side: { side: 'inbound' }, local, notice });
    if (tags.never !== undefined) {
      notice(p, `never matches requests to this instance: ${tags.never}`);
      return;
    }
    let name = ruleName(tsfField.optionalText(rule.id, `${p}.id`), `tsf-ratelimit-${i}`);
    if (names.has(name)) name = `${name}-${i}`;
    names.add(name);
    rules.push({
      name,
      ...(tags.when.length > 0 ? { when: tags.when } : {}),
      rate: quota,
      per: `${duration}s`,
      burst: quota,
      mode: mode === 'CLUSTER' ? 'distributed' : 'local',
    });
  });
  return { rules };
}

/**
 * TSF stores how a rule's tags combine (`{1} AND {2}`); Meshlet ANDs them. Anything but
 * AND is refused rather than read as AND.
 */
export function checkAndOnly(raw: unknown, path: string): void {
  const text = tsfField.optionalText(raw, path);
  if (text === undefined || text.trim() === '') return;
  if (!/^\s*\{[^{}]+\}(\s+AND\s+\{[^{}]+\})*\s*$/i.test(text)) {
    throw new TsfFieldError(path, `"${text}" combines tags with something other than AND; Meshlet ANDs a rule's tags`);
  }
}
