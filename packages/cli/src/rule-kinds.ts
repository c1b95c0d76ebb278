import type { RuleKind } from '@meshlet/core';

/** A rule section the CLI can check: its parser, and where its package publishes the JSON Schema. */
export interface CheckedRuleKind {
  readonly kind: RuleKind<unknown>;
  /** Package name and path inside it of the section's JSON Schema (draft 2020-12), if published. */
  readonly schema?: { readonly package: string; readonly file: string };
}

/**
 * Every section `meshlet rules validate|apply` checks, the same kinds a mesh reads. A new
 * kind is one entry here; embedders can pass more through `runCli`'s options. Loaded on first use:
 * the rate limiter's package brings a Redis client, which `meshlet instances` need not pay
 * for at start.
 */
export async function loadRuleKinds(): Promise<readonly CheckedRuleKind[]> {
  const [{ routeRuleKind }, { breakerRuleKind }, { ratelimitRules }, { authRules }, { faultRuleKind }] = await Promise.all([
    import('@meshlet/route'),
    import('@meshlet/breaker'),
    import('@meshlet/ratelimit'),
    import('@meshlet/auth'),
    import('@meshlet/dialects'),
  ]);
  return [
    { kind: routeRuleKind as RuleKind<unknown>, schema: { package: '@meshlet/route', file: 'schema/route.schema.json' } },
    { kind: breakerRuleKind as RuleKind<unknown>, schema: { package: '@meshlet/breaker', file: 'schema/breaker.schema.json' } },
    { kind: ratelimitRules as RuleKind<unknown>, schema: { package: '@meshlet/ratelimit', file: 'schema/ratelimit.schema.json' } },
    { kind: authRules as RuleKind<unknown>, schema: { package: '@meshlet/auth', file: 'schema/auth.schema.json' } },
    { kind: faultRuleKind as RuleKind<unknown>, schema: { package: '@meshlet/dialects', file: 'schema/fault.schema.json' } },
  ];
}
