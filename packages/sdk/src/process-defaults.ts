import { InMemoryKvStore, InMemoryRegistry, NewestLive } from '@meshlet/core';
import type { Mesh } from './mesh-options.js';

/*
 * The process-wide state of the SDK, all of it, and why each piece exists. Everything else
 * a mesh holds is its own (built in createMesh and closed by mesh.close()).
 *
 * - The default registry and rule store: meshes created without `registry` / `rules` in
 *   one process (the quick start, tests, a demo running several services in one process)
 *   must find each other and share rules, as they would through Consul. Created on first
 *   use; never closed (they hold no sockets or timers).
 * - The last mesh: the module-level `fetch` (a drop-in for global fetch in code that has no
 *   mesh at hand) sends through the mesh serving the current request, else the mesh
 *   created last and still open (core's NewestLive: when it closes, the one before it).
 * - The request context's AsyncLocalStorage lives in @meshlet/core (`context.ts`, one per
 *   process under a global symbol, so two copies of the package share it).
 * - The newest tracing not shut down (@meshlet/trace's `defaultTracing()`, a NewestLive too): what `@Traced()` uses
 *   when not given one outside a request (inside one: the tracing serving it), for the
 *   same reason as the last mesh.
 * - Caches of values computed from their keys (parsed origins, RPC names, key objects, a
 *   mesh's internals for the axios / got front ends, in WeakMaps where keyed by objects):
 *   they hold nothing a second mesh could see differently.
 */

let processRegistry: InMemoryRegistry | undefined;
/** The in-memory registry shared by every mesh in this process that was not given one. */
export function defaultRegistry(): InMemoryRegistry {
  processRegistry ??= new InMemoryRegistry();
  return processRegistry;
}

let processRules: InMemoryKvStore | undefined;
/** The in-memory rule store shared by every mesh in this process that was not given one. */
export function defaultRuleStore(): InMemoryKvStore {
  processRules ??= new InMemoryKvStore();
  return processRules;
}

const meshes = new NewestLive<Mesh>();
/** The mesh created last in this process and not closed since, for the module-level fetch. */
export const lastMesh = {
  get: (): Mesh | undefined => meshes.newest(),
  set(mesh: Mesh): void {
    meshes.add(mesh);
  },
  /** Forgets `mesh` (it closed): the one created before it, if still open, takes over. */
  forget(mesh: Mesh): void {
    meshes.remove(mesh);
  },
};
