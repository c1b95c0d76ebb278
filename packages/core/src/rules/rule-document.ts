import { SERVICE_NAME } from '../instance.js';
import { shownValue } from '../option-checks.js';
import { compiledRegex, regexCost } from './condition.js';
import { field, RuleValidationError } from './rule-error.js';

/**
 * One kind of governance rule (route, ratelimit, breaker, auth…): the section of a rule
 * document it reads, and the parser that validates and compiles that section. Each
 * package defines its kind; core knows none of their formats.
 */
export interface RuleKind<T> {
  /** The document key of this kind's section, e.g. `route`. */
  readonly name: string;
  /** Validates the raw section; throws RuleValidationError naming the field (path starts with `name`). */
  parse(raw: unknown, path: string): T;
}

/**
 * A rule kind as its package publishes it, from `<kind>-rule.ts`: the parser, and where
 * the package ships the JSON Schema (draft 2020-12) of its section. The SDK's one list of
 * kinds (`meshlet/rule-kinds`) is a list of these; the CLI checks documents with it.
 */
export interface RuleKindEntry<T = unknown> {
  readonly kind: RuleKind<T>;
  readonly schema: RuleKindSchema;
}

/** Where a kind's JSON Schema is: its package and path there (for messages), and the file itself. */
export interface RuleKindSchema {
  readonly package: string;
  readonly file: string;
  /** The file, found from the kind's own module: the checker need not resolve the package's name. */
  readonly url: URL;
}

/**
 * The schema `file` that `pkg` ships, found from `moduleUrl`, the `import.meta.url` of a module
 * in the package's `dist/src/`. Not by the package's name: a checker (the CLI) resolving the
 * name from where it is installed missed a package npm had nested elsewhere.
 */
export function shippedSchema(pkg: string, file: string, moduleUrl: string): RuleKindSchema {
  return { package: pkg, file, url: new URL(`../../${file}`, moduleUrl) };
}

/**
 * A parsed rule document: every rule that governs calls to one service. Sections of kinds
 * this process did not load are kept raw and not validated here.
 */
export interface RuleDocument {
  readonly service: string;
  readonly description?: string;
  /** Parsed sections by kind name. */
  readonly sections: ReadonlyMap<string, unknown>;
}

const SECTION_NAME = /^[a-z][a-zA-Z0-9]*$/;

/**
 * The bounds every rule document meets before any kind's parser sees it, whatever its
 * kinds: checked in one place (parseRuleDocument), for the API, the CLI, the watcher and
 * TSF's converted documents alike, so that no document can make a parser, the route
 * table or a fallback's serialisation recurse, allocate or loop without bound.
 */
export const RULE_DOCUMENT_LIMITS = {
  /**
   * UTF-8 bytes of JSON text (125 KiB). An apply writes the document and its history entry,
   * which holds the document again as a JSON string (each quote and backslash doubled), both
   * base64 in one Consul transaction, whose body Consul refuses over 512 KiB (`txn_max_req_len`,
   * HTTP 413; Consul 1.16.3 took 524,288 bytes and refused 524,291). Worst case, every byte
   * doubled and the entry's other fields at their bounds: 4/3 × (B + 2B) + about 10.3 KB
   * (author, reason, numbers, keys, framing) fits while B ≤ 128,442.
   */
  maxBytes: 128_000,
  /** Characters of JSON text: as maxBytes (a character is at least one byte), checked before the bytes are counted. */
  maxChars: 128_000,
  /** Nesting of objects and arrays below the document root (`{"a":{"b":1}}` is 2). */
  maxDepth: 32,
  /** Values (objects, arrays, strings, numbers, booleans, nulls) in the whole document. */
  maxNodes: 50_000,
  /** Elements of any one array. */
  maxArrayLength: 1_000,
  /** Keys of any one object. */
  maxObjectKeys: 1_000,
  /** Characters of any one key. */
  maxKeyLength: 256,
  /** Characters of any one string value (a fallback body's text is the longest). */
  maxStringLength: 65_536,
  /**
   * RE2 instructions over every regex condition in the document, a regex on `request.path`
   * counted eight times (regexCost: a path may be 4,096 characters, a tag's value 512): a
   * request's regex work is at most this much per byte of a 512-byte value (checkRegex runs
   * re2js's NFA, 5–17 ns per instruction and byte). Measured for one decision on a 512-byte tag value that
   * changes each time, every regex tested: at most about 4.5 ms (one `(?i)(?:\pL|\pN){500}z`,
   * the costliest class matching; 41 × `a[ab]{20}$`: 0.7 ms; 111 × `^v1\.2[0-9]$`: 0.04 ms),
   * the first decision as the next once the engine has run (a fresh process's very first:
   * 12–15 ms, the JIT), and under 0.1 MB of heap kept. At 20,000 the same
   * patterns cost 163 ms a decision (and, on re2js's DFA, kept 287 MB after the first).
   */
  maxRegexProgram: 1_000,
} as const;

/** Largest rule document accepted, in UTF-8 bytes: it and its history entry fit one Consul transaction. */
export const MAX_RULE_DOCUMENT = RULE_DOCUMENT_LIMITS.maxBytes;

export interface ParseRuleDocumentOptions {
  /**
   * What to do with a section no loaded kind knows: `refuse` (the default: a typo like
   * `rout` must not silently replace the rules in force) or `keep` it raw, unvalidated
   * beyond the document's bounds (for a store that other tools read too).
   */
  readonly unknownSections?: 'refuse' | 'keep';
}

/**
 * Parses a rule document from JSON text:
 * `{ "service": "user-service", "route": {...}, "ratelimit": {...} }`.
 * Checks RULE_DOCUMENT_LIMITS first, then each section with its kind's parser. Throws
 * RuleValidationError with the path of the first bad field, and nothing else.
 */
