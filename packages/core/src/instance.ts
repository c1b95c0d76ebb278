import { isIPv4, isIPv6 } from 'node:net';

/**
 * The one rule for a service name, everywhere Meshlet takes one (createMesh, rule
 * documents, auth rules, `rulesInForce`, TSF keys): a lower-case DNS label. Spring clients
 * can call it (an underscore, for one, breaks Java's URI host parsing, so `@LoadBalanced`
 * clients could not reach the service), and a URL reaches it: URL parsers lower-case the
 * host, so `http://Upper-Svc/` asks for `upper-svc`, and a service registered as
 * `Upper-Svc` would never be found by its own URL.
 */
export const SERVICE_NAME = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Why `name` is not a service name (see SERVICE_NAME), or undefined when it is one. */
export function serviceNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `${typeof name} is not a service name`;
  if (SERVICE_NAME.test(name)) return undefined;
  const shown = JSON.stringify(name.slice(0, 80));
  if (SERVICE_NAME.test(name.toLowerCase()))
    return `${shown} has upper-case letters: URLs lower-case their host, so http://${name}/ would ask for "${name.toLowerCase()}"; name the service "${name.toLowerCase()}"`;
  return `${shown} is not a DNS label (lower-case letters, digits and "-", starting with a letter, at most 63): Spring clients cannot call such a name`;
}

export type Health = 'passing' | 'warning' | 'critical';

/**
 * One running copy of a service, as every registry describes it. `metadata` holds the
 * keys routing reads (see MetaKey); keys use letters, digits, `_` and `-` only, so that
 * they are valid Consul `Meta` keys as they are.
 */
export interface Instance {
  readonly id: string;
  readonly service: string;
  readonly address: string;
  readonly port: number;
  /** Registry tags (Consul `Tags`), not request tags. */
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly health: Health;
}

/** Metadata keys Meshlet reads and writes. Names match Spring Cloud Consul where it has one (`secure`, `zone`). */
export const MetaKey = {
  version: 'version',
  namespace: 'namespace',
  zone: 'zone',
  region: 'region',
  lane: 'lane',
  weight: 'weight',
  /** `"true"` when the instance serves https; Spring Cloud Consul always writes it. */
  secure: 'secure',
  /** The port the instance serves gRPC on, as grpc-spring (net.devh) writes and reads it. */
  grpcPort: 'gRPC_port',
} as const;

/**
 * Base URL of an instance: https when its metadata says `secure=true`. An IPv6 address is
 * kept bare in the instance (`::1`, as Consul and Spring write it) and bracketed here.
 */
export function instanceOrigin(instance: Instance): string {
  const scheme = instance.metadata[MetaKey.secure] === 'true' ? 'https' : 'http';
  return `${scheme}://${urlHost(instance.address)}:${instance.port}`;
}

/** An address as a URL's host: an IPv6 address in brackets, anything else as it is. */
export function urlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/** The longest host name DNS allows. */
const HOST_NAME_MAX = 253;
/** The characters of a host name an instance may have (DNS labels, and `_` as some estates' container names do). */
const HOST_NAME_CHARS = /^[A-Za-z0-9._-]+$/;

/**
 * Why `address` cannot be an instance's address, or undefined when it can: an IPv4 address,
 * a bare IPv6 address (no brackets, no zone: `::1`), or a host name of letters, digits,
 * `.`, `-` and `_` (at most 253) that a URL keeps as it is. The last rule refuses what a URL
 * would read as another address (`1.2.3` is 1.2.0.3, `0x7f.1` is 127.0.0.1) or refuse (`999.1.1.1`):
 * the instance is called at the address the registry names, or not at all.
 */
export function instanceAddressProblem(address: unknown): string | undefined {
  if (typeof address !== 'string') return `${typeof address} is not an address`;
  const shown = JSON.stringify(address.slice(0, 80));
  if (isIPv4(address)) return undefined;
  if (address.includes(':')) {
    // net accepts a zone (`fe80::1%eth0`); a URL does not.
    return isIPv6(address) && !address.includes('%')
      ? undefined
      : `${shown} is not an IPv6 address (written bare, without brackets or a zone: ::1)`;
  }
  if (address.length === 0 || address.length > HOST_NAME_MAX || !HOST_NAME_CHARS.test(address))
    return `${shown} is not an IP address or a host name (letters, digits, ".", "-" and "_", at most ${HOST_NAME_MAX})`;
  let host: string | undefined;
  try {
    host = new URL(`http://${address}/`).hostname;
  } catch {
    host = undefined;
  }
  if (host === undefined) return `${shown} is not a host name: a URL refuses it`;
  if (host !== address.toLowerCase()) return `${shown} is not a host name: a URL reads it as ${host}`;
  return undefined;
}

/** Why `port` cannot be an instance's port, or undefined when it can: an integer from 1 to 65535. */
export function instancePortProblem(port: unknown): string | undefined {
  return Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65_535
    ? undefined
    : `${JSON.stringify(port) ?? String(port)} is not a port (an integer from 1 to 65535)`;
}
