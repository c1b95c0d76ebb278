// A rule store (Consul KV) that stops answering: the mesh runs on the rules last read, and
// says so where an operator looks: `degraded.kv` in the admin status, meshlet_degraded{what="kv"}
// in its metrics, and MESHLET_KV_DEGRADED / MESHLET_KV_RECOVERED through the mesh's logger,
// counted in meshlet_conditions_total, though the store was built without a logger.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen, type TestServer, waitFor } from '@meshlet/core/testing';
import { ConsulKvStore } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, createMeshFromConfig, type Mesh } from '../src/index.js';

const TOKEN = 'a-long-enough-admin-token-0123';

let agent: ConsulAgent;
let mesh: Mesh;
let server: TestServer;
const logger = new MemoryLogger();

before(async () => {
  agent = await startConsulAgent();
  mesh = createMesh({
    service: 'orders',
    registry: new InMemoryRegistry(),
    rules: new ConsulKvStore({ address: agent.address, waitSeconds: 1 }),
    admin: { token: TOKEN },
    logger,
  });
  server = await listen(mesh.httpHandler((_req, res) => res.end('app')));
  await mesh.register({ port: server.port });
});
after(async () => {
  await mesh.close();
  server.server.close();
  await agent.stop();
});

async function admin(what: 'status' | 'metrics'): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${server.port}/_meshlet/${what}`, { headers: adminAuthorization(TOKEN, server.port) });
  assert.equal(res.status, 200);
  return res.text();
}

const kvDegraded = async () => (JSON.parse(await admin('status')) as { degraded: Record<string, boolean> }).degraded.kv;
const logged = (code: string) => logger.entries.filter((e) => e.fields?.code === code).length;

it('degraded.kv and meshlet_degraded{what="kv"} are set while Consul KV is down and cleared when it is back; both codes go through the mesh logger', async () => {
  assert.equal(await kvDegraded(), false);
  assert.match(await admin('metrics'), /^meshlet_degraded\{what="kv"\} 0$/m);

  await agent.stop();
  await waitFor(async () => (await kvDegraded()) === true, 'degraded.kv true after Consul stopped');
  assert.match(await admin('metrics'), /^meshlet_degraded\{what="kv"\} 1$/m);
  assert.equal(logged('MESHLET_KV_DEGRADED'), 1, "written through the mesh's logger");
  assert.match(await admin('metrics'), /^meshlet_conditions_total\{code="MESHLET_KV_DEGRADED"\} 1$/m);

  await agent.restart();
  await waitFor(async () => (await kvDegraded()) === false, 'degraded.kv false after Consul restarted');
  assert.match(await admin('metrics'), /^meshlet_degraded\{what="kv"\} 0$/m);
  assert.equal(logged('MESHLET_KV_RECOVERED'), 1);
  assert.match(await admin('metrics'), /^meshlet_conditions_total\{code="MESHLET_KV_RECOVERED"\} 1$/m);
});

it('createMeshFromConfig: a config document rejected after start is logged through the given logger and counted by the mesh', async (t) => {
  const given = new MemoryLogger();
  const kv = new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() });
  await kv.put('config/billing/data', 'meshlet:\n  version: 1.0.0\n');
  const configured = await createMeshFromConfig({
    logger: given,
    env: { MESHLET_SERVICE: 'billing', MESHLET_CONSUL_ADDRESS: agent.address, MESHLET_CONFIG_FORMAT: 'yaml' },
    overrides: { admin: { token: TOKEN }, registry: new InMemoryRegistry() },
  });
  const app = await listen(configured.httpHandler((_req, res) => res.end('app')));
  t.after(async () => {
    await configured.close();
    app.server.close();
  });
  await configured.register({ port: app.port });
  // Built by createMeshFromConfig before the mesh existed: it logs through the mesh now.
  await kv.put('config/billing/data', 'meshlet: [unclosed\n');
  const rejected = () => given.entries.find((e) => e.level === 'error' && typeof e.fields?.code === 'string');
  await waitFor(() => rejected() !== undefined, 'the rejected config document logged');
  const code = String(rejected()?.fields?.code);
  const res = await fetch(`http://127.0.0.1:${app.port}/_meshlet/metrics`, { headers: adminAuthorization(TOKEN, app.port) });
  assert.match(await res.text(), new RegExp(`^meshlet_conditions_total\\{code="${code}"\\} 1$`, 'm'));
});
