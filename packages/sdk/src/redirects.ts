import { IDENTITY_HEADER } from '@meshlet/auth';
import { CALLER_HEADER, MeshletError, TAG_HEADER } from '@meshlet/core';
import { FAULT_HEADER } from '@meshlet/fault';
import {
  ONCE_TAG_HEADER,
  POLARIS_TRANSITIVE_PREFIX,
  SCT_DISPOSABLE_HEADER,
  SCT_METADATA_HEADER,
  SCT_TRANSITIVE_PREFIX,
  TSF_METADATA_HEADER,
  TSF_TAGS_HEADER,
} from '@meshlet/propagation';
import type { Dispatcher } from 'undici';

// How the mesh follows a redirect, for every front end that follows one itself (mesh.fetch,
// the axios adapter): the mesh headers were written for the routed instance only.

/** Statuses fetch follows as redirects. */
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** As fetch: more redirects than this is an error. */
export const MAX_REDIRECTS = 20;
/** Headers fetch itself drops on a redirect to another origin. */
const CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'proxy-authorization', 'cookie'];
/**
 * Mesh headers never sent off the mesh, even when the application set them itself (an app
 * that forwards its inbound headers would hand on its caller's identity and tags).
 */
const MESH_ONLY_HEADERS: ReadonlySet<string> = new Set(
  [
    CALLER_HEADER,
    IDENTITY_HEADER,
    TAG_HEADER,
    ONCE_TAG_HEADER,
    TSF_TAGS_HEADER,
    TSF_METADATA_HEADER,
    SCT_METADATA_HEADER,
    SCT_DISPOSABLE_HEADER,
    FAULT_HEADER,
  ].map((h) => h.toLowerCase()),
);
const MESH_ONLY_PREFIXES = [POLARIS_TRANSITIVE_PREFIX, SCT_TRANSITIVE_PREFIX].map((p) => p.toLowerCase());
/** What describes a request's body: dropped with the body when a redirect makes the request a GET. */
const BODY_HEADERS: readonly string[] = ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location'];

/**
 * Whether a request header (its name in lower case) stays behind when a redirect leaves
 * the mesh: a credential the application gave for the service it called (as fetch drops
 * them across origins), or a mesh header, whoever set it.
 */
function leavesNotTheMesh(name: string): boolean {
  return CREDENTIAL_HEADERS.includes(name) || MESH_ONLY_HEADERS.has(name) || MESH_ONLY_PREFIXES.some((p) => name.startsWith(p));
}

/** As fetch: a 303 (but to a HEAD), and a 301 or 302 after a POST, become a GET without a body. */
const becomesGet = (status: number, method: string): boolean =>
  (status === 303 && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST');

/** Where a service's redirect goes, as every front end that follows redirects follows it. */
export interface RedirectStep {
  readonly next: URL;
  /** A 303 (but to a HEAD), or a 301/302 after a POST: the next request is a GET without a body. */
  readonly toGet: boolean;
  /** Into the mesh, governed again: the URL to call (the instance's own origin as its service's name). Undefined: off the mesh. */
  readonly governed: string | undefined;
  /**
   * Which of the request's header names stay behind: the body's for a GET; the app's
   * credentials at another service; off the mesh, credentials and every mesh header.
   */
  dropped(names: Iterable<string>): string[];
}

/** The redirect a front end got, and what it knows of the request that got it. */
export interface RedirectFrom {
  readonly service: string;
  /** The URL the answer came from (the instance's), where a relative Location resolves. */
  readonly sentTo: string;
  readonly status: number;
  readonly location: string;
  /** Upper-case. */
  readonly method: string;
  /** Redirects followed so far, and how many may be. */
  readonly hops: number;
  readonly maxHops: number;
  /** The body can be sent once only (a stream). */
  readonly sendsOnce: boolean;
  /**
   * Whether a call to a host is governed: the directory's `governs`, as for a first call, so
   * a redirect to a single-label host that is no service is said (MESHLET_NOT_A_SERVICE) as
   * a call to it is.
   */
  readonly governs: (host: string) => Promise<boolean>;
  /** Frees the redirect's answer: told once the redirect is followed or refused (not for a Location that is no URL, whose answer is returned). */
  readonly discard: () => void;
}

/**
 * The next hop of a redirect, or undefined when its Location is not a URL (not followed,
 * as the client would not). Throws RedirectRefusedError past `maxHops`, or when a body
 * that can be sent once would be sent again.
 */
export async function redirectStep(from: RedirectFrom): Promise<RedirectStep | undefined> {
  let next: URL;
  try {
    next = new URL(from.location, from.sentTo);
  } catch {
    return undefined;
  }
  from.discard();
  const { service, status, method } = from;
  if (from.hops + 1 > from.maxHops) throw new RedirectRefusedError(service, `more than ${from.maxHops} redirects`);
  const toGet = becomesGet(status, method);
  if (!toGet && from.sendsOnce)
    throw new RedirectRefusedError(service, `${status} to ${next.origin} would send a streamed body a second time`);
  const sameInstance = next.origin === new URL(from.sentTo).origin;
  const intoMesh = sameInstance || (next.protocol === 'http:' && (await from.governs(next.hostname)));
  // To another service (another origin, as the app sees it): the credentials were given for this one.
  const otherService = intoMesh && !sameInstance && next.host !== service;
  const stays = (name: string): boolean =>
    (toGet && BODY_HEADERS.includes(name)) || (intoMesh ? otherService && CREDENTIAL_HEADERS.includes(name) : leavesNotTheMesh(name));
  return {
    next,
    toGet,
    governed: !intoMesh ? undefined : sameInstance ? `http://${service}${next.pathname}${next.search}` : next.href,
    dropped: (names) => {
      const out: string[] = [];
      for (const name of names) if (stays(name.toLowerCase())) out.push(name);
      return out;
    },
  };
}

/** A redirect that cannot be followed safely; the 3xx is not returned either. */
export class RedirectRefusedError extends MeshletError {
  static readonly code = 'MESHLET_REDIRECT_REFUSED';
  constructor(
    readonly service: string,
    reason: string,
  ) {
    super(RedirectRefusedError.code, `redirect from ${service}: ${reason}`);
  }
}

const noRedirects = new WeakMap<Dispatcher, Dispatcher>();

/**
 * `dispatcher` as a governed attempt may use it: never following a redirect itself. An
 * application's dispatcher composed with undici's redirect interceptor would otherwise send
 * the mesh headers on to wherever an instance points; each request through this one tells
 * the interceptor `maxRedirections: 0` (undici's own per-request override). The redirect
 * comes back as it was, for the front end to follow or return. The dispatcher itself with
 * its `dispatch` wrapped (its `request`, which dispatches through `this`, too), so that
 * anything with undici's `dispatch` works, not only a Dispatcher of this undici (which
 * `compose` would need). One per dispatcher, kept.
 */
export function withoutRedirects(dispatcher: Dispatcher): Dispatcher {
  let wrapped = noRedirects.get(dispatcher);
  if (wrapped === undefined) {
    const own: Dispatcher = Object.create(dispatcher);
    own.dispatch = (options, handler) => dispatcher.dispatch({ ...options, maxRedirections: 0 } as Dispatcher.DispatchOptions, handler);
    noRedirects.set(dispatcher, own);
    wrapped = own;
  }
  return wrapped;
}
