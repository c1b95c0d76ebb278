import { type Instance, MetaKey } from '@meshlet/core';

/**
 * The instance metadata key for the gRPC port, as grpc-spring (net.devh
 * grpc-server-spring-boot-starter) writes it into a Spring Cloud Consul registration's
 * `Meta` (GrpcMetadataConsulConfiguration, GrpcUtils.CLOUD_DISCOVERY_METADATA_PORT) and its
 * client's DiscoveryClientNameResolver reads it back: a Java gRPC service in a Spring estate
 * is found by the same name and key.
 */
export const GRPC_PORT_META = MetaKey.grpcPort;

/**
 * The key grpc-spring read before `gRPC_port` and still reads as a fallback. A dot is not
 * allowed in a Consul `Meta` key, so Consul estates never have it there; Eureka ones may.
 */
export const LEGACY_GRPC_PORT_META = 'gRPC.port';

/**
 * The port an instance serves gRPC on: its `gRPC_port` metadata, else the legacy
 * `gRPC.port`, else its registered port (a gRPC-only service registers the gRPC port
 * itself) — the order grpc-spring's resolver uses. A malformed value falls back too.
 */
export function grpcPortOf(instance: Instance): number {
  for (const key of [GRPC_PORT_META, LEGACY_GRPC_PORT_META]) {
    const raw = instance.metadata[key];
    if (raw === undefined) continue;
    const port = Number(raw);
    if (Number.isInteger(port) && port > 0 && port < 65536) return port;
  }
  return instance.port;
}

/** Metadata to register for a service that also serves gRPC on `port`. */
export function grpcMetadata(port: number): Record<string, string> {
  return { [GRPC_PORT_META]: String(port) };
}
