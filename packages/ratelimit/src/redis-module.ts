import { createRequire } from 'node:module';
import { MeshletError } from '@meshlet/core';

type CreateClient = typeof import('@redis/client').createClient;

let loaded: CreateClient | undefined;

/** Loads a module the way redisCreateClient does; tests pass one that fails. */
export type ModuleLoader = (id: string) => unknown;

const loadFromHere: ModuleLoader = (id) => createRequire(import.meta.url)(id);

/**
 * node-redis's `createClient`, loaded on the first Redis connection rather than when the
 * package is imported: most services never limit through Redis, and node-redis is the
 * largest module the mesh would otherwise load at start (bench: `import-cost`). A bundler
 * does not follow this `require`: in a bundle without `@redis/client` beside it, the first
 * connection fails MESHLET_REDIS_NOT_INSTALLED naming the option (not Node's bare
 * MODULE_NOT_FOUND).
 */
export function redisCreateClient(load: ModuleLoader = loadFromHere): CreateClient {
  if (loaded !== undefined) return loaded;
  let module: typeof import('@redis/client');
  try {
    module = load('@redis/client') as typeof import('@redis/client');
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err;
    throw new MeshletError(
      'MESHLET_REDIS_NOT_INSTALLED',
      'a Redis connection (ratelimit.redisUrl, meshlet.ratelimit.redis-url) needs @redis/client, a dependency of @meshlet/ratelimit that cannot be loaded from here: in a bundle, keep it external and installed beside the bundle',
    );
  }
  loaded = module.createClient;
  return loaded;
}
