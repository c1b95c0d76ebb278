/**
 * A service name that Spring clients can call: a DNS label. An underscore, for one, breaks
 * Java's URI host parsing, so `@LoadBalanced` clients could not reach the service.
 */
export const SERVICE_NAME = /^[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

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
