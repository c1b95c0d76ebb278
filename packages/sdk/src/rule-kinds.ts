import { authRules } from '@meshlet/auth';
import { breakerRuleKind } from '@meshlet/breaker';
import type { RuleKind } from '@meshlet/core';
import { faultRuleKind } from '@meshlet/dialects';
import { ratelimitRules } from '@meshlet/ratelimit';
import { routeRuleKind } from '@meshlet/route';

/** A rule kind and where its package publishes the JSON Schema (draft 2020-12) of its section. */
export interface RuleKindEntry {
  readonly kind: RuleKind<unknown>;
  readonly schema: { readonly package: string; readonly file: string };
}

/**
 * Every rule kind, the one list: a mesh's watchers and `mesh.rules` read these sections,
 * and `meshlet rules validate|apply` checks these (imported from `meshlet/rule-kinds`, so
 * the CLI loads the kinds' packages without the rest of the SDK). A new kind is one entry here.
 */
export const RULE_KINDS: readonly RuleKindEntry[] = [
  { kind: routeRuleKind as RuleKind<unknown>, schema: { package: '@meshlet/route', file: 'schema/route.schema.json' } },
  { kind: breakerRuleKind as RuleKind<unknown>, schema: { package: '@meshlet/breaker', file: 'schema/breaker.schema.json' } },
  { kind: ratelimitRules as RuleKind<unknown>, schema: { package: '@meshlet/ratelimit', file: 'schema/ratelimit.schema.json' } },
  { kind: authRules as RuleKind<unknown>, schema: { package: '@meshlet/auth', file: 'schema/auth.schema.json' } },
  { kind: faultRuleKind as RuleKind<unknown>, schema: { package: '@meshlet/dialects', file: 'schema/fault.schema.json' } },
];

/** The rule kinds a mesh reads. */
export const ruleKinds: readonly RuleKind<unknown>[] = RULE_KINDS.map((e) => e.kind);
