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
/** Meshlet's largest concurrency limit (ratelimit's MAX_CONCURRENCY). */
const MAX_CONCURRENCY = 100_000;

/**
 * Converts TSF's rate limit document (`ratelimit/<ns>/<svc>/data`: `{rules: [...]}`)
 * into a Meshlet `ratelimit` section. `quota` requests per `duration` seconds, a full
 * bucket of `quota`; `CLUSTER` is Meshlet's `distributed` (Redis, else the local share),
 * `STANDALONE` its `local`. A `THREAD` rule (at most `concurrentThreads` matching
 * requests in flight at once on each instance) becomes a `concurrency` rule: per instance
 * whatever its `limitMode`; `duration` and `quota` do not apply. Conditions are TSF tags on the arriving
 * request; `destination.interface` is the request path.
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
    if (model !== 'QPS' && model !== 'THREAD') {
      throw new TsfFieldError(
        `${p}.conditionModel`,
        `"${model}" is not supported by Meshlet (QPS: requests per duration, or THREAD: requests in flight)`,
      );
    }
    const thread = model === 'THREAD';
    if (!thread && rule.concurrentThreads !== undefined && rule.concurrentThreads !== null)
      notice(`${p}.concurrentThreads`, 'only for THREAD rules; not applied');
    if (rule.limitedResponse !== undefined && rule.limitedResponse !== null && rule.limitedResponse !== '') {
      notice(`${p}.limitedResponse`, "a custom 429 body is not supported; Meshlet's own 429 body is sent");
    }
    checkAndOnly(rule.conditionExpression, `${p}.conditionExpression`);
    // A THREAD rule's limit is `concurrentThreads`, the capacity of the semaphore polaris-java
    // builds from it (RateLimitingService: ConcurrencyAmount.maxAmount); the console may still
    // write a QPS period and quota beside it, which mean nothing there: reported, not refused.
    if (thread) {
      for (const f of ['duration', 'quota'] as const)
        if (rule[f] !== undefined && rule[f] !== null)
          notice(`${p}.${f}`, 'a THREAD limit counts requests in flight (concurrentThreads); not applied');
    }
    const duration = thread ? 0 : tsfField.integer(rule.duration, `${p}.duration`, 1, MAX_DURATION_S);
    const quota = thread
      ? tsfField.integer(rule.concurrentThreads, `${p}.concurrentThreads`, 1, MAX_CONCURRENCY)
      : tsfField.integer(rule.quota, `${p}.quota`, 1, 1e9);
    const tags = convertTagList(rule.conditions, `${p}.conditions`, { side: { side: 'inbound' }, local, notice });
    if (tags.never !== undefined) {
      notice(p, `never matches requests to this instance: ${tags.never}`);
      return;
    }
    let name = ruleName(tsfField.optionalText(rule.id, `${p}.id`), `tsf-ratelimit-${i}`);
    if (names.has(name)) name = `${name}-${i}`;
    names.add(name);
    const when = tags.when.length > 0 ? { when: tags.when } : {};
    if (thread) {
      rules.push({ name, ...when, concurrency: quota });
      return;
    }
    rules.push({
      name,
      ...when,
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
