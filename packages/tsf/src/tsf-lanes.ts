import {
  type Condition,
  checkRuleDocumentBounds,
  compileConditions,
  compiledRegex,
  type Instance,
  type KvEntry,
  type KvStore,
  type Logger,
  type Matcher,
  MetaKey,
  RULE_DOCUMENT_LIMITS,
  RuleValidationError,
  regexCost,
  silentLogger,
  type TagLookup,
  type Unsubscribe,
} from '@meshlet/core';
import { parse as parseYaml } from 'yaml';
import { type NoticeSink, tsfField } from './tsf-fields.js';
import { tsfRuleKey } from './tsf-keys.js';
import { TsfMetaKey } from './tsf-metadata.js';
import { TsfFieldError, type TsfNotice, TsfRuleError } from './tsf-rule-error.js';
import { coreCondition, TSF_OPERATORS, type TsfOperator } from './tsf-tag-condition.js';

// Field lists from polaris-java connector-consul lane/entity (LaneInfo, LaneGroup,
// LaneRule, LaneRuleTag, RuleTagRelationship) and tencentyun/tsf-go testdata/lane_info,
// testdata/lane_rule.
const INFO_KEYS = ['laneId', 'laneName', 'laneGroupList'];
const INFO_IGNORED = ['remark', 'createTime', 'updateTime'];
const GROUP_KEYS = ['groupId', 'applicationId', 'namespaceId', 'entrance', 'status'];
const GROUP_IGNORED = ['laneGroupId', 'laneId', 'groupName', 'applicationName', 'namespaceName', 'clusterType', 'createTime', 'updateTime'];
const RULE_KEYS = ['ruleId', 'ruleName', 'priority', 'ruleTagList', 'ruleTagRelationship', 'laneId', 'enable'];
const RULE_IGNORED = ['remark', 'createTime', 'updateTime'];
const TAG_KEYS = ['tagName', 'tagOperator', 'tagValue'];
const TAG_IGNORED = ['tagId', 'laneRuleId', 'createTime', 'updateTime'];

/**
 * Bounds on lane rules. `laneFor` runs on every arriving request and tests every enabled
 * rule of the entrance's lanes (all of them for a request that matches none), so the rules
 * in force together are held to what one Meshlet rule document may hold (their count,
 * characters and regex budget summed); each key is also checked alone against
 * RULE_DOCUMENT_LIMITS (its strings, its IN lists, its regexes), so that a key over them is
 * refused naming its own field.
 */
export const TsfLaneLimits = {
  /** Tags of one lane rule: as many conditions as a Meshlet route rule takes. */
  maxTags: 32,
  /** Lane rule keys in force at once: as many rules as a Meshlet route section takes. */
  maxRules: 1000,
  /** Characters of the lane rules in force, as JSON: one rule document's. */
  maxChars: RULE_DOCUMENT_LIMITS.maxChars,
  /** RE2 instructions over every regex tag of the lane rules in force (as regexCost counts them): one rule document's budget. */
  maxRegexProgram: RULE_DOCUMENT_LIMITS.maxRegexProgram,
} as const;

/** LaneGroup `status` of a deleted group (1 deleted, 2 running, 3 stopped). */
export const TSF_LANE_GROUP_DELETED = 1;

export interface TsfLaneGroup {
  readonly groupId: string;
  readonly applicationId?: string;
  readonly namespaceId?: string;
  /** Requests entering this group are put into a lane by the lane rules. */
  readonly entrance: boolean;
}

/** A TSF lane (`lane/info/…`): the deployment groups whose instances serve its traffic. */
export interface TsfLane {
  readonly id: string;
  readonly name?: string;
  readonly groups: readonly TsfLaneGroup[];
}

/** A TSF lane rule (`lane/rule/…`): requests whose tags match enter lane `laneId` at an entrance group. */
export interface TsfLaneRule {
  readonly id: string;
  readonly laneId: string;
  /** Smaller first (LaneRule: "the smaller, the higher"). */
  readonly priority: number;
  readonly enabled: boolean;
  /** `RELEATION_AND` (TSF's spelling; the default) → all, `RELEATION_OR` → any. */
  readonly match: 'all' | 'any';
  readonly when: readonly Condition[];
}

