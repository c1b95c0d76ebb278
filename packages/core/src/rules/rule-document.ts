import { SERVICE_NAME } from '../instance.js';
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
/** Largest rule document accepted, in characters: under Consul's 512 KiB value limit. */
export const MAX_RULE_DOCUMENT = 256 * 1024;

/**
 * Parses a rule document from JSON text:
 * `{ "service": "user-service", "route": {...}, "ratelimit": {...} }`.
 * Throws RuleValidationError with the path of the first bad field.
 */
export function parseRuleDocument(text: string, kinds: readonly RuleKind<unknown>[], expectService?: string): RuleDocument {
  if (text.length > MAX_RULE_DOCUMENT) throw new RuleValidationError('', `document larger than ${MAX_RULE_DOCUMENT} characters`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RuleValidationError('', `not valid JSON: ${(err as Error).message}`);
  }
  const obj = field.object(raw, '');
  const service = field.string(obj.service, 'service', 63);
  if (!SERVICE_NAME.test(service))
    throw new RuleValidationError('service', `"${service}" is not a DNS label (letters, digits and "-", starting with a letter)`);
  if (expectService !== undefined && service !== expectService) {
    throw new RuleValidationError('service', `document is for "${service}", stored under "${expectService}"`);
  }
  const description = obj.description === undefined ? undefined : field.string(obj.description, 'description', 2048);
  const sections = new Map<string, unknown>();
  for (const [key, value] of Object.entries(obj)) {
    if (key === 'service' || key === 'description') continue;
    if (!SECTION_NAME.test(key)) throw new RuleValidationError(key, 'not a rule section name');
    const kind = kinds.find((k) => k.name === key);
    sections.set(key, kind ? kind.parse(value, key) : value);
  }
  return { service, ...(description !== undefined ? { description } : {}), sections };
}
