// A rolling restart is no sudden drop. Against a real Consul (MESHLET_CONSUL_BIN): three
// instances deregistered one by one, each replaced, must not put the caller's routing in
// panic (the ones that left the catalog left on purpose), while two of three turning
// critical must (1 of 3 passing is below the 50% threshold: the sudden drop a Consul
// server restart looks like, packages/sdk/test/recovery.test.ts).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { InMemoryKvStore, type Instance, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { ConsulRegistry } from '@meshlet/registry';
import { startConsulAgent } from '@meshlet/registry/testing';
import { createMesh } from 'meshlet';

const SERVICE = 'rolling';
const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

async function until(test: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1_500; i++) {
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('Consul: deregistered instances are gone, critical ones are distrusted', () => {
  it('a rolling restart of 3 does not log MESHLET_ROUTE_PANIC; 2 of 3 going critical does', async () => {
    const agent = await startConsulAgent();
    cleanup.push(() => agent.stop());
    const logger = new MemoryLogger();
    // A TTL check that nothing renews within the test: only `check/fail` turns it critical.
    const registrar = new ConsulRegistry({ address: agent.address, healthCheck: { type: 'ttl', ttl: '10m' }, logger });
    cleanup.push(() => registrar.close());
    const servers = new Map<string, TestServer>();
    const start = async (id: string) => {
      const server = await listen((_req, res) => res.end(id));
      cleanup.push(() => server.close());
      servers.set(id, server);
      await registrar.register({
        id,
        service: SERVICE,
        address: '127.0.0.1',
        port: server.port,
        tags: [],
        metadata: {},
        health: 'passing',
      });
    };
    for (const id of ['old0', 'old1', 'old2']) await start(id);

    const callerRegistry = new ConsulRegistry({ address: agent.address, waitSeconds: 5, logger });
    const caller = createMesh({ service: 'rolling-caller', registry: callerRegistry, rules: new InMemoryKvStore(), logger });
    cleanup.push(() => caller.close());
    /** Ids the caller reached in `n` calls (the routing table is rebuilt, and panic logged, on the first). */
    const reach = async (n = 30) => {
      const ids = new Set<string>();
      for (let i = 0; i < n; i++) ids.add(await (await caller.fetch(`http://${SERVICE}/`)).text());
      return [...ids].sort();
    };
    const answered = new Set<string>();
    await until(async () => {
      for (const id of await reach(10)) answered.add(id);
      return answered.size === 3;
    }, 'calls reaching all three');
    // Added after the mesh's own listener, so when it sees a list the mesh has it too.
    let listed: readonly string[] = [];
    const off = callerRegistry.watch(SERVICE, (instances: readonly Instance[]) => {
      listed = instances.map((i) => i.id).sort();
    });
    cleanup.push(async () => off());
    const seen = (ids: string[]) => until(() => listed.join() === [...ids].sort().join(), `the caller listing ${ids.join(', ')}`);

    // Rolling restart: each old instance deregisters (and keeps serving, as Meshlet's
    // graceful stop does), then its replacement registers.
    const fresh: string[] = [];
    for (const [i, old] of ['old0', 'old1', 'old2'].entries()) {
      await registrar.deregister(old);
      const left = ['old0', 'old1', 'old2'].slice(i + 1);
      await seen([...fresh, ...left]);
      assert.deepEqual(await reach(), [...fresh, ...left].sort(), `after ${old} deregistered`);
      fresh.push(`new${i}`);
      await start(`new${i}`);
      await seen([...fresh, ...left]);
      await reach();
    }
    const panics = () => logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_PANIC');
    assert.deepEqual(panics(), [], 'a rolling restart is no sudden drop');
    assert.deepEqual(caller.router.departed(SERVICE), []);

    // Two of three fail their checks but stay registered: 1 of 3 passing, below 50%.
    for (const id of ['new0', 'new1']) await registrar.client.request('PUT', `/v1/agent/check/fail/service:${id}`);
    await seen(['new2']);
    assert.deepEqual(await reach(60), ['new0', 'new1', 'new2'], 'panic routes to all three');
    assert.equal(panics().length, 1);
    assert.equal(panics()[0]?.fields?.departed, 2);
    assert.deepEqual(
      caller.router
        .departed(SERVICE)
        .map((i) => i.id)
        .sort(),
      ['new0', 'new1'],
    );
  });
});
