import type { RuleKind } from '@meshlet/core';

/** A rule section the CLI can check: its parser, and where its package publishes the JSON Schema. */
export interface CheckedRuleKind {
  readonly kind: RuleKind<unknown>;
  /** Package name and path inside it of the section's JSON Schema (draft 2020-12), if published. */
  readonly schema?: { readonly package: string; readonly file: string };
}

/**
 * Every section `meshlet rules validate|apply` checks: the SDK's one list of kinds
 * (`meshlet/rule-kinds`), the same a mesh reads. Embedders can pass more through
 * `runCli`'s options. Loaded on first use: the rate limiter's package brings a Redis
 * client, which `meshlet instances` need not pay for at start.
 */
export async function loadRuleKinds(): Promise<readonly CheckedRuleKind[]> {
  const { RULE_KINDS } = await import('meshlet/rule-kinds');
  return RULE_KINDS;
}
