import { RE2JS } from 're2js';
import { pathTagValue, REQUEST_PATH_MAX_LENGTH } from '../request-path.js';
import { SystemTag, TagLimits } from '../tags.js';
import { field, RuleValidationError } from './rule-error.js';

/**
 * A condition on one tag. Conditions in a list are ANDed. A condition on a tag the
 * request does not have is false, whatever the operator (TSF's rule: a rule that needs a
 * tag the request lacks does not match) — except `exists`, which asks exactly that.
 */
export type Condition =
  | { readonly tag: string; readonly op: 'equals' | 'notEquals'; readonly value: string }
  | { readonly tag: string; readonly op: 'in' | 'notIn'; readonly values: readonly string[] }
  | { readonly tag: string; readonly op: 'regex'; readonly pattern: string }
  | { readonly tag: string; readonly op: 'exists' }
  | { readonly tag: string; readonly op: 'range'; readonly min?: number; readonly max?: number };

export const OPERATORS = ['equals', 'notEquals', 'in', 'notIn', 'regex', 'exists', 'range'] as const;
export type Operator = (typeof OPERATORS)[number];

/** Reads a tag's value for the request being matched. */
export type TagLookup = (tag: string) => string | undefined;
/** A compiled condition list: true when every condition holds. */
export type Matcher = (lookup: TagLookup) => boolean;

export const REGEX_MAX_LENGTH = 256;

/** Parses and validates one condition; throws RuleValidationError naming the field. */
export function parseCondition(raw: unknown, path: string): Condition {
  const obj = field.object(raw, path);
  const tag = field.string(obj.tag, `${path}.tag`, 128);
  if (tag.length === 0) throw new RuleValidationError(`${path}.tag`, 'must not be empty');
  const op = field.oneOf(obj.op, `${path}.op`, OPERATORS);
  switch (op) {
    case 'equals':
    case 'notEquals':
      field.onlyKeys(obj, path, ['tag', 'op', 'value']);
      return { tag, op, value: field.string(obj.value, `${path}.value`) };
    case 'in':
    case 'notIn': {
      field.onlyKeys(obj, path, ['tag', 'op', 'values']);
      const values = field.array(obj.values, `${path}.values`).map((v, i) => field.string(v, `${path}.values[${i}]`));
      if (values.length === 0) throw new RuleValidationError(`${path}.values`, 'must not be empty');
      return { tag, op, values };
    }
    case 'regex': {
      field.onlyKeys(obj, path, ['tag', 'op', 'pattern']);
      const pattern = field.string(obj.pattern, `${path}.pattern`, Number.MAX_SAFE_INTEGER);
      const regex = compiledRegex(obj, tag, pattern, `${path}.pattern`);
      const condition = { tag, op, pattern };
      compiledRegexes.set(condition, { regex, tag, pattern });
      return condition;
    }
    case 'exists':
      field.onlyKeys(obj, path, ['tag', 'op']);
      return { tag, op };
    case 'range': {
      field.onlyKeys(obj, path, ['tag', 'op', 'min', 'max']);
      const min = obj.min === undefined ? undefined : field.number(obj.min, `${path}.min`);
      const max = obj.max === undefined ? undefined : field.number(obj.max, `${path}.max`);
      if (min === undefined && max === undefined) throw new RuleValidationError(path, 'range needs min, max or both');
      if (min !== undefined && max !== undefined && min > max) throw new RuleValidationError(`${path}.min`, 'must not be greater than max');
      return { tag, op, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) };
    }
  }
}

/**
 * Longest regex program (RE2 instructions) accepted: the work per character of a value is
 * bounded by it. As the document's budget (RULE_DOCUMENT_LIMITS.maxRegexProgram), which a
 * single pattern may use whole.
 */
export const REGEX_MAX_PROGRAM = 1_000;

/** A compiled rule regex: answers in time linear in the value's length, never backtracks. */
export interface LinearRegex {
  /** True when the pattern matches anywhere in `value` (as `RegExp.prototype.test`). */
  test(value: string): boolean;
  /** RE2 instructions in the compiled program: the bound on work per character. */
  readonly programSize: number;
}

/**
 * Compiles a rule regex with RE2 semantics (re2js, a pure JS port of RE2): matching takes
 * time linear in the value, whatever the pattern, so no tag value can stall the event
 * loop. What RE2 cannot express (back-references, lookarounds, `\u` escapes — write
 * `\x{41}`) is refused here, naming the field, as are patterns longer than
 * REGEX_MAX_LENGTH or compiling to more than REGEX_MAX_PROGRAM instructions.
 */
export function checkRegex(pattern: string, path: string, ignoreCase = false): LinearRegex {
  if (pattern.length > REGEX_MAX_LENGTH)
    throw new RuleValidationError(path, `regex longer than ${REGEX_MAX_LENGTH} characters`, 'regexLength');
  let compiled: RE2JS;
  try {
    compiled = ignoreCase ? RE2JS.compile(pattern, RE2JS.CASE_INSENSITIVE) : RE2JS.compile(pattern);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new RuleValidationError(path, `invalid regex or not expressible in RE2 (linear time): ${message}`, 'regex');
  }
  const programSize = compiled.programSize();
  if (programSize > REGEX_MAX_PROGRAM) {
    throw new RuleValidationError(
      path,
      `regex compiles to ${programSize} instructions, more than ${REGEX_MAX_PROGRAM}; use smaller repeat counts`,
      'regexProgram',
    );
  }
  // Matched by re2js's NFA (one-pass, bit-state or Pike VM: a Matcher's find), not its lazy
  // DFA (RE2JS.test): the DFA caches states of up to 8 MB a regex, one transition table a
  // state as wide as the pattern's character classes, and a document's regexes held 287 MB
  // after one decision (39 × `(?i)(?:\pL|\pN){500}z`, 512-byte value) and 23 MB (19 ×
  // `(?s).{1000}z`), its first decision taking 0.5–1.4 s. The NFA keeps one machine as large
  // as the program (under 0.1 MB for 1,000 instructions) and, once the engine's code is warm,
  // costs the same on the first value as on the next: 5–17 ns per instruction and byte of the
  // value. On the ordinary patterns of bench/regex-conditions.ts it costs 0.2–2 µs a test (40 µs for
  // `[a-z]+(-[0-9])?$` on 512 bytes, 9 µs on the DFA) where V8's RegExp costs tens of ns;
  // a tag such as ua.family repeats its few values, so the last answer is kept.
  let lastValue: string | undefined;
  let lastResult = false;
  return {
    test(value) {
      if (value !== lastValue) {
        lastResult = compiled.matcher(value).find();
        lastValue = value;
      }
      return lastResult;
    },
    programSize,
  };
}

