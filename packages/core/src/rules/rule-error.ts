import { MeshletError } from '../errors.js';
import { shownValue } from '../option-checks.js';

/**
 * Characters of a refusal's reason kept: a reason says why in a sentence and shows a refused
 * value only bounded (`shownValue`); this cuts anything longer (a kind's parser that put a
 * whole value in its message), as RuleWatcher logs the reason and the CLI prints it.
 */
export const MAX_RULE_REASON_LENGTH = 1_000;

/**
 * A rule document that cannot be applied. `path` names the field, as a JSON path from the
 * document root (`route.rules[2].when[0].op`), so the message tells ops what to fix.
 */
export class RuleValidationError extends MeshletError {
  static readonly code = 'MESHLET_BAD_RULE';
  readonly path: string;
  readonly reason: string;
  /**
   * Which bound or engine limit refused the field, when one did (`depth`, `size`, `array`,
   * `keys`, `string`, `key`, `nodes`, `regex`, `regexLength`, `regexProgram`, `regexBudget`, `section`);
   * see RULE_DOCUMENT_LIMITS.
   */
  readonly limit: string | undefined;

  constructor(path: string, reason: string, limit?: string) {
    const bounded = reason.length > MAX_RULE_REASON_LENGTH ? `${reason.slice(0, MAX_RULE_REASON_LENGTH - 1)}…` : reason;
    super(RuleValidationError.code, `${path || '(document)'}: ${bounded}`);
    this.path = path;
    this.reason = bounded;
    this.limit = limit;
  }
}

/** A rule name's characters (its length is the kind's: field.ruleName). */
const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Field readers that throw RuleValidationError naming the path; for the rule parsers. */
export const field = {
  object(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RuleValidationError(path, 'must be an object');
    return value as Record<string, unknown>;
  },
  array(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) throw new RuleValidationError(path, 'must be an array');
    return value;
  },
  string(value: unknown, path: string, maxLength = 512): string {
    if (typeof value !== 'string') throw new RuleValidationError(path, 'must be a string');
    if (value.length > maxLength) throw new RuleValidationError(path, `must be at most ${maxLength} characters`);
    return value;
  },
  /**
   * A rule's name, at most `maxLength` characters: letters, digits, ".", "_" and "-",
   * starting with a letter or digit. Every kind's names go where free text cannot (a span
   * attribute, a metrics label, the `x-meshlet-fault` header value), so one rule for all.
   */
  ruleName(value: unknown, path: string, maxLength: number): string {
    const name = field.string(value, path, maxLength);
    if (!RULE_NAME.test(name))
      throw new RuleValidationError(path, `use 1 to ${maxLength} letters, digits, ".", "_" and "-", starting with a letter or digit`);
    return name;
  },
  number(value: unknown, path: string, min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY): number {
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new RuleValidationError(path, 'must be a number');
    if (value < min || value > max) throw new RuleValidationError(path, `must be between ${min} and ${max}`);
    return value;
  },
  integer(value: unknown, path: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
    const n = field.number(value, path, min, max);
    if (!Number.isInteger(n)) throw new RuleValidationError(path, 'must be a whole number');
    return n;
  },
  boolean(value: unknown, path: string): boolean {
    if (typeof value !== 'boolean') throw new RuleValidationError(path, 'must be true or false');
    return value;
  },
  oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T {
    if (typeof value !== 'string' || !allowed.includes(value as T)) {
      throw new RuleValidationError(path, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')} (got ${shownValue(value)})`);
    }
    return value as T;
  },
  /** Rejects keys other than `allowed`: a typo in a rule must not be silently ignored. */
  onlyKeys(obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) throw new RuleValidationError(`${path}.${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
    }
  },
};
