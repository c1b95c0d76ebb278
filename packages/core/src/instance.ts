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

/** Base URL of an instance: https when its metadata says `secure=true`. */
export function instanceOrigin(instance: Instance): string {
  const scheme = instance.metadata[MetaKey.secure] === 'true' ? 'https' : 'http';
  const host = instance.address.includes(':') ? `[${instance.address}]` : instance.address;
  return `${scheme}://${host}:${instance.port}`;
}
