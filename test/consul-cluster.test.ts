// Issue 17 on a real Consul cluster: three servers and a client agent on 127.0.0.1
// (startConsulCluster), apps on the client agent as in production. The leader is killed
// under load, then the client agent itself; calls read memory and must not fail.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulCluster, startConsulCluster } from '@meshlet/registry/testing';
import { createMesh, type Mesh } from 'meshlet';
import { steadyLoad } from './steady-load.js';

async function until(test: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('on a 3-server Consul cluster with a client agent', () => {
  let cluster: ConsulCluster;
  let dir: string;
  const servers: Server[] = [];
  const upstreams: ConsulRegistry[] = [];

  async function upstream(version: string): Promise<void> {
    const server = createServer((_req, res) => res.end(`v${version}`));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    const registry = new ConsulRegistry({
      address: cluster.client.address,
      healthCheck: { type: 'http', interval: '1s' },
      logger: new MemoryLogger(),
    });
    upstreams.push(registry);
    await registry.register({
      id: `stock-v${version}`,
      service: 'stock',
      address: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
      tags: [],
      metadata: { version },
      health: 'passing',
    });
  }

  /** A caller on the client agent, with both snapshot files. */
  const caller = (name: string): Mesh =>
    createMesh({
      service: name,
      registry: new ConsulRegistry({
        address: cluster.client.address,
        snapshotFile: join(dir, 'registry.json'),
        logger: new MemoryLogger(),
      }),
      rules: new ConsulKvStore({ address: cluster.client.address, snapshotFile: join(dir, 'rules.json'), logger: new MemoryLogger() }),
      logger: new MemoryLogger(),
    });

  before(async () => {
    cluster = await startConsulCluster();
    dir = await mkdtemp(join(tmpdir(), 'meshlet-cluster-'));
    await upstream('1');
    await upstream('2');
  });
  after(async () => {
    await Promise.all(upstreams.map((r) => r.close()));
    for (const s of servers) s.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the leader killed under load: no call fails, and rule writes resume after the new election', async (t) => {
    const shop = caller('shop');
    t.after(() => shop.close());
    await until(async () => (await shop.registry.healthyInstances('stock')).length === 2, 'two stock instances');
    const load = steadyLoad(() => shop.fetch('http://stock/'));
    t.after(() => load.stop());
    await until(() => load.sent > 50, 'load running');
    const kv = new ConsulKvStore({ address: cluster.client.address, timeoutMs: 2_000, logger: new MemoryLogger() });

    const leader = await cluster.leader();
    await leader.stop();
    // A write through the client agent succeeds again once the two others have elected a leader.
    let writes = 0;
    await until(async () => {
      writes++;
      return kv.put('meshlet/test/after-election', String(writes)).catch(() => false);
    }, 'a KV write after the election');
    const newLeader = await cluster.leader();
    assert.notEqual(newLeader.name, leader.name);
    // A rule written now reaches the caller: its watches have resynced on the new leader.
    await shop.rules.apply(
      JSON.stringify({ service: 'stock', route: { rules: [], default: [{ group: { version: '2' }, weight: 100 }] } }),
      { author: 'test' },
    );
    await shop.rulesInForce('stock', { timeoutMs: 20_000 });
    // (A call in flight when the rule arrived may still answer v1: count from the next ones.)
    const v2 = () => load.servedBy.get('v2') ?? 0;
    const settled = v2() + 2;
    await until(() => v2() >= settled, 'calls after the rule');
    const v1Before = load.servedBy.get('v1') ?? 0;
    const v2Before = v2();
    await until(() => v2() >= v2Before + 20, 'more calls after the rule');
    await load.stop();
    assert.deepEqual(load.failures, [], `${load.failures.length} of ${load.sent} calls failed`);
    assert.equal(load.servedBy.get('v1') ?? 0, v1Before, 'the rule written after the election is in force');
    await leader.start(); // back to three servers for the next test
    await cluster.leader();
  });

  it('the client agent killed under load: no call fails, a caller started meanwhile routes from the snapshot, and the agent restarted resyncs', async (t) => {
    const shop = caller('shop');
    t.after(() => shop.close());
    await until(async () => (await shop.registry.healthyInstances('stock')).length === 2, 'two stock instances');
    // Every call to v2. Right after its restart the agent reports each restored HTTP check
    // critical until it has run once: without the registry's resync grace, v2 would vanish
    // from the view for up to an interval and the route rule would refuse calls (seen: 61
    // of 355 failed).
    await shop.rules.apply(
      JSON.stringify({
        service: 'stock',
        route: { rules: [], default: [{ group: { version: '2' }, weight: 100 }] },
        breaker: { rules: [{ level: 'service', consecutiveFailures: 9 }] },
      }),
      { author: 'test' },
    );
    await shop.rulesInForce('stock', { timeoutMs: 20_000 });
    await until(async () => {
      const saved = await readFile(join(dir, 'rules.json'), 'utf8').catch(() => '');
      return saved.includes('consecutiveFailures\\":9');
    }, 'the rules snapshot');
    const load = steadyLoad(() => shop.fetch('http://stock/'));
    t.after(() => load.stop());
    await until(() => load.sent > 50, 'load running');

    await cluster.client.stop();
    t.after(() => (cluster.client.running ? undefined : cluster.client.start()));
    const registry = shop.registry as ConsulRegistry;
    await until(() => registry.status.degraded, 'the caller sees the outage');
    const late = caller('late');
    t.after(() => late.close());
    assert.equal(await (await late.fetch('http://stock/')).text(), 'v2', 'routes from the snapshot, with its route rule');
    assert.ok(
      late.breakers.snapshot().some((b) => b.breaker.level === 'service' && b.breaker.service === 'stock'),
      'with the breaker rule of the snapshot',
    );

    await cluster.client.start();
    await until(() => !registry.status.degraded, 'the caller resynced');
    // The restarted agent kept its registrations (data dir); a change after it reaches the caller.
    await upstreams[0]?.deregister('stock-v1');
    await until(async () => (await shop.registry.healthyInstances('stock')).length === 1, 'the deregistration seen');
    await load.stop();
    assert.deepEqual(load.failures, [], `${load.failures.length} of ${load.sent} calls failed`);
  });
});
