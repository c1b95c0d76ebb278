import { MeshletError } from '@meshlet/core';
import type { AuthDecision } from './authorizer.js';

/** What a denied request gets back: `res.writeHead(f.status, f.headers).end(f.body)`. */
export interface Forbidden {
  readonly status: 403;
  readonly headers: { readonly 'content-type': 'application/json' };
  readonly body: string;
}

/** The body of a 403, as JSON. */
export interface ForbiddenBody {
  readonly error: 'forbidden';
  readonly code: typeof AuthDeniedError.code;
  readonly service: string;
  /** The rule that denied, or `(default)` when the default action did. */
  readonly rule: string;
  readonly reason: string;
}

/** Builds the 403 response for a denied decision, naming the rule. */
export function forbidden(decision: AuthDecision, service: string): Forbidden {
  const body: ForbiddenBody = {
    error: 'forbidden',
    code: AuthDeniedError.code,
    service,
    rule: decision.rule ?? '(default)',
    reason: decision.reason,
  };
  return { status: 403, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/**
 * A call that auth rules or `@Authorize`/`@Deny` refused. Inbound middleware turns it into
 * the same 403 as a rule denial: `forbidden(err.decision, service)`.
 */
export class AuthDeniedError extends MeshletError {
  static readonly code = 'MESHLET_AUTH_DENIED';
  readonly decision: AuthDecision;

  constructor(decision: AuthDecision) {
    super(
      AuthDeniedError.code,
      `call refused: ${decision.reason}. If this caller should be allowed, change the auth rule "${decision.rule ?? '(default)'}" in this service's rule document`,
    );
    this.decision = decision;
  }
}
