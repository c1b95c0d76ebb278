import {
  type ApiTemplate,
  type Condition,
  field,
  HTTP_METHODS,
  normalizeTemplate,
  parseCondition,
  pathTemplateProblem,
  type RuleKind,
  type RuleKindEntry,
  RuleValidationError,
  SERVICE_NAME,
  shippedSchema,
} from '@meshlet/core';

export type AuthAction = 'allow' | 'deny';
export const AUTH_ACTIONS: readonly AuthAction[] = ['allow', 'deny'];

/** Which callers a rule is about: any, only callers with a verified identity, or only anonymous ones. */
export type IdentityFilter = 'any' | 'verified' | 'anonymous';
export const IDENTITY_FILTERS: readonly IdentityFilter[] = ['any', 'verified', 'anonymous'];

/**
 * One auth rule. Every condition given must hold for the rule to match (AND); a field left
 * out matches anything. The first matching rule in document order decides.
 */
export interface AuthRule {
  /** Unique in the section; named in the 403 body and in the denial counters. */
  readonly name: string;
  readonly action: AuthAction;
  /** Verified caller service is one of these. Empty: any. */
  readonly services: readonly string[];
  /** Verified caller namespace is one of these. Empty: any. */
  readonly namespaces: readonly string[];
  readonly identity: IdentityFilter;
  /** The request's API is one of these. Empty: any API. */
  readonly apis: readonly ApiTemplate[];
  /** Conditions on request tags (core Conditions). `source.*` system tags read the verified identity. */
  readonly when: readonly Condition[];
}

/** The `auth` section of a service's rule document. */
export interface AuthSection {
  /** What happens when no rule matches; undefined leaves it to the Authorizer's option (allow by default). */
  readonly defaultAction: AuthAction | undefined;
  readonly rules: readonly AuthRule[];
  /** `shadow`: evaluated, a would-be denial counted, logged and traced, every call allowed. Absent: `enforce`. */
  readonly mode?: 'enforce' | 'shadow';
}

export const AUTH_SECTION_MODES = ['enforce', 'shadow'] as const;
export const MAX_AUTH_RULES = 256;
const METHODS: readonly string[] = [...HTTP_METHODS, '*'];
const RULE_KEYS = ['name', 'description', 'action', 'services', 'namespaces', 'identity', 'apis', 'when'];

/**
 * Parses the `auth` section:
 * ```json
 * { "default": "allow",
 *   "rules": [{ "name": "no-checkout-refunds", "action": "deny", "services": ["checkout"],
 *               "apis": [{ "method": "POST", "path": "/refunds/{id}" }] }] }
 * ```
 * Throws RuleValidationError naming the field.
 */
export function parseAuthSection(raw: unknown, path = 'auth'): AuthSection {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['default', 'rules', 'mode']);
  const mode = obj.mode === undefined ? undefined : field.oneOf(obj.mode, `${path}.mode`, AUTH_SECTION_MODES);
  const defaultAction = obj.default === undefined ? undefined : field.oneOf(obj.default, `${path}.default`, AUTH_ACTIONS);
  const rawRules = obj.rules === undefined ? [] : field.array(obj.rules, `${path}.rules`);
  if (rawRules.length > MAX_AUTH_RULES) throw new RuleValidationError(`${path}.rules`, `at most ${MAX_AUTH_RULES} rules`);
  const names = new Set<string>();
  const rules = rawRules.map((r, i) => {
    const rule = parseAuthRule(r, `${path}.rules[${i}]`);
    if (names.has(rule.name))
      throw new RuleValidationError(`${path}.rules[${i}].name`, `"${rule.name}" is used by an earlier rule; names must be unique`);
    names.add(rule.name);
    return rule;
  });
  return mode === 'shadow' ? { defaultAction, rules, mode } : { defaultAction, rules };
}

/** Parses one rule; also used by `@Authorize`/`@Deny` so a decorator and a document mean the same. */
export function parseAuthRule(raw: unknown, path: string): AuthRule {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, RULE_KEYS);
  const name = field.ruleName(obj.name, `${path}.name`, 63);
  if (obj.description !== undefined) field.string(obj.description, `${path}.description`, 1024);
  const action = field.oneOf(obj.action, `${path}.action`, AUTH_ACTIONS);
  const services = stringList(obj.services, `${path}.services`, (s, p) => {
    if (!SERVICE_NAME.test(s)) throw new RuleValidationError(p, `"${s}" is not a service name (a DNS label)`);
  });
  const namespaces = stringList(obj.namespaces, `${path}.namespaces`, (s, p) => {
    if (s.length === 0 || s.length > 128) throw new RuleValidationError(p, 'must be 1-128 characters');
  });
  const identity = obj.identity === undefined ? 'any' : field.oneOf(obj.identity, `${path}.identity`, IDENTITY_FILTERS);
  if (identity === 'anonymous' && (services.length > 0 || namespaces.length > 0)) {
    throw new RuleValidationError(
      `${path}.identity`,
      'an anonymous caller has no service or namespace: drop "services"/"namespaces" or the identity filter',
    );
  }
  const apis = obj.apis === undefined ? [] : field.array(obj.apis, `${path}.apis`).map((a, i) => parseApi(a, `${path}.apis[${i}]`));
  if (obj.apis !== undefined && apis.length === 0)
    throw new RuleValidationError(`${path}.apis`, 'must not be empty; leave it out to match every API');
  const when = obj.when === undefined ? [] : field.array(obj.when, `${path}.when`).map((c, i) => parseCondition(c, `${path}.when[${i}]`));
  return { name, action, services, namespaces, identity, apis, when };
}

function stringList(value: unknown, path: string, check: (s: string, path: string) => void): string[] {
  if (value === undefined) return [];
  const list = field.array(value, path);
  if (list.length === 0) throw new RuleValidationError(path, 'must not be empty; leave it out to match any');
  if (list.length > 256) throw new RuleValidationError(path, 'at most 256 entries');
  return list.map((v, i) => {
    const s = field.string(v, `${path}[${i}]`, 128);
    check(s, `${path}[${i}]`);
    return s;
  });
}

/** Parses `{ "method": "GET", "path": "/users/{id}" }`; method defaults to `*` (any). */
export function parseApi(raw: unknown, path: string): ApiTemplate {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['method', 'path']);
  const method = obj.method === undefined ? '*' : field.oneOf(obj.method, `${path}.method`, METHODS);
  const template = field.string(obj.path, `${path}.path`, 1024);
  const problem = pathTemplateProblem(template);
  if (problem !== undefined) throw new RuleValidationError(`${path}.path`, problem);
  return { method, path: normalizeTemplate(template) };
}

/** The `auth` rule kind: give it to core's RuleWatcher (`kinds: [authRuleKind, ...]`). */
export const authRuleKind: RuleKind<AuthSection> = { name: 'auth', parse: parseAuthSection };

/** The `auth` rule kind as this package publishes it: parser and JSON Schema. */
export const authRule: RuleKindEntry<AuthSection> = {
  kind: authRuleKind,
  schema: shippedSchema('@meshlet/auth', 'schema/auth.schema.json', import.meta.url),
};
