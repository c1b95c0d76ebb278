// A registry shared by two meshes logs through the newest one still open: when that one
// closes, through the one created before it (it kept logging to the closed mesh, whose
// counts nobody reads), and once both closed, through its own logger again.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { AdoptableLogger, InMemoryKvStore, InMemoryRegistry, type Logger, MemoryLogger } from '@meshlet/core';
import { createMesh } from '../src/index.js';

class LoggingRegistry extends InMemoryRegistry {
  readonly log: AdoptableLogger;
  constructor(own: Logger) {
    super();
    this.log = new AdoptableLogger(undefined, own);
  }
  adoptLogger(logger: Logger): void {
    this.log.adoptLogger(logger);
  }
  releaseLogger(logger: Logger): void {
    this.log.releaseLogger(logger);
  }
}

it('a shared registry logs through the newest open mesh, then the older one, then its own', async () => {
  const own = new MemoryLogger();
  const registry = new LoggingRegistry(own);
  const rules = new InMemoryKvStore();
  const olderLog = new MemoryLogger();
  const newerLog = new MemoryLogger();
  const older = createMesh({ service: 'older', registry, rules, logger: olderLog });
  const newer = createMesh({ service: 'newer', registry, rules, logger: newerLog });
  const say = (n: number) => registry.log.warn('registry degraded', { code: 'MESHLET_REGISTRY_DEGRADED', n });
  const seen = (l: MemoryLogger) => l.entries.filter((e) => e.fields?.code === 'MESHLET_REGISTRY_DEGRADED').map((e) => e.fields?.n);
  say(1);
  await newer.close();
  say(2);
  await older.close();
  say(3);
  assert.deepEqual([seen(newerLog), seen(olderLog), seen(own)], [[1], [2], [3]]);
});

it('a rule store with adoptLogger and no releaseLogger is still given the mesh logger', async () => {
  let adopted: Logger | undefined;
  const rules = Object.assign(new InMemoryKvStore(), {
    adoptLogger(logger: Logger) {
      adopted = logger;
    },
  });
  const given = new MemoryLogger();
  const mesh = createMesh({ service: 'solo', registry: new InMemoryRegistry(), rules, logger: given });
  adopted?.warn('kv degraded', { code: 'MESHLET_KV_DEGRADED' });
  await mesh.close();
  assert.equal(given.entries.filter((e) => e.fields?.code === 'MESHLET_KV_DEGRADED').length, 1);
});
