import { createRequire } from 'node:module';

type CreateClient = typeof import('@redis/client').createClient;

let loaded: CreateClient | undefined;

/**
 * node-redis's `createClient`, loaded on the first Redis connection rather than when the
 * package is imported: most services never limit through Redis, and node-redis is the
 * largest module the mesh would otherwise load at start (bench: `import-cost`).
 */
export function redisCreateClient(): CreateClient {
  loaded ??= (createRequire(import.meta.url)('@redis/client') as typeof import('@redis/client')).createClient;
  return loaded;
}