export function convertTsfLaneInfo(doc: unknown, notice: NoticeSink): TsfLane {
  const obj = tsfField.object(doc, '');
  tsfField.reportUnknown(obj, '', INFO_KEYS, INFO_IGNORED, notice);
  const id = tsfField.text(obj.laneId, 'laneId');
  const name = tsfField.optionalText(obj.laneName, 'laneName');
  const groups: TsfLaneGroup[] = [];
  tsfField.optionalList(obj.laneGroupList, 'laneGroupList').forEach((raw, i) => {
    const p = `laneGroupList[${i}]`;
    const g = tsfField.object(raw, p);
    tsfField.reportUnknown(g, p, GROUP_KEYS, GROUP_IGNORED, notice);
    const status = g.status === undefined || g.status === null ? undefined : tsfField.integer(g.status, `${p}.status`, 0, 99);
    if (status === TSF_LANE_GROUP_DELETED) return;
    const applicationId = tsfField.optionalText(g.applicationId, `${p}.applicationId`);
    const namespaceId = tsfField.optionalText(g.namespaceId, `${p}.namespaceId`);
    groups.push({
      groupId: tsfField.text(g.groupId, `${p}.groupId`),
      ...(applicationId !== undefined ? { applicationId } : {}),
      ...(namespaceId !== undefined ? { namespaceId } : {}),
      entrance: tsfField.boolean(g.entrance, `${p}.entrance`, false),
    });
  });
  return { id, ...(name !== undefined ? { name } : {}), groups };
}

export function convertTsfLaneRule(doc: unknown, notice: NoticeSink): TsfLaneRule {
  const obj = tsfField.object(doc, '');
  tsfField.reportUnknown(obj, '', RULE_KEYS, RULE_IGNORED, notice);
  const relation = tsfField.optionalText(obj.ruleTagRelationship, 'ruleTagRelationship') ?? 'RELEATION_AND';
  if (relation !== 'RELEATION_AND' && relation !== 'RELEATION_OR') {
    throw new TsfFieldError('ruleTagRelationship', `must be RELEATION_AND or RELEATION_OR (got "${relation}")`);
  }
  const tagList = tsfField.optionalList(obj.ruleTagList, 'ruleTagList');
  if (tagList.length > TsfLaneLimits.maxTags) {
    throw new TsfFieldError('ruleTagList', `at most ${TsfLaneLimits.maxTags} tags (got ${tagList.length})`, 'tags');
  }
  const when = tagList.map((raw, i) => {
    const p = `ruleTagList[${i}]`;
    const t = tsfField.object(raw, p);
    tsfField.reportUnknown(t, p, TAG_KEYS, TAG_IGNORED, notice);
    const tag = tsfField.text(t.tagName, `${p}.tagName`);
    if (tag.length === 0) throw new TsfFieldError(`${p}.tagName`, 'must not be empty');
    const operator = tsfField.text(t.tagOperator, `${p}.tagOperator`);
    if (!Object.hasOwn(TSF_OPERATORS, operator)) {
      throw new TsfFieldError(`${p}.tagOperator`, `must be one of ${Object.keys(TSF_OPERATORS).join(', ')} (got "${operator}")`);
    }
    return coreCondition(tag, operator as TsfOperator, tsfField.text(t.tagValue, `${p}.tagValue`), `${p}.tagValue`);
  });
  const rule: TsfLaneRule = {
    id: tsfField.text(obj.ruleId, 'ruleId'),
    laneId: tsfField.text(obj.laneId, 'laneId'),
    priority: tsfField.optionalInteger(obj.priority, 'priority', 0, 0, 1_000_000),
    // LaneRule.enable is a Java boolean: absent is false.
    enabled: tsfField.boolean(obj.enable, 'enable', false),
    match: relation === 'RELEATION_OR' ? 'any' : 'all',
    when,
  };
  checkLaneRuleBounds(rule);
  return rule;
}

/**
 * Core's document bounds (RULE_DOCUMENT_LIMITS: string and list lengths, the regex budget…),
 * checked on the rule as a one-section document (its regexes, compiled by the conversion,
 * are not compiled again); the field core names is given back as the TSF field
 * (`lane.when[2]…` → `ruleTagList[2].tagValue`).
 */
