import { ApiMatcher, compileConditions, type Matcher, type RuleFeed, SystemTag, type TagLookup, type Unsubscribe } from '@meshlet/core';
import { type AuthAction, type AuthRule, type AuthSection, authRuleKind } from './auth-rule.js';
import type { CallerIdentity } from './identity.js';

/** What the Authorizer decided for one request. Allowed decisions are shared objects: do not mutate. */
export interface AuthDecision {
  readonly allowed: boolean;
  /** The rule that decided; undefined when none matched and the default applied. */
  readonly rule: string | undefined;
  /** For logs and the 403 body. */
  readonly reason: string;
  /** In shadow mode (`auth.mode: "shadow"`), an allowed decision the rules would have denied: the deciding rule, or `(default)`. */
  readonly shadow?: string;
}

/** The request being authorized: method in capitals, path without query string. */
export interface AuthRequest {
  readonly method: string;
  readonly path: string;
}

export interface AuthorizerOptions {
  /** When no rule matches and the section does not say. Default `allow`, as TSF does. */
  readonly defaultAction?: AuthAction;
}

export interface AuthStats {
  readonly allowed: number;
  readonly denied: number;
  /** Denials per rule name; `(default)` for the default action. Bounded by the rule count. */
  readonly deniedBy: ReadonlyMap<string, number>;
  /** Calls allowed that the rules, in shadow mode, would have denied (counted in `allowed` too). */
  readonly shadowDenied: number;
}

interface CompiledRule {
  readonly rule: AuthRule;
  readonly services: ReadonlySet<string> | undefined;
  readonly namespaces: ReadonlySet<string> | undefined;
  readonly apis: ApiMatcher | undefined;
  readonly when: Matcher | undefined;
  readonly decision: AuthDecision;
  /** What shadow mode answers instead of a denial (allocated once, here). */
  readonly shadowDecision: AuthDecision;
}

const DEFAULT_RULE = '(default)';
const EMPTY_LOOKUP: TagLookup = () => undefined;

/**
 * Decides whether a caller may call an API of this service. Rules are compiled when they
 * change (sets, path templates, conditions, and the decision objects themselves), so a
 * decision is a few set lookups and no allocation. The first rule that matches, in
 * document order, decides; when none does, the default action applies.
 *
 * The caller is the *verified* identity or undefined (anonymous). In `when` conditions the
 * `source.service`, `source.namespace`, `source.instance` and `source.version` system tags
 * read that identity, never a header; every other tag comes from `tags` and is as
 * trustworthy as the client that set it.
 */
export class Authorizer {
  readonly #fallback: AuthAction;
  #rules: readonly CompiledRule[] = [];
  #default: AuthDecision;
  #defaultShadow: AuthDecision;
  #shadow = false;
  #shadowDenied = 0;
  #readsSource = false;
  #revision = 0;
  #allowed = 0;
  #denied = 0;
  readonly #deniedBy = new Map<string, number>();

  constructor(options: AuthorizerOptions = {}, section?: AuthSection) {
    this.#fallback = options.defaultAction ?? 'allow';
    this.#default = defaultDecision(this.#fallback);
    this.#defaultShadow = shadowOf(this.#default, DEFAULT_RULE);
    if (section) this.setRules(section);
  }

  /** Applies a new section (undefined: no rules, the default only). Compiles everything now. */
  setRules(section: AuthSection | undefined): void {
    const rules = section?.rules ?? [];
    this.#rules = rules.map(compile);
    this.#readsSource = rules.some((r) => r.when.some((c) => c.tag.startsWith('source.')));
    this.#default = defaultDecision(section?.defaultAction ?? this.#fallback);
    this.#defaultShadow = shadowOf(this.#default, DEFAULT_RULE);
    this.#shadow = section?.mode === 'shadow';
    // Counts of rules that are gone would hold names forever; start afresh.
    this.#deniedBy.clear();
  }

