// A twelve-factor service (createMeshFromConfig, environment variables alone) restarted
// while Consul is down starts from the snapshot files in MESHLET_CONSUL_SNAPSHOTDIR: its
// config, its rules and the instances it called, on a real Consul agent that is then stopped.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { ConfigSourceError } from '@meshlet/config';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMeshFromConfig, type Mesh } from 'meshlet';

let agent: ConsulAgent;
let dir: string;
const servers: Server[] = [];
const upstreams: ConsulRegistry[] = [];

before(async () => {
  agent = await startConsulAgent();
  dir = await mkdtemp(join(tmpdir(), 'meshlet-config-outage-'));
  for (const version of ['1', '2']) {
    const server = createServer((_req, res) => res.end(`v${version}`));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    const registry = new ConsulRegistry({ address: agent.address, logger: new MemoryLogger() });
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
  await new ConsulKvStore({ address: agent.address }).put('config/shop/meshlet/version', '3.0.0');
});
after(async () => {
  await Promise.all(upstreams.map((r) => r.close()));
  for (const s of servers) s.close();
  await agent.stop();
  await rm(dir, { recursive: true, force: true });
});

async function answers(mesh: Mesh): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let n = 0; n < 20; n++) seen.add(await (await mesh.fetch('http://stock/')).text());
  return seen;
}

async function until(test: () => Promise<boolean>): Promise<void> {
  while (!(await test())) await new Promise((r) => setTimeout(r, 20));
}

const saved = (file: string) => readFile(join(dir, file), 'utf8').catch(() => '');

it('createMeshFromConfig restarted while Consul is down starts from meshlet.consul.snapshot-dir: config, rules, instances', async () => {
  const env = { MESHLET_SERVICE: 'shop', CONSUL_HTTP_ADDR: agent.address, MESHLET_CONSUL_SNAPSHOTDIR: dir };
  const first = await createMeshFromConfig({ env, logger: new MemoryLogger() });
  assert.equal(first.config.get('meshlet.version'), '3.0.0');
  await first.rules.apply(JSON.stringify({ service: 'stock', route: { rules: [], default: [{ group: { version: '2' }, weight: 100 }] } }), {
    author: 'test',
  });
  await first.rulesInForce('stock');
  assert.deepEqual([...(await answers(first))], ['v2']);
  await until(async () => {
    const kv = await saved('shop.kv.json');
    return kv.includes('meshlet/rules/stock') && kv.includes('config/shop/meshlet/version');
  });
  await until(async () => (await saved('shop.registry.json')).includes('stock-v2'));
  await first.close();

  await agent.stop();

  const logger = new MemoryLogger();
  const restarted = await createMeshFromConfig({ env, logger });
  assert.equal(restarted.config.get('meshlet.version'), '3.0.0', 'the config of the snapshot, read at start');
  assert.deepEqual([...(await answers(restarted))], ['v2'], 'the instances and the route rule of the snapshot');
  assert.ok(logger.entries.some((e) => e.fields?.code === ConfigSourceError.code && /snapshot/.test(e.message)));
  await restarted.close();

  // Without snapshots: refused, naming what this function takes; with failFast: false, started.
  const bare = { MESHLET_SERVICE: 'shop', CONSUL_HTTP_ADDR: agent.address };
  await assert.rejects(
    createMeshFromConfig({ env: bare, logger: new MemoryLogger() }),
    (err: unknown) =>
      err instanceof ConfigSourceError &&
      /MESHLET_CONSUL_SNAPSHOTDIR/.test(err.message) &&
      /failFast: false to createMeshFromConfig/.test(err.message),
  );
  const unconfigured = await createMeshFromConfig({ env: bare, failFast: false, logger: new MemoryLogger() });
  assert.equal(unconfigured.config.get('meshlet.version'), undefined);
  await unconfigured.close();
});