/**
 * How a condition compares its tag's values. `request.path` reads in its folded form
 * (pathTagValue: canonical, lower-cased, no trailing slash, as path templates compare a
 * path), so a condition's values are put in that form and its regex ignores case: a deny on
 * `/internal` is not missed by `/INTERNAL/`. Every other tag is compared exactly.
 */
const comparedForm = (tag: string): ((value: string) => string) | undefined => (tag === SystemTag.requestPath ? pathTagValue : undefined);

/**
 * A condition value on `tag` in the form a request's tag is compared with: what an
 * `equals` / `in` condition holds for. Whatever looks a value up without the compiled
 * matcher (route's rule index) must file it under this form, or it misses what the
 * matcher accepts (`equals "/Beta"` against the tag `/beta`).
 */
export function comparedValue(tag: string, value: string): string {
  const form = comparedForm(tag);
  return form ? form(value) : value;
}

/**
 * A regex condition on `tag`, compiled as rules run it (checkRegex; ignoring case where the
 * tag's values are folded), or refused naming `path`.
 */
export function conditionRegex(tag: string, pattern: string, path: string): LinearRegex {
  return checkRegex(pattern, path, comparedForm(tag) !== undefined);
}

/**
 * The regex compiled for a condition, by the object it was read from: a JSON document's
 * condition object (the document's bounds check compiles it for its size), the Condition
 * parseCondition returns (compileConditions matches with it). So a regex is compiled once
 * between the bounds check, its kind's parser and the matchers built from it, however often
 * they are rebuilt. Weak: it goes with its condition.
 */
const compiledRegexes = new WeakMap<object, { readonly regex: LinearRegex; readonly tag: string; readonly pattern: string }>();

/** conditionRegex(tag, pattern, path), compiled once for the condition object `of` (see compiledRegexes). */
export function compiledRegex(of: object, tag: string, pattern: string, path: string): LinearRegex {
  const had = compiledRegexes.get(of);
  // Checked, not assumed: a raw object may have been changed since.
  if (had !== undefined && had.pattern === pattern && comparedForm(had.tag) === comparedForm(tag)) return had.regex;
  const regex = conditionRegex(tag, pattern, path);
  compiledRegexes.set(of, { regex, tag, pattern });
  return regex;
}

/**
 * What a regex condition on `tag` counts against a document's budget
 * (RULE_DOCUMENT_LIMITS.maxRegexProgram): its instructions, times how many tag values its
 * tag's longest value is. A tag's value is at most TagLimits.maxValueBytes (512) long; a
 * request's path REQUEST_PATH_MAX_LENGTH (4,096): eight times the work a character of the
 * pattern costs, so eight times the count.
 */
export function regexCost(tag: string, regex: LinearRegex): number {
  const longest = tag === SystemTag.requestPath ? REQUEST_PATH_MAX_LENGTH : TagLimits.maxValueBytes;
  return regex.programSize * Math.ceil(longest / TagLimits.maxValueBytes);
}

/** Compiles a condition list once into a matcher; regexes are compiled here, not per call. */
export function compileConditions(conditions: readonly Condition[]): Matcher {
  const tests = conditions.map(compileOne);
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0] as Matcher;
  return (lookup) => {
    for (const t of tests) if (!t(lookup)) return false;
    return true;
  };
}

function compileOne(c: Condition): Matcher {
  const { tag } = c;
  const compared = (value: string) => comparedValue(tag, value);
  switch (c.op) {
    case 'equals': {
      const value = compared(c.value);
      return (get) => get(tag) === value;
    }
    case 'notEquals': {
      const value = compared(c.value);
      return (get) => {
        const v = get(tag);
        return v !== undefined && v !== value;
      };
    }
    case 'in': {
      const set = new Set(c.values.map(compared));
      return (get) => {
        const v = get(tag);
        return v !== undefined && set.has(v);
      };
    }
    case 'notIn': {
      const set = new Set(c.values.map(compared));
      return (get) => {
        const v = get(tag);
        return v !== undefined && !set.has(v);
      };
    }
    case 'regex': {
      const re = compiledRegex(c, tag, c.pattern, 'pattern');
      return (get) => {
        const v = get(tag);
        return v !== undefined && re.test(v);
      };
    }
    case 'exists':
      return (get) => get(tag) !== undefined;
    case 'range': {
      const min = c.min ?? Number.NEGATIVE_INFINITY;
      const max = c.max ?? Number.POSITIVE_INFINITY;
      return (get) => {
        const v = get(tag);
        if (v === undefined || v.trim() === '') return false;
        const n = Number(v);
        return Number.isFinite(n) && n >= min && n <= max;
      };
    }
  }
}