export function parseRuleDocument(
  text: string,
  kinds: readonly RuleKind<unknown>[],
  expectService?: string,
  options: ParseRuleDocumentOptions = {},
): RuleDocument {
  if (typeof text !== 'string') throw new RuleValidationError('', 'must be JSON text');
  checkSize(text);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RuleValidationError('', `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  checkBounds(raw);
  const obj = field.object(raw, '');
  const service = field.string(obj.service, 'service', 63);
  if (!SERVICE_NAME.test(service))
    throw new RuleValidationError('service', `${shownValue(service)} is not a DNS label (letters, digits and "-", starting with a letter)`);
  if (expectService !== undefined && service !== expectService) {
    throw new RuleValidationError('service', `document is for "${service}", stored under "${expectService}"`);
  }
  const description = obj.description === undefined ? undefined : field.string(obj.description, 'description', 2048);
  const keep = options.unknownSections === 'keep';
  const sections = new Map<string, unknown>();
  for (const [key, value] of Object.entries(obj)) {
    if (key === 'service' || key === 'description') continue;
    if (!SECTION_NAME.test(key)) throw new RuleValidationError(key, 'not a rule section name');
    const kind = kinds.find((k) => k.name === key);
    if (!kind && !keep) {
      throw new RuleValidationError(
        key,
        `unknown rule section (known: ${kinds.map((k) => k.name).join(', ') || 'none'}); fix the name — a misspelt section would replace the rules in force`,
        'section',
      );
    }
    sections.set(key, kind ? parseSection(kind, value, key) : value);
  }
  return { service, ...(description !== undefined ? { description } : {}), sections };
}

/**
 * RULE_DOCUMENT_LIMITS on a document built as a value, as parseRuleDocument checks its text
 * before any kind's parser (the size of `text`, its JSON, when given; then every value's
 * bounds and the regex budget). For a caller that composes documents from conditions it
 * parsed: their regexes, compiled by parseCondition, are not compiled again. Throws
 * RuleValidationError with the path of the first value over a bound.
 */
export function checkRuleDocumentBounds(value: unknown, text?: string): void {
  if (text !== undefined) checkSize(text);
  checkBounds(value);
}

function checkSize(text: string): void {
  const { maxBytes } = RULE_DOCUMENT_LIMITS;
  // A UTF-16 unit is at most 3 bytes: a short text needs no count, nor one over maxChars.
  if (text.length > RULE_DOCUMENT_LIMITS.maxChars || (text.length * 3 > maxBytes && Buffer.byteLength(text, 'utf8') > maxBytes)) {
    throw new RuleValidationError(
      '',
      `document is ${Buffer.byteLength(text, 'utf8')} bytes of UTF-8, more than ${maxBytes} (maxBytes): a document and its history entry are written base64 in one Consul transaction of at most 512 KiB`,
      'size',
    );
  }
}

/** A kind's parser may only refuse with RuleValidationError; anything else it throws is a bug, reported as a refusal of its section. */
function parseSection(kind: RuleKind<unknown>, value: unknown, path: string): unknown {
  try {
    return kind.parse(value, path);
  } catch (err) {
    if (err instanceof RuleValidationError) throw err;
    throw new RuleValidationError(path, `the ${kind.name} parser failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Walks the parsed JSON once, refusing the first value over a bound, with its path. */
function checkBounds(root: unknown): void {
  const L = RULE_DOCUMENT_LIMITS;
  let nodes = 0;
  let regexProgram = 0;
  const walk = (value: unknown, path: string, depth: number): void => {
    if (++nodes > L.maxNodes) throw new RuleValidationError(path, `document has more than ${L.maxNodes} values`, 'nodes');
    if (typeof value === 'string') {
      if (value.length > L.maxStringLength)
        throw new RuleValidationError(path, `string longer than ${L.maxStringLength} characters`, 'string');
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    if (depth >= L.maxDepth) throw new RuleValidationError(path, `nested deeper than ${L.maxDepth} levels`, 'depth');
    if (Array.isArray(value)) {
      if (value.length > L.maxArrayLength) throw new RuleValidationError(path, `array longer than ${L.maxArrayLength} elements`, 'array');
      for (let i = 0; i < value.length; i++) walk(value[i], `${path}[${i}]`, depth + 1);
      return;
    }
    const o = value as Record<string, unknown>;
    // A condition, in whichever kind's section: `{ op: "regex", pattern }`. Compiled here for
    // its size only (checkRegex refuses it as the kind's parser would, naming the same field).
    if (o.op === 'regex' && typeof o.pattern === 'string') {
      const patternPath = path === '' ? 'pattern' : `${path}.pattern`;
      const tag = typeof o.tag === 'string' ? o.tag : '';
      regexProgram += regexCost(tag, compiledRegex(o, tag, o.pattern, patternPath));
      if (regexProgram > L.maxRegexProgram) {
        throw new RuleValidationError(
          patternPath,
          `the document's regex conditions compile to more than ${L.maxRegexProgram} instructions together; use fewer or simpler patterns ("in" for lists)`,
          'regexBudget',
        );
      }
    }
    const keys = Object.keys(value);
    if (keys.length > L.maxObjectKeys) throw new RuleValidationError(path, `object with more than ${L.maxObjectKeys} keys`, 'keys');
    for (const k of keys) {
      const p = path === '' ? k.slice(0, L.maxKeyLength) : `${path}.${k.slice(0, L.maxKeyLength)}`;
      if (k.length > L.maxKeyLength) throw new RuleValidationError(p, `key longer than ${L.maxKeyLength} characters`, 'key');
      walk((value as Record<string, unknown>)[k], p, depth + 1);
    }
  };
  walk(root, '', 0);
}
