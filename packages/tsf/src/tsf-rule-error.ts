import { MeshletError } from '@meshlet/core';

/**
 * A TSF rule document that cannot be converted. `key` is the Consul KV key it was read
 * from, `path` the field inside the YAML (`[0].ruleList[1].destList`), so ops know what
 * to fix in the TSF console. The previous conversion of that key stays in force.
 */
export class TsfRuleError extends MeshletError {
  static readonly code = 'MESHLET_BAD_TSF_RULE';
  readonly key: string;
  readonly path: string;
  readonly reason: string;
  /** Which bound refused the key, when one did (RuleValidationError's `limit`, or a TsfLanes bound). */
  readonly limit: string | undefined;

  constructor(key: string, path: string, reason: string, limit?: string) {
    super(
      TsfRuleError.code,
      `${key} ${path || '(document)'}: ${reason}. The previous rules of this key stay in force; fix the rule in TSF.`,
    );
    this.key = key;
    this.path = path;
    this.reason = reason;
    this.limit = limit;
  }
}

/** A field of a TSF document that was not applied: unknown to Meshlet, or known and not supported. */
export interface TsfNotice {
  readonly key: string;
  readonly path: string;
  readonly message: string;
}

/** Thrown inside a converter; the store adds the key. */
export class TsfFieldError extends Error {
  readonly path: string;
  readonly reason: string;
  readonly limit: string | undefined;
  constructor(path: string, reason: string, limit?: string) {
    super(`${path}: ${reason}`);
    this.path = path;
    this.reason = reason;
    this.limit = limit;
  }
}
