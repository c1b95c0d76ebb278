import { attachExtension, type ContextExtension, currentContext, extensionOf, type MeshContext } from '@meshlet/core';
import type { VerifiedIdentity } from './identity.js';

// The key of the extension: a symbol of this module's own (not Symbol.for), so that no other
// code can name it. Kept on the context as core's context extensions are (context.ts), not
// in a WeakMap of this package's: a WeakMap entry per request cost ~0.5 µs of CPU and GC.
const KEY = Symbol('meshlet.auth.verified-caller');

/**
 * The verified caller of a request, kept beside its context. Only an instance of this class
 * is believed (a private-field brand check): code that reaches the extensions' slot on the
 * context and puts an object of its own under this key gets no verified caller from it.
 */
class VerifiedCaller implements ContextExtension {
  readonly #identity: VerifiedIdentity | undefined;

  constructor(identity: VerifiedIdentity | undefined) {
    this.#identity = identity;
  }

  /**
   * A context forked by `withTags` serves the same request, so it has the same verified
   * caller: adding tags does not change who called. (Before the extension the identity was
   * a WeakMap entry keyed by the request's own context object, and a fork lost it, so
   * `@Authorize` inside `withTags` refused a verified caller.) The identity never changes
   * once bound: the fork shares it.
   */
  fork(): ContextExtension {
    return this;
  }

  /** The identity kept in `ext`, if it is one of ours. */
  static identityOf(ext: unknown): VerifiedIdentity | undefined {
    return typeof ext === 'object' && ext !== null && #identity in ext ? (ext as VerifiedCaller).#identity : undefined;
  }
}

/** The extension of a context whose verified caller was taken away (or never given to a fork). */
const NONE = new VerifiedCaller(undefined);

/**
 * Records the caller identity the inbound middleware verified for a request. Only this is
 * believed by the Authorizer's default lookup and by `@Authorize`: the caller fields built
 * from the unsigned `x-meshlet-caller` header are not. Binding `undefined` takes a bound
 * identity away (and allocates nothing when there was none).
 */
export function bindVerifiedCaller(ctx: MeshContext, identity: VerifiedIdentity | undefined): void {
  if (identity !== undefined) attachExtension(ctx, KEY, new VerifiedCaller(identity));
  else if (extensionOf(ctx, KEY) !== undefined) attachExtension(ctx, KEY, NONE);
}

/** The verified caller of the request `ctx` (default: the current one), or undefined when anonymous. */
export function verifiedCaller(ctx: MeshContext = currentContext()): VerifiedIdentity | undefined {
  return VerifiedCaller.identityOf(extensionOf(ctx, KEY));
}
