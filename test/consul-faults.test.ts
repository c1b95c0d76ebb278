// Issue 7's fault tests: a real Consul agent, real services on 127.0.0.1, steady load.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, type Mesh } from 'meshlet';
import { steadyLoad } from './steady-load.js';

interface Running {
  mesh: Mesh;
  server: Server;
  id: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(test: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('Consul faults under load', () => {
  let agent: ConsulAgent;
  let dir: string;
  const registryOptions = () => ({
    address: agent.address,
    waitSeconds: 5,
    reregisterCheckMs: 200,
    healthCheck: { type: 'http' as const, interval: '1s' },
    logger: new MemoryLogger(),
  });

  async function startInstance(id: string): Promise<Running> {
    const mesh = createMesh({
      service: 'stock',
      instanceId: id,
      registry: new ConsulRegistry(registryOptions()),
      rules: new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() }),
      logger: new MemoryLogger(),
    });
    const server = createServer(mesh.httpHandler((_req, res) => res.end(id)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    // Callers hear of a deregistration by blocking query; without a retry rule, a call sent
    // before they do must still find the server open.
    await mesh.serve(server, { signals: [], deregisterDelayMs: 3_000, drainTimeoutMs: 5_000 });
    return { mesh, server, id };
  }

  before(async () => {
    agent = await startConsulAgent();
    dir = await mkdtemp(join(tmpdir(), 'meshlet-faults-'));
  });
  after(async () => {
    await agent.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a Consul outage fails no call; a process started during it routes from the snapshot; Consul returning resyncs', async () => {
    const snapshotFile = join(dir, 'snapshot.json');
    const instances = [await startInstance('stock-a'), await startInstance('stock-b')];
    const caller = createMesh({
      service: 'shop',
      registry: new ConsulRegistry({ ...registryOptions(), snapshotFile }),
      logger: new MemoryLogger(),
    });
    await until(async () => (await caller.registry.healthyInstances('stock')).length === 2, 'two stock instances');
    const load = steadyLoad(() => caller.fetch('http://stock/'));
    await sleep(300);
    await agent.stop();
    await sleep(1_000);
    // A caller started during the outage: routes from the snapshot file.
    const late = createMesh({
      service: 'late',
      registry: new ConsulRegistry({ ...registryOptions(), snapshotFile }),
      logger: new MemoryLogger(),
    });
    assert.equal((await late.fetch('http://stock/')).status, 200);
    await agent.restart(); // a dev agent comes back empty: the instances register again by themselves
    await until(
      async () =>
        (await fetch(`${agent.address}/v1/health/service/stock?passing=true`).then((r) => r.json() as Promise<unknown[]>)).length === 2,
      'instances registered again',
      30_000,
    );
    await sleep(500);
    await load.stop();
    assert.deepEqual(load.failures, [], `${load.failures.length} of ${load.sent} calls failed`);
    assert.ok(load.sent > 100, `steady load: ${load.sent} calls`);
    assert.equal(load.servedBy.size, 2, 'both instances served');
    await late.close();
    await caller.close();
    for (const i of instances) {
      await i.mesh.close();
      i.server.close();
    }
  });

  it('a rolling restart with graceful stop fails no call', async () => {
    let a = await startInstance('stock-1');
    let b = await startInstance('stock-2');
    const caller = createMesh({ service: 'shop2', registry: new ConsulRegistry(registryOptions()), logger: new MemoryLogger() });
    await until(async () => (await caller.registry.healthyInstances('stock')).length === 2, 'two instances');
    const load = steadyLoad(() => caller.fetch('http://stock/'));
    await sleep(300);
    await a.mesh.shutdown();
    a = await startInstance('stock-1b');
    await until(async () => (await caller.registry.healthyInstances('stock')).some((i) => i.id === 'stock-1b'), 'stock-1b');
    await sleep(300);
    await b.mesh.shutdown();
    b = await startInstance('stock-2b');
    await until(async () => (await caller.registry.healthyInstances('stock')).some((i) => i.id === 'stock-2b'), 'stock-2b');
    await sleep(300);
    await load.stop();
    assert.deepEqual(load.failures, [], `${load.failures.length} of ${load.sent} calls failed`);
    for (const id of ['stock-1', 'stock-2', 'stock-1b', 'stock-2b']) assert.ok((load.servedBy.get(id) ?? 0) > 0, `${id} served`);
    await caller.close();
    for (const i of [a, b]) await i.mesh.shutdown();
  });
});
