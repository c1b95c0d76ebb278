import { CATALOG_META_KEY } from '@meshlet/auth';
import { ADMIN_META_KEY, MetaKey } from '@meshlet/core';
import { REGISTERED_AT_META } from '@meshlet/route';

/**
 * The registration metadata the mesh writes itself, each with what sets it. An app's
 * `metadata` may not name them (createMesh refuses it): its value would replace the
 * registration time callers warm up from, the admin path, the catalog's hash or the gRPC
 * port callers dial. `secure`, `zone`, `region`, `lane` and `weight` are the app's to give.
 */
export const MESH_METADATA = Object.freeze({
  [MetaKey.version]: 'createMesh({ version })',
  [MetaKey.namespace]: 'createMesh({ namespace })',
  [REGISTERED_AT_META]: 'register(): the time it registered, which callers warm up from',
  [ADMIN_META_KEY]: 'admin: { path }',
  [CATALOG_META_KEY]: "the API catalog's hash (catalog)",
  [MetaKey.grpcPort]: 'mesh.grpc.serve(server, port)',
} as const);

/** A key of MESH_METADATA: Registration writes no other of its own. */
export type MeshMetadataKey = keyof typeof MESH_METADATA;

/** What sets `key`, when the mesh writes it. */
export function meshMetadataSource(key: string): string | undefined {
  return Object.hasOwn(MESH_METADATA, key) ? MESH_METADATA[key as MeshMetadataKey] : undefined;
}
