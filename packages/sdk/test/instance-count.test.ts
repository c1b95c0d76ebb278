// Issue #16 item 7: while Redis is down a distributed limit falls back to this instance's
// share, limit / healthy instances. A registry that shows no instance of this service must
// not make that share the whole limit: the last known count stays, and an unknown count is
// logged and counted. Redis is unreachable on purpose (a closed port on 127.0.0.1).
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Instance, MemoryLogger } from '@meshlet/core';
import { createMesh, type Mesh } from '../src/index.js';

let deadRedis = '';
const meshes: Mesh[] = [];
before(async () => {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((r) => probe.close(() => r()));
  deadRedis = `redis://127.0.0.1:${port}`;
});
after(async () => {
  for (const m of meshes) await m.close();
});

const peer = (i: number): Instance => ({
  id: `limited-${i}`,
  service: 'limited',
  address: '127.0.0.1',
  port: 9000 + i,
  tags: [],
  metadata: {},
  health: 'passing',
});

/** The in-memory registry, plus what a registry does in an outage or a resync: answers "none" at once. */
class BlackoutRegistry extends InMemoryRegistry {
  readonly #listeners = new Set<(instances: readonly Instance[]) => void>();
  override watch(service: string, listener: (instances: readonly Instance[]) => void) {
    this.#listeners.add(listener);
    const off = super.watch(service, listener);
    return () => {
      this.#listeners.delete(listener);
      off();
    };
  }
  blackout(): void {
    for (const l of this.#listeners) l([]);
  }
}

const limitedMesh = async (registry: InMemoryRegistry, logger: MemoryLogger) => {
  const rules = new InMemoryKvStore();
  await rules.put(
    'meshlet/rules/limited',
    JSON.stringify({
      service: 'limited',
      ratelimit: { rules: [{ name: 'shared', rate: 1, unit: 'hour', burst: 100, mode: 'distributed' }] },
    }),
  );
  const mesh = createMesh({ service: 'limited', registry, rules, logger, ratelimit: { redisUrl: deadRedis, redisTimeoutMs: 200 } });
  meshes.push(mesh);
  await mesh.rulesInForce('limited');
  return mesh;
};

const admitted = async (mesh: Mesh, n: number) => {
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await mesh.rateLimiter.decide({ method: 'GET', path: '/', tag: () => undefined })).allowed) ok++;
  return ok;
};

it('the registry losing sight of the instances keeps the last known count: a quarter of the limit, not all of it', async () => {
  const registry = new BlackoutRegistry();
  for (let i = 1; i <= 4; i++) await registry.register(peer(i));
  const logger = new MemoryLogger();
  const mesh = await limitedMesh(registry, logger);
  await mesh.resolve('limited'); // this service's instances are known: 4
  registry.blackout();
  assert.equal(await admitted(mesh, 100), 25);
  assert.equal(mesh.rateLimiter.stats.degraded, true);
  assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_INSTANCE_COUNT_UNKNOWN').length, 0);
});

it('a count never known is 1, logged once and counted', async () => {
  const logger = new MemoryLogger();
  const mesh = await limitedMesh(new InMemoryRegistry(), logger);
  assert.equal(await admitted(mesh, 150), 100);
  const lines = logger.entries.filter((e) => e.fields?.code === 'MESHLET_INSTANCE_COUNT_UNKNOWN');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.fields?.service, 'limited');
});
