import {
  type Condition,
  field,
  parseCondition,
  type RuleKind,
  type RuleKindEntry,
  RuleValidationError,
  shippedSchema,
} from '@meshlet/core';

/** One fault rule: for a share of the calls whose tags match, delay and/or abort. */
export interface FaultRule {
  readonly name: string;
  /** Core conditions, ANDed; empty: every call. */
  readonly when: readonly Condition[];
  /** Share of matching calls affected, 0-100 (fractions allowed: 0.5 is one call in 200). */
  readonly percentage: number;
  /** Milliseconds to wait before sending (or before aborting). */
  readonly delay?: number;
  /** HTTP status to answer with instead of sending the call. */
  readonly abort?: number;
}

/** The `fault` section of a service's rule document: faults injected into calls to that service. */
export interface FaultSection {
  readonly rules: readonly FaultRule[];
  /** `shadow`: rules are drawn and what they would inject is reported, nothing is injected. Absent: `enforce`. */
  readonly mode?: 'enforce' | 'shadow';
}

export const FAULT_SECTION_MODES = ['enforce', 'shadow'] as const;

export const FAULT_LIMITS = {
  maxRules: 100,
  maxConditions: 32,
  maxNameLength: 64,
  /** A minute: a longer delay only holds sockets open, it tests nothing a minute does not. */
  maxDelayMs: 60_000,
  minAbortStatus: 400,
  maxAbortStatus: 599,
} as const;

/** Parses and validates the `fault` section; throws RuleValidationError naming the field. */
export function parseFaultSection(raw: unknown, path: string): FaultSection {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['rules', 'mode']);
  const mode = obj.mode === undefined ? undefined : field.oneOf(obj.mode, `${path}.mode`, FAULT_SECTION_MODES);
  const list = field.array(obj.rules, `${path}.rules`);
  if (list.length > FAULT_LIMITS.maxRules) throw new RuleValidationError(`${path}.rules`, `at most ${FAULT_LIMITS.maxRules} rules`);
  const names = new Set<string>();
  const rules = list.map((r, i) => {
    const rule = parseFaultRule(r, `${path}.rules[${i}]`);
    if (names.has(rule.name)) throw new RuleValidationError(`${path}.rules[${i}].name`, `duplicate rule name "${rule.name}"`);
    names.add(rule.name);
    return rule;
  });
  return mode === 'shadow' ? { rules, mode } : { rules };
}

function parseFaultRule(raw: unknown, path: string): FaultRule {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['name', 'when', 'percentage', 'delay', 'abort']);
  // The name is the x-meshlet-fault header value of an abort: a space, CR/LF or a
  // character past Latin-1 there made every aborted call throw instead of answering.
  const name = field.ruleName(obj.name, `${path}.name`, FAULT_LIMITS.maxNameLength);
  const whenRaw = obj.when === undefined ? [] : field.array(obj.when, `${path}.when`);
  if (whenRaw.length > FAULT_LIMITS.maxConditions) {
    throw new RuleValidationError(`${path}.when`, `at most ${FAULT_LIMITS.maxConditions} conditions`);
  }
  const when = whenRaw.map((c, i) => parseCondition(c, `${path}.when[${i}]`));
  const percentage = field.number(obj.percentage, `${path}.percentage`, 0, 100);
  const delay = obj.delay === undefined ? undefined : field.integer(obj.delay, `${path}.delay`, 0, FAULT_LIMITS.maxDelayMs);
  const abort =
    obj.abort === undefined
      ? undefined
      : field.integer(obj.abort, `${path}.abort`, FAULT_LIMITS.minAbortStatus, FAULT_LIMITS.maxAbortStatus);
  if (delay === undefined && abort === undefined) throw new RuleValidationError(path, 'a fault rule needs "delay", "abort" or both');
  return { name, when, percentage, ...(delay !== undefined ? { delay } : {}), ...(abort !== undefined ? { abort } : {}) };
}

/** The `fault` rule kind, for RuleWatcher's `kinds`. */
export const faultRuleKind: RuleKind<FaultSection> = { name: 'fault', parse: parseFaultSection };

/** The `fault` rule kind as this package publishes it: parser and JSON Schema. */
export const faultRule: RuleKindEntry<FaultSection> = {
  kind: faultRuleKind,
  schema: shippedSchema('@meshlet/fault', 'schema/fault.schema.json', import.meta.url),
};
