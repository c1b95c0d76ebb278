import { authRule } from '@meshlet/auth';
import { breakerRule } from '@meshlet/breaker';
import type { RuleKind, RuleKindEntry } from '@meshlet/core';
import { faultRule } from '@meshlet/fault';
import { ratelimitRule } from '@meshlet/ratelimit';
import { routeRule } from '@meshlet/route';

export type { RuleKindEntry } from '@meshlet/core';

/**
 * Every rule kind, the one list: a mesh's watchers and `mesh.rules` read these sections,
 * and `meshlet rules validate|apply` checks these (imported from `meshlet/rule-kinds`, so
 * the CLI loads the kinds' packages without the rest of the SDK). Each entry is what its
 * package exports from `<kind>-rule.ts`; a new kind is one entry here.
 */
export const RULE_KINDS: readonly RuleKindEntry[] = [routeRule, breakerRule, ratelimitRule, authRule, faultRule];

/** The rule kinds a mesh reads. */
export const ruleKinds: readonly RuleKind<unknown>[] = RULE_KINDS.map((e) => e.kind);
