import type { RuleKind, RuleKindSchema } from '@meshlet/core';
import { CliError } from './cli-error.js';
import { ExitCode } from './exit-code.js';

/** A rule section the CLI can check: its parser, and where its package publishes the JSON Schema. */
export interface CheckedRuleKind {
  readonly kind: RuleKind<unknown>;
  /** The section's JSON Schema (draft 2020-12), if published: core's `shippedSchema`. */
  readonly schema?: RuleKindSchema;
}

/**
 * The rule kinds `meshlet rules validate|apply` and the console check, as the CLI's host
 * gives them (`runCli`'s `kinds`): the `meshlet` bin of the package meshlet hands over the
 * mesh's one list, `RULE_KINDS` from `meshlet/rule-kinds`, loaded on first use (the rate
 * limiter's package brings a Redis client, which `meshlet instances` need not pay for at
 * start). The CLI does not import the SDK itself: the SDK depends on the CLI (for its bin),
 * not the other way round.
 */
export type RuleKindsSource = readonly CheckedRuleKind[] | (() => Promise<readonly CheckedRuleKind[]>);

/** Code of the error a command that checks rules gives when the CLI was given no kinds. */
export const NO_RULE_KINDS = 'MESHLET_CLI_NO_RULE_KINDS';

/** A loader for `source`, once; without one, a CliError that says where the kinds come from. */
export function ruleKindsLoader(source: RuleKindsSource | undefined): () => Promise<readonly CheckedRuleKind[]> {
  if (source === undefined)
    return () =>
      Promise.reject(
        new CliError(
          NO_RULE_KINDS,
          'no rule kinds to check with: run the `meshlet` command of the package meshlet (npx meshlet), which gives the mesh’s kinds (meshlet/rule-kinds), or pass `kinds` to runCli',
          ExitCode.failure,
        ),
      );
  if (typeof source !== 'function') return () => Promise.resolve(source);
  let loaded: Promise<readonly CheckedRuleKind[]> | undefined;
  return () => {
    loaded ??= source();
    return loaded;
  };
}
