import { type Logger, MeshletError } from '@meshlet/core';
import type { GovernedCallPipeline } from './governed-fetch.js';
import type { Mesh } from './mesh-options.js';
import type { ServiceDirectory } from './service-directory.js';

/**
 * What a client front end outside `mesh.ts` (axios, got, …) needs from a mesh to govern
 * calls exactly as `mesh.fetch` does: the service directory (is this host a service?) and
 * the shared outbound pipeline. Not part of the public `Mesh` type.
 */
export interface MeshInternals {
  readonly directory: ServiceDirectory;
  readonly pipeline: GovernedCallPipeline;
  readonly logger: Logger;
}

const internals = new WeakMap<Mesh, MeshInternals>();

/** Called once by createMesh. */
export function setMeshInternals(mesh: Mesh, parts: MeshInternals): void {
  internals.set(mesh, parts);
}

/** The pipeline of a mesh made by createMesh; anything else is refused with `MESHLET_BAD_OPTION`. */
export function meshInternals(mesh: Mesh, field = 'mesh'): MeshInternals {
  const parts = typeof mesh === 'object' && mesh !== null ? internals.get(mesh) : undefined;
  if (!parts) throw new MeshletError('MESHLET_BAD_OPTION', `${field}: give the Mesh that createMesh() returned`);
  return parts;
}
