import { currentContext, type MeshContext } from '@meshlet/core';
import type { VerifiedIdentity } from './identity.js';

// Keyed by the request's context object: it lives exactly as long as the request.
const verified = new WeakMap<object, VerifiedIdentity>();

/**
 * Records the caller identity the inbound middleware verified for a request. Only this is
 * believed by the Authorizer's default lookup and by `@Authorize`: the caller fields built
 * from the unsigned `x-meshlet-caller` header are not.
 */
export function bindVerifiedCaller(ctx: MeshContext, identity: VerifiedIdentity | undefined): void {
  if (identity === undefined) verified.delete(ctx);
  else verified.set(ctx, identity);
}

/** The verified caller of the request `ctx` (default: the current one), or undefined when anonymous. */
export function verifiedCaller(ctx: MeshContext = currentContext()): VerifiedIdentity | undefined {
  return verified.get(ctx);
}
