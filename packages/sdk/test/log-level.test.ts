// The mesh's log level: `logLevel` (`meshlet.log.level`) decides what is written; what is
// not written is still counted for meshlet_conditions_total.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger, MeshletError } from '@meshlet/core';
import { createMesh, createMeshFromConfig } from '../src/index.js';
import { meshInternals } from '../src/mesh-internals.js';

const meshWith = (options: { logLevel?: 'debug' | 'info' | 'warn' | 'error' }) => {
  const logger = new MemoryLogger();
  const mesh = createMesh({ service: 'orders', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), logger, ...options });
  return { logger, mesh, log: meshInternals(mesh).logger };
};

it('logLevel: entries below it are not passed to the logger given, and are counted all the same', async () => {
  const { logger, mesh, log } = meshWith({ logLevel: 'warn' });
  log.info('breaker closed', { code: 'MESHLET_BREAKER_CLOSED' });
  log.warn('consul KV query failed', { code: 'MESHLET_KV_DEGRADED' });
  assert.deepEqual(
    logger.entries.map((e) => e.fields?.code),
    ['MESHLET_KV_DEGRADED'],
  );
  assert.equal((log as unknown as { counts: Map<string, number> }).counts.get('MESHLET_BREAKER_CLOSED'), 1);
  await mesh.close();
});

it('without logLevel, a logger given gets every level', async () => {
  const { logger, mesh, log } = meshWith({});
  log.debug('d', { code: 'MESHLET_X_DEBUG' });
  log.info('i', { code: 'MESHLET_BREAKER_CLOSED' });
  assert.deepEqual(
    logger.entries.filter((e) => e.message === 'd' || e.message === 'i').map((e) => e.level),
    ['debug', 'info'],
  );
  await mesh.close();
});

it('refuses a logLevel that is not a level, naming the option; meshlet.log.level naming the key and its variable', async () => {
  assert.throws(
    () => createMesh({ service: 'orders', logLevel: 'verbose' as 'info' }),
    (err: unknown) =>
      err instanceof MeshletError &&
      err.code === 'MESHLET_BAD_OPTION' &&
      /^logLevel: "verbose" must be one of debug, info, warn, error$/.test(err.message),
  );
  await assert.rejects(
    createMeshFromConfig({ env: { MESHLET_SERVICE: 'orders', MESHLET_LOG_LEVEL: 'verbose' }, logger: new MemoryLogger() }),
    (err: unknown) =>
      err instanceof MeshletError &&
      err.code === 'MESHLET_BAD_OPTION' &&
      /^meshlet\.log\.level \(MESHLET_LOG_LEVEL\): "verbose" must be one of debug, info, warn, error$/.test(err.message),
  );
});

it('meshlet.log.level sets the level of the mesh made from configuration', async () => {
  const logger = new MemoryLogger();
  const mesh = await createMeshFromConfig({
    env: { MESHLET_SERVICE: 'orders', MESHLET_LOG_LEVEL: 'error' },
    overrides: { registry: new InMemoryRegistry(), rules: new InMemoryKvStore() },
    logger,
  });
  const log = meshInternals(mesh).logger;
  log.warn('consul KV query failed', { code: 'MESHLET_KV_DEGRADED' });
  log.error('failed', { code: 'MESHLET_CONTEXT_FAILED' });
  assert.deepEqual(
    logger.entries.map((e) => e.fields?.code),
    ['MESHLET_CONTEXT_FAILED'],
  );
  await mesh.close();
});
