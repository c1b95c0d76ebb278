// Recovery concentration, at the unit level with fakes: after an outage the registry
// suddenly reports most instances critical (a Consul server restart does this for a few
// seconds). The mesh must not send every call to the one instance left: the sudden drop
// is distrusted for a grace, and the panic threshold spreads calls over all of them.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, type Mesh, type MeshOptions } from '../src/index.js';

const servers: TestServer[] = [];
const meshes: Mesh[] = [];
after(async () => {
  for (const m of meshes) await m.close();
  for (const s of servers) await s.close().catch(() => {});
});

async function setup(service: string, size: number, options: Partial<MeshOptions> = {}) {
  const registry = new InMemoryRegistry();
  const clock = new ManualClock();
  const ids: string[] = [];
  const byId = new Map<string, TestServer>();
  for (let i = 0; i < size; i++) {
    const id = `${service}-${i}`;
    const s = await listen((_req, res) => res.end(id));
    servers.push(s);
    byId.set(id, s);
    ids.push(id);
    await registry.register({ id, service, address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' });
  }
  const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore(), clock, ...options });
  meshes.push(mesh);
  /** 200 calls; how many each instance answered, and how many failed. */
  const spread = async () => {
    const counts: Record<string, number> = {};
    let failed = 0;
    for (let i = 0; i < 200; i++) {
      try {
        const res = await mesh.fetch(`http://${service}/`);
        const by = await res.text();
        counts[by] = (counts[by] ?? 0) + 1;
      } catch {
        failed++;
      }
    }
    return { counts, failed };
  };
  return { registry, clock, ids, byId, mesh, spread };
}

describe('after an outage the registry reports most instances critical', () => {
  it('the calls stay spread over every instance, not 100% on the one left; after the grace, the registry is believed', async () => {
    const { registry, clock, ids, spread } = await setup('recovering', 4);
    assert.equal(Object.keys((await spread()).counts).length, 4);
    for (const id of ids.slice(0, 3)) registry.setHealth(id, 'critical');
    const during = await spread();
    assert.equal(during.failed, 0);
    assert.deepEqual(Object.keys(during.counts).sort(), ids);
    assert.ok((during.counts[ids[3] as string] ?? 0) <= 100, `the one left took ${during.counts[ids[3] as string]} of 200`);
    clock.advance(35_000);
    const afterGrace = await spread();
    assert.deepEqual(afterGrace.counts, { [ids[3] as string]: 200 });
  });

  it('one of the distrusted instances really is dead: its call is retried elsewhere and it is forgotten, 0 failed', async () => {
    const { registry, ids, byId, spread, mesh } = await setup('half-dead', 4);
    await spread();
    for (const id of ids.slice(0, 3)) registry.setHealth(id, 'critical');
    await byId.get(ids[0] as string)?.close();
    const during = await spread();
    assert.equal(during.failed, 0);
    assert.equal(during.counts[ids[0] as string], undefined);
    assert.deepEqual(Object.keys(during.counts).sort(), ids.slice(1));
    // Its first refused connection told routing it is gone: the other two stay distrusted.
    assert.deepEqual(
      mesh.router
        .departed('half-dead')
        .map((i) => i.id)
        .sort(),
      ids.slice(1, 3),
    );
  });

  it('with the grace off, the one left takes everything (the behaviour this guards against)', async () => {
    const { registry, ids, spread } = await setup('believing', 4, { route: { departedGraceMs: 0 } });
    await spread();
    for (const id of ids.slice(0, 3)) registry.setHealth(id, 'critical');
    assert.deepEqual((await spread()).counts, { [ids[3] as string]: 200 });
  });
});

describe('fault injection and the default outlier ejection', () => {
  it('injected 503s say nothing about the instances: none is ejected', async () => {
    const { ids, mesh } = await setup('chaos', 3);
    await mesh.rules.apply(JSON.stringify({ service: 'chaos', fault: { rules: [{ name: 'all-503', percentage: 100, abort: 503 }] } }), {
      author: 'test',
    });
    await mesh.rulesInForce('chaos');
    for (let i = 0; i < 30; i++) {
      const fetched = await mesh.fetch('http://chaos/');
      assert.equal(fetched.status, 503);
      const requested = await mesh.request('http://chaos/');
      await requested.body.dump();
      assert.equal(requested.statusCode, 503);
    }
    for (const id of ids) assert.equal(mesh.breakers.instanceBreakers.isExcluded(id), false, id);
  });
});
