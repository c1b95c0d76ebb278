// node-redis is loaded on the first Redis connection, not when meshlet is imported: most
// services never limit through Redis, and node-redis is the largest module the mesh would
// load at start. A child process records every resolution of @redis/client.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';

const CHILD = `
import { registerHooks } from 'node:module';
const resolved = [];
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === '@redis/client' || specifier.startsWith('@redis/client/')) resolved.push(specifier);
    return next(specifier, context);
  },
});
const { createMesh } = await import('meshlet');
const { connectRedis } = await import('@meshlet/ratelimit');
const mesh = createMesh({ service: 'web' });
await mesh.close();
const atStart = resolved.length;
const redis = connectRedis('redis://127.0.0.1:1', { connectTimeoutMs: 50 });
const onConnect = resolved.length;
await redis.close();
process.stdout.write(JSON.stringify({ atStart, onConnect }));
`;

it('importing meshlet and creating a mesh does not load @redis/client; the first Redis connection does', () => {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const seen = JSON.parse(run.stdout) as { atStart: number; onConnect: number };
  assert.equal(seen.atStart, 0, '@redis/client was resolved before any Redis connection');
  assert.ok(seen.onConnect > 0, 'connectRedis did not load @redis/client');
});
