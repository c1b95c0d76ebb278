import { type NoticeSink, ruleName, tsfField } from './tsf-fields.js';
import { checkAndOnly } from './tsf-ratelimit.js';
import { TsfFieldError } from './tsf-rule-error.js';
import { convertTagList, type TsfLocalIdentity } from './tsf-tag-condition.js';

// polaris-java connector-consul authority/entity (AuthRuleGroup, AuthRule, AuthTag,
// TsfAuthConstant) and AuthorityService; tencentyun/tsf-go testdata/auth.
const GROUP_KEYS = ['rules', 'ruleProgram', 'type'];
const RULE_KEYS = ['ruleId', 'ruleName', 'isEnabled', 'tags', 'tagProgram'];
const RULE_IGNORED = ['createTime', 'updateTime', 'microserviceId', 'namespaceId'];

/** TSF's authority types (TsfAuthConstant.TYPE): block list, allow list, disabled. */
export const TsfAuthType = { blockList: 'B', allowList: 'W', disabled: 'D' } as const;
/** `isEnabled` of a rule TSF has switched off (AuthRule: "0：不启用；1：启用"). */
export const TSF_AUTH_RULE_DISABLED = '0';

/**
 * Converts TSF's authority document (`authority/<ns>/<svc>/data`: a YAML list of groups
 * `{type, rules, ruleProgram}`) into a Meshlet `auth` section. `B`: a request matching
 * any rule is denied, others allowed; `W`: a matching request is allowed, others denied;
 * `D`: no rules. A rule's tags are ANDed; rules are alternatives.
 */
export function convertTsfAuthority(doc: unknown, local: TsfLocalIdentity, notice: NoticeSink): Record<string, unknown> {
  if (doc === null || doc === undefined) return { rules: [] };
  const groups = tsfField.list(doc, '');
  let type: string | undefined;
  const names = new Set<string>();
  const rules: Record<string, unknown>[] = [];
  groups.forEach((g, i) => {
    const p = `[${i}]`;
    const group = tsfField.object(g, p);
    tsfField.reportUnknown(group, p, GROUP_KEYS, [], notice);
    const t = tsfField.text(group.type, `${p}.type`);
    if (!(Object.values(TsfAuthType) as string[]).includes(t)) throw new TsfFieldError(`${p}.type`, `must be B, W or D (got "${t}")`);
    if (type !== undefined && t !== type) throw new TsfFieldError(`${p}.type`, `is "${t}", but an earlier group is "${type}"`);
    type = t;
    const program = tsfField.optionalText(group.ruleProgram, `${p}.ruleProgram`);
    if (program !== undefined && program.trim() !== '' && !/^\s*\{[^{}]+\}(\s+OR\s+\{[^{}]+\})*\s*$/i.test(program)) {
      throw new TsfFieldError(
        `${p}.ruleProgram`,
        `"${program}" combines rules with something other than OR; Meshlet's rules are alternatives`,
      );
    }
    if (t === TsfAuthType.disabled) return;
    tsfField.optionalList(group.rules, `${p}.rules`).forEach((r, j) => {
      const rp = `${p}.rules[${j}]`;
      const rule = tsfField.object(r, rp);
      tsfField.reportUnknown(rule, rp, RULE_KEYS, RULE_IGNORED, notice);
      if (tsfField.optionalText(rule.isEnabled, `${rp}.isEnabled`) === TSF_AUTH_RULE_DISABLED) return;
      checkAndOnly(rule.tagProgram, `${rp}.tagProgram`);
      const tags = convertTagList(rule.tags, `${rp}.tags`, { side: { side: 'inbound' }, local, notice });
      if (tags.never !== undefined) {
        notice(rp, `never matches requests to this instance: ${tags.never}`);
        return;
      }
      let name = ruleName(tsfField.optionalText(rule.ruleId, `${rp}.ruleId`), `tsf-auth-${i}-${j}`);
      if (names.has(name)) name = `${name}-${i}-${j}`;
      names.add(name);
      const description = tsfField.optionalText(rule.ruleName, `${rp}.ruleName`);
      rules.push({
        name,
        ...(description ? { description: description.slice(0, 1024) } : {}),
        action: t === TsfAuthType.blockList ? 'deny' : 'allow',
        ...(tags.when.length > 0 ? { when: tags.when } : {}),
      });
    });
  });
  if (type === undefined || type === TsfAuthType.disabled) return { rules: [] };
  return { default: type === TsfAuthType.blockList ? 'allow' : 'deny', rules };
}
