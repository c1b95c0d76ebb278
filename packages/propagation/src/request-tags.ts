import { attachExtension, type ContextExtension, currentContext, extensionOf, type MeshContext, setTag } from '@meshlet/core';
import type { TagScope, TagScopes } from './tag-scope.js';

/** What the SDK keeps beside a request's MeshContext for propagation. */
export interface RequestTags {
  readonly scopes: TagScopes;
  readonly passThrough: ReadonlyMap<string, string>;
}

const REQUEST_TAGS = Symbol('meshlet.propagation.request-tags');

/** RequestTags as a context extension: a child context (withTags) gets its own scopes. */
class RequestTagsExtension implements RequestTags, ContextExtension {
  constructor(
    readonly scopes: TagScopes,
    readonly passThrough: ReadonlyMap<string, string>,
  ) {}

  fork(): RequestTagsExtension {
    return new RequestTagsExtension(this.scopes.fork(), this.passThrough);
  }
}

/** Keeps `state` beside `ctx` (the SDK calls this once per inbound request). */
export function attachRequestTags(ctx: MeshContext, state: RequestTags): void {
  attachExtension(ctx, REQUEST_TAGS, new RequestTagsExtension(state.scopes, state.passThrough));
}

/** The propagation state of a context, if the SDK attached one. */
export function requestTagsOf(ctx: MeshContext = currentContext()): RequestTags | undefined {
  return extensionOf<RequestTagsExtension>(ctx, REQUEST_TAGS);
}

/**
 * core's setTag with a scope: sets the tag on the current request and records how far it
 * travels. Returns false (and logs why, as setTag does) outside a request or over a bound;
 * a tag with a scope other than transitive is refused (and logged) when the request has no
 * propagation state attached, rather than let it travel further than asked.
 */
export function setScopedTag(key: string, value: string, options: { readonly scope: TagScope }): boolean {
  const ctx = currentContext();
  const state = requestTagsOf(ctx);
  // Without a place to record the scope the tag would travel as transitive: refuse instead.
  if (!state && options.scope !== 'transitive') {
    ctx.logger.warn('setScopedTag: this request has no propagation state; tag not set', {
      code: 'MESHLET_NO_TAG_SCOPES',
      key: key.slice(0, 128),
    });
    return false;
  }
  if (!setTag(key, value)) return false;
  state?.scopes.set(key, options.scope);
  return true;
}
