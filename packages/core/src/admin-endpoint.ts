import { createHmac } from 'node:crypto';
import { type Instance, instanceAddressProblem, instancePortProblem, MetaKey, urlHost } from './instance.js';

/**
 * The instance metadata key that says where an instance's admin endpoint is: a path on the
 * instance's own origin (`/_meshlet`), or `:<port><path>` for an admin server on another
 * port (`:9901/_meshlet`). Written by the SDK when the admin handler is mounted; read by
 * `meshlet instances` and the console.
 */
export const ADMIN_META_KEY = 'meshlet-admin';

/** Where an instance's admin endpoint is: the origin and authority callers dial, and its mount path. */
export interface AdminEndpoint {
  /** `http(s)://<authority>`. */
  readonly origin: string;
  /** `<address>:<port>` as registered (an IPv6 address in brackets), the port being the admin port. */
  readonly authority: string;
  /** The mount path, without a trailing slash (`/_meshlet`). */
  readonly path: string;
}

/**
 * Where `instance`'s admin endpoint is, from its registration (ADMIN_META_KEY, else
 * `defaultPath`), or undefined when it does not say, says something that is not one, or
 * registered an address or port routing would not call (instanceAddressProblem,
 * instancePortProblem): no token is made for, and nothing dials, what the registry's
 * readers leave out.
 */
export function adminEndpoint(instance: Instance, defaultPath?: string): AdminEndpoint | undefined {
  if (instanceAddressProblem(instance.address) !== undefined || instancePortProblem(instance.port) !== undefined) return undefined;
  const where = instance.metadata[ADMIN_META_KEY] ?? defaultPath;
  if (where === undefined || where === '') return undefined;
  let port = instance.port;
  let path = where;
  const m = /^:(\d{1,5})(\/.*)?$/.exec(where);
  if (m) {
    port = Number(m[1]);
    path = m[2] ?? '/_meshlet';
  }
  if (!path.startsWith('/') || !(port >= 1 && port <= 65_535)) return undefined;
  const authority = `${urlHost(instance.address)}:${port}`;
  const scheme = instance.metadata[MetaKey.secure] === 'true' ? 'https' : 'http';
  return { origin: `${scheme}://${authority}`, authority, path: path.replace(/\/+$/, '') };
}

/**
 * The admin token of the endpoint at `authority` (AdminEndpoint's `<address>:<port>`):
 * HMAC-SHA256 keyed with the operator's admin secret, in hex. Clients send it, never the
 * secret, and each endpoint accepts only the one for the address it is registered at, so
 * whoever registers an instance that points at their own listener receives a token that
 * opens nothing else. The same as
 * `printf %s '<address>:<port>' | openssl dgst -sha256 -hmac "$MESHLET_ADMIN_TOKEN"`.
 */
export function adminToken(secret: string, authority: string): string {
  return createHmac('sha256', secret).update(authority, 'utf8').digest('hex');
}