  /** Follows the `auth` section of this service's rules (core's RuleWatcher): last good rules stay in force. */
  follow(rules: RuleFeed): Unsubscribe {
    return rules.follow(authRuleKind, (section, revision) => {
      this.setRules(section);
      this.#revision = revision;
    });
  }

  /** Store revision of the rule document whose `auth` section is in force (0: none, or set directly); for spans. */
  get revision(): number {
    return this.#revision;
  }

  /** Decides for `caller` (undefined: anonymous) calling `request`; counts the outcome. */
  decide(caller: CallerIdentity | undefined, request: AuthRequest, tags: TagLookup = EMPTY_LOOKUP): AuthDecision {
    const lookup = this.#readsSource ? withCaller(caller, tags) : tags;
    let decision = this.#default;
    let shadow = this.#defaultShadow;
    for (const c of this.#rules) {
      if (matches(c, caller, request, lookup)) {
        decision = c.decision;
        shadow = c.shadowDecision;
        break;
      }
    }
    if (!decision.allowed && this.#shadow) {
      this.#shadowDenied++;
      this.#allowed++;
      return shadow;
    }
    if (decision.allowed) this.#allowed++;
    else {
      this.#denied++;
      const key = decision.rule ?? DEFAULT_RULE;
      this.#deniedBy.set(key, (this.#deniedBy.get(key) ?? 0) + 1);
    }
    return decision;
  }

  get stats(): AuthStats {
    return { allowed: this.#allowed, denied: this.#denied, deniedBy: new Map(this.#deniedBy), shadowDenied: this.#shadowDenied };
  }

  /** The number of rules in force. */
  get size(): number {
    return this.#rules.length;
  }
}

function compile(rule: AuthRule): CompiledRule {
  const verb = rule.action === 'allow' ? 'allows' : 'denies';
  const decision: AuthDecision = Object.freeze({
    allowed: rule.action === 'allow',
    rule: rule.name,
    reason: `rule "${rule.name}" ${verb} this call`,
  });
  return {
    rule,
    services: rule.services.length > 0 ? new Set(rule.services) : undefined,
    namespaces: rule.namespaces.length > 0 ? new Set(rule.namespaces) : undefined,
    apis: rule.apis.length > 0 ? new ApiMatcher(rule.apis) : undefined,
    when: rule.when.length > 0 ? compileConditions(rule.when) : undefined,
    decision,
    shadowDecision: shadowOf(decision, rule.name),
  };
}

function matches(c: CompiledRule, caller: CallerIdentity | undefined, request: AuthRequest, lookup: TagLookup): boolean {
  const { rule } = c;
  if (rule.identity === 'verified' && caller === undefined) return false;
  if (rule.identity === 'anonymous' && caller !== undefined) return false;
  if (c.services && (caller === undefined || !c.services.has(caller.service))) return false;
  if (c.namespaces && (caller === undefined || !c.namespaces.has(caller.namespace))) return false;
  if (c.apis && !c.apis.test(request.method, request.path)) return false;
  if (c.when && !c.when(lookup)) return false;
  return true;
}

/** The allowed decision shadow mode gives where `denial` would have been enforced. */
function shadowOf(denial: AuthDecision, rule: string): AuthDecision {
  return Object.freeze({ allowed: true, rule: denial.rule, reason: `shadow mode: ${denial.reason} (not enforced)`, shadow: rule });
}

function defaultDecision(action: AuthAction): AuthDecision {
  return Object.freeze({
    allowed: action === 'allow',
    rule: undefined,
    reason: action === 'allow' ? 'no rule matched; allowed by default' : 'no rule matched; denied by default',
  });
}

function withCaller(caller: CallerIdentity | undefined, tags: TagLookup): TagLookup {
  return (tag) => {
    switch (tag) {
      case SystemTag.sourceService:
        return caller?.service;
      case SystemTag.sourceNamespace:
        return caller?.namespace;
      case SystemTag.sourceInstance:
        return caller?.instance;
      case SystemTag.sourceVersion:
        return caller?.version;
      default:
        return tags(tag);
    }
  };
}
