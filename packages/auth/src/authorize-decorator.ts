import { type AnyMethod, type Condition, field, getTag, isAsyncMethod, methodDecorator, RuleValidationError } from '@meshlet/core';
import { type AuthAction, type IdentityFilter, parseAuthRule } from './auth-rule.js';
import { Authorizer } from './authorizer.js';
import { AuthDeniedError } from './forbidden.js';
import type { CallerIdentity } from './identity.js';
import { verifiedCaller } from './verified-caller.js';

/** Who a decorator lets in (`@Authorize`) or keeps out (`@Deny`): the fields of an auth rule. */
export interface CallerSpec {
  /** Named in the 403 body. Default: the method's name. */
  readonly name?: string;
  readonly services?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly identity?: IdentityFilter;
  readonly when?: readonly Condition[];
  /** Where the verified caller comes from. Default: verifiedCaller() of the current request. */
  readonly caller?: () => CallerIdentity | undefined;
}

/**
 * Lets only callers matching `spec` run the method; others get AuthDeniedError (thrown,
 * or a rejected promise for an async method). The caller is the verified identity the
 * inbound middleware bound to the request; an anonymous caller matches only
 * `identity: 'anonymous'` or a spec with no caller fields.
 *
 * ```ts
 * class Refunds {
 *   @Authorize({ services: ['billing'], namespaces: ['prod'] })
 *   async refund(id: string) { ... }
 * }
 * ```
 */
export function Authorize(spec: CallerSpec) {
  return decorator('allow', spec, '@Authorize');
}

/** Refuses callers matching `spec`; everyone else runs the method. See Authorize. */
export function Deny(spec: CallerSpec) {
  return decorator('deny', spec, '@Deny');
}

const SPEC_KEYS = ['name', 'services', 'namespaces', 'identity', 'when', 'caller'] as const;

function decorator(action: AuthAction, spec: CallerSpec, label: string) {
  checkSpec(spec, label, action);
  return methodDecorator(label, (method, name) => guard(method, name, action, spec, label));
}

/**
 * The spec's own keys, before the rule parser sees the fields it takes: a misspelt field
 * (`service`) would otherwise be dropped, leaving an `@Authorize` rule that matches every
 * caller, the anonymous too. An `@Authorize` must name whom it lets in.
 */
function checkSpec(spec: CallerSpec, label: string, action: AuthAction): void {
  const o = field.object(spec, label);
  field.onlyKeys(o, label, SPEC_KEYS);
  if (o.caller !== undefined && typeof o.caller !== 'function') throw new RuleValidationError(`${label}.caller`, 'must be a function');
  const names =
    o.services !== undefined || o.namespaces !== undefined || o.when !== undefined || (o.identity !== undefined && o.identity !== 'any');
  if (action === 'allow' && !names)
    throw new RuleValidationError(
      label,
      'name whom it lets in (services, namespaces, identity or when): a rule without one matches every caller',
    );
}

function guard<T extends AnyMethod>(method: T, methodName: string, action: AuthAction, spec: CallerSpec, label: string): T {
  const { caller = verifiedCaller, name, services, namespaces, identity, when } = spec;
  // Validated at decoration with the document's parser: the same errors, the same meaning.
  const rule = parseAuthRule(
    {
      name: sanitize(name ?? methodName),
      action,
      ...(services ? { services: [...services] } : {}),
      ...(namespaces ? { namespaces: [...namespaces] } : {}),
      ...(identity ? { identity } : {}),
      ...(when ? { when: [...when] } : {}),
    },
    label,
  );
  // `@Authorize` denies whoever its rule does not match; `@Deny` allows them.
  const authorizer = new Authorizer({ defaultAction: action === 'allow' ? 'deny' : 'allow' }, { defaultAction: undefined, rules: [rule] });
  const refused = Object.freeze({ allowed: false, rule: rule.name, reason: `${label} "${rule.name}" does not allow this caller` });
  // An anonymous caller is told why: the decorator believes only a verified identity, so
  // with auth off (no mesh keys) every caller is anonymous, whatever x-meshlet-caller says.
  const refusedAnonymous = Object.freeze({
    ...refused,
    reason: `${refused.reason}: no verified caller (the caller is anonymous: is the mesh's auth on, with keys, and does the caller sign?)`,
  });
  const isAsync = isAsyncMethod(method);
  const guarded = function (this: unknown, ...args: unknown[]) {
    const who = caller();
    const decision = authorizer.decide(who, { method: '*', path: '/' }, (tag) => getTag(tag));
    if (!decision.allowed) {
      const err = new AuthDeniedError(decision.rule !== undefined ? decision : who === undefined ? refusedAnonymous : refused);
      if (isAsync) return Promise.reject(err);
      throw err;
    }
    return method.apply(this, args);
  };
  Object.defineProperty(guarded, 'name', { value: method.name });
  return guarded as T;
}

function sanitize(name: string): string {
  return (
    name
      .replace(/[^a-zA-Z0-9._-]/g, '_')
      .replace(/^[^a-zA-Z0-9]+/, '')
      .slice(0, 63) || 'method'
  );
}