function checkLaneRuleBounds(rule: TsfLaneRule): void {
  const doc = { service: LANES_DOCUMENT, lane: rule };
  try {
    checkRuleDocumentBounds(doc, JSON.stringify(doc));
  } catch (err) {
    if (!(err instanceof RuleValidationError)) throw err;
    const tag = /^lane\.when\[(\d+)\]/.exec(err.path);
    const path = tag ? `ruleTagList[${tag[1]}].tagValue` : err.path === 'lane.id' ? 'ruleId' : err.path === 'lane.laneId' ? 'laneId' : '';
    throw new TsfFieldError(path, err.reason, err.limit);
  }
}

/** The `service` of the documents lane rules are checked as. */
const LANES_DOCUMENT = 'tsf-lanes';

/** What a lane rule in force takes of TsfLaneLimits' totals. */
interface LaneRuleCost {
  readonly chars: number;
  readonly regexProgram: number;
}

/**
 * Each converted rule's cost, made once: by the rule object, so it goes with the rule when
 * the key changes or goes (no second map beside the key states to keep in step). Its
 * regexes are the conversion's, compiled once (core's compiledRegex).
 */
const laneRuleCosts = new WeakMap<TsfLaneRule, LaneRuleCost>();

function laneRuleCost(rule: TsfLaneRule): LaneRuleCost {
  let cost = laneRuleCosts.get(rule);
  if (cost === undefined) {
    let regexProgram = 0;
    for (const c of rule.when) if (c.op === 'regex') regexProgram += regexCost(c.tag, compiledRegex(c, c.tag, c.pattern, 'pattern'));
    cost = { chars: JSON.stringify(rule).length, regexProgram };
    laneRuleCosts.set(rule, cost);
  }
  return cost;
}

/** The state of one lane key, as TsfRuleStore's `status`. */
export interface TsfLaneKeyStatus {
  readonly key: string;
  readonly inForce: number;
  readonly error?: TsfRuleError;
  readonly notices: readonly TsfNotice[];
}

interface KeyState<T> {
  revision: number;
  inForce: number;
  value: T | undefined;
  error: TsfRuleError | undefined;
  notices: readonly TsfNotice[];
}

interface CompiledLaneRule {
  readonly laneId: string;
  readonly matches: Matcher;
}

/**
 * TSF's lanes as Meshlet lanes. Meshlet puts an instance into a lane by its metadata `lane`
 * and a request by its tag `lane`; TSF puts deployment groups into lanes (`lane/info/`)
 * and colours a request entering an entrance group by the first lane rule that matches
 * (`lane/rule/`). So:
 *
 * - `laneOfGroup` / `tsfLaneMetadata`: the `lane` metadata this process registers with;
 * - `annotate`: discovered instances with `lane` set from their `TSF_GROUP_ID`, so that
 *   Java instances in a TSF lane are lane instances to Meshlet's router too;
 * - `laneFor`: the lane an arriving request enters at this group, to set as its `lane` tag.
 *
 * Each key is converted on its own; a key that cannot be converted, or would take the lane
 * rules in force over TsfLaneLimits, keeps its previous conversion (logged with key and
 * field) and the other keys still apply. Everything the lookups need is precomputed when a
 * key changes, and what `laneFor` tests per request is bounded by TsfLaneLimits.
 */
export class TsfLanes {
  readonly #logger: Logger;
  readonly #infos = new Map<string, KeyState<TsfLane>>();
  readonly #rules = new Map<string, KeyState<TsfLaneRule>>();
  #groupLane = new Map<string, string | null>();
  #entrances = new Map<string, readonly CompiledLaneRule[]>();
  readonly #listeners = new Set<() => void>();

  constructor(options: { readonly logger?: Logger } = {}) {
    this.#logger = options.logger ?? silentLogger;
  }

  /** Follows `lane/info/` and `lane/rule/` in TSF's Consul KV. */
  follow(kv: KvStore): Unsubscribe {
    const offs = [
      kv.watch(tsfRuleKey.laneInfoPrefix, (entries) => this.update(tsfRuleKey.laneInfoPrefix, entries)),
      kv.watch(tsfRuleKey.laneRulePrefix, (entries) => this.update(tsfRuleKey.laneRulePrefix, entries)),
    ];
    return () => {
      for (const off of offs) off();
    };
  }

  /** Called after every change that altered the lanes in force. */
  onChange(listener: () => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Replaces what is known under `prefix` (`lane/info/` or `lane/rule/`) with `entries`. */
  update(prefix: string, entries: readonly KvEntry[]): void {
    if (prefix === tsfRuleKey.laneInfoPrefix) this.#apply(this.#infos, entries, convertTsfLaneInfo);
    else if (prefix === tsfRuleKey.laneRulePrefix)
      this.#apply(this.#rules, entries, convertTsfLaneRule, (key, rule) => this.#admit(key, rule));
    else throw new RangeError(`${prefix}: TsfLanes reads ${tsfRuleKey.laneInfoPrefix} and ${tsfRuleKey.laneRulePrefix}`);
    this.#compile();
    for (const l of [...this.#listeners]) l();
  }

  get lanes(): readonly TsfLane[] {
    return [...this.#infos.values()].flatMap((s) => (s.value ? [s.value] : []));
  }

  get rules(): readonly TsfLaneRule[] {
    return [...this.#rules.values()].flatMap((s) => (s.value ? [s.value] : []));
  }

  get status(): readonly TsfLaneKeyStatus[] {
    return [...this.#infos, ...this.#rules].map(([key, s]) => ({
      key,
      inForce: s.inForce,
      ...(s.error ? { error: s.error } : {}),
      notices: s.notices,
    }));
  }

  /** The lane of a deployment group; undefined when it is in none, or in several (Meshlet instances are in one lane). */
  laneOfGroup(groupId: string): string | undefined {
    return this.#groupLane.get(groupId) ?? undefined;
  }

  /** The lane a request arriving at `groupId` enters, by the first matching rule of a lane it is an entrance of. */
  laneFor(groupId: string, tags: TagLookup): string | undefined {
    const rules = this.#entrances.get(groupId);
    if (rules === undefined) return undefined;
    for (const r of rules) if (r.matches(tags)) return r.laneId;
    return undefined;
  }

  /** Instances with metadata `lane` set from their `TSF_GROUP_ID`; others come back as they are. */
  annotate(instances: readonly Instance[]): Instance[] {
    return instances.map((i) => {
      const group = i.metadata[TsfMetaKey.groupId];
      const lane = group === undefined ? undefined : this.laneOfGroup(group);
      if (lane === undefined || i.metadata[MetaKey.lane] === lane) return i;
      return { ...i, metadata: { ...i.metadata, [MetaKey.lane]: lane } };
    });
  }

  /**
   * `admit` is asked, after a key's value converts, whether it may replace the key's
   * conversion in force; it throws TsfFieldError to refuse it. Keys no longer present are
   * dropped first, so what they held is free for the changed ones.
   */
  #apply<T>(
    states: Map<string, KeyState<T>>,
    entries: readonly KvEntry[],
    convert: (doc: unknown, notice: NoticeSink) => T,
    admit: (key: string, value: T) => void = () => {},
  ): void {
    const present = new Set(entries.filter((e) => e.value.trim() !== '').map((e) => e.key));
    for (const key of [...states.keys()]) if (!present.has(key)) states.delete(key);
    for (const e of entries) {
      if (!present.has(e.key)) continue;
      const st = states.get(e.key) ?? { revision: -1, inForce: 0, value: undefined, error: undefined, notices: [] };
      states.set(e.key, st);
      if (st.revision === e.revision) continue;
      st.revision = e.revision;
      const notices: TsfNotice[] = [];
      try {
        let doc: unknown;
        try {
          doc = parseYaml(e.value, { schema: 'yaml-1.1', prettyErrors: false });
        } catch (err) {
          throw new TsfFieldError('', `not valid YAML: ${(err as Error).message.split('\n')[0]}`);
        }
        const value = convert(doc, (path, message) => notices.push({ key: e.key, path, message }));
        admit(e.key, value);
        st.value = value;
        st.inForce = e.revision;
        st.error = undefined;
        st.notices = notices;
        for (const n of notices) {
          this.#logger.warn('TSF rule field not applied', {
            code: 'MESHLET_TSF_FIELD_NOT_APPLIED',
            key: n.key,
            path: n.path,
            reason: n.message,
          });
        }
      } catch (err) {
        if (!(err instanceof TsfFieldError)) throw err;
        st.error = new TsfRuleError(e.key, err.path, err.reason, err.limit);
        this.#logger.error('TSF rule refused; the previous rules of this key stay in force', {
          code: st.error.code,
          key: e.key,
          path: err.path,
          reason: err.reason,
          ...(err.limit ? { limit: err.limit } : {}),
          revision: e.revision,
          inForce: st.inForce,
        });
      }
    }
  }

  /**
   * Admits a lane rule in place of `key`'s rule in force when the rules in force stay
   * within TsfLaneLimits; else refuses it (the key keeps its rule in force, if any). The
   * rule alone is within them (checkLaneRuleBounds), so what is over is the total: each
   * rule's part is made once per rule (laneRuleCost), so admitting n keys costs n sums of
   * numbers, not n checks of every rule in force. A key refused here is not retried until
   * it changes.
   */
  #admit(key: string, rule: TsfLaneRule): void {
    const L = TsfLaneLimits;
    const cost = laneRuleCost(rule);
    let rules = 1;
    let chars = cost.chars;
    let regexProgram = cost.regexProgram;
    for (const [k, st] of this.#rules) {
      if (k === key || st.value === undefined) continue;
      const c = laneRuleCost(st.value);
      rules++;
      chars += c.chars;
      regexProgram += c.regexProgram;
    }
    if (rules > L.maxRules) throw new TsfFieldError('', `more than ${L.maxRules} lane rules would be in force`, 'laneRules');
    if (chars > L.maxChars) {
      throw new TsfFieldError('', `the lane rules in force would take ${chars} characters together, more than ${L.maxChars}`, 'laneChars');
    }
    if (regexProgram > L.maxRegexProgram) {
      throw new TsfFieldError(
        '',
        `the lane rules in force would compile to ${regexProgram} regex instructions together, more than ${L.maxRegexProgram}; use fewer or simpler patterns (IN for lists)`,
        'laneRegexBudget',
      );
    }
  }

  #compile(): void {
    const groupLane = new Map<string, string | null>();
    const entranceLanes = new Map<string, Set<string>>();
    for (const lane of this.lanes) {
      for (const g of lane.groups) {
        const had = groupLane.get(g.groupId);
        if (had === undefined) groupLane.set(g.groupId, lane.id);
        else if (had !== lane.id) {
          groupLane.set(g.groupId, null);
          this.#logger.warn('TSF deployment group in several lanes; Meshlet leaves it out of all of them', {
            code: 'MESHLET_TSF_FIELD_NOT_APPLIED',
            group: g.groupId,
            lanes: `${had ?? '?'},${lane.id}`,
          });
        }
        if (g.entrance) {
          const set = entranceLanes.get(g.groupId) ?? new Set<string>();
          set.add(lane.id);
          entranceLanes.set(g.groupId, set);
        }
      }
    }
    const ordered = this.rules
      .filter((r) => r.enabled)
      .map((r, i) => ({ r, i }))
      .sort((a, b) => a.r.priority - b.r.priority || a.i - b.i)
      .map(({ r }) => ({ laneId: r.laneId, matches: compileRule(r) }));
    const entrances = new Map<string, readonly CompiledLaneRule[]>();
    for (const [group, lanes] of entranceLanes) {
      const rules = ordered.filter((r) => lanes.has(r.laneId));
      if (rules.length > 0) entrances.set(group, rules);
    }
    this.#groupLane = groupLane;
    this.#entrances = entrances;
  }
}

function compileRule(rule: TsfLaneRule): Matcher {
  if (rule.match === 'all') return compileConditions(rule.when);
  const each = rule.when.map((c) => compileConditions([c]));
  // An OR over no tags matches nothing; an AND over none matches every request (as polaris-java's TrafficMatchRule).
  return (lookup) => each.some((m) => m(lookup));
}

/** The `lane` metadata this process registers with: `{ lane }` when its group is in one TSF lane, else `{}`. */
export function tsfLaneMetadata(lanes: TsfLanes, groupId: string): Record<string, string> {
  const lane = lanes.laneOfGroup(groupId);
  return lane === undefined ? {} : { [MetaKey.lane]: lane };
}
