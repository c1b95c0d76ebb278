// Issue 17: a caller restarted while Consul is down routes from its snapshot files with
// the rules that were in force (route and breaker), on a real Consul agent that is then
// killed, and on an "agent" that accepts connections and never answers.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, type Mesh } from 'meshlet';

const rules = JSON.stringify({
  service: 'stock',
  route: { rules: [], default: [{ group: { version: '2' }, weight: 100 }] },
  breaker: { rules: [{ level: 'service', consecutiveFailures: 7 }] },
});

let agent: ConsulAgent;
let dir: string;
const servers: Server[] = [];
const upstreams: ConsulRegistry[] = [];

async function upstream(version: string): Promise<void> {
  const server = createServer((_req, res) => res.end(`v${version}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  const registry = new ConsulRegistry({ address: agent.address, logger: new MemoryLogger() });
  upstreams.push(registry);
  const port = (server.address() as AddressInfo).port;
  await registry.register({
    id: `stock-v${version}`,
    service: 'stock',
    address: '127.0.0.1',
    port,
    tags: [],
    metadata: { version },
    health: 'passing',
  });
}

before(async () => {
  agent = await startConsulAgent();
  dir = await mkdtemp(join(tmpdir(), 'meshlet-snapshot-rules-'));
  await upstream('1');
  await upstream('2');
});
after(async () => {
  await Promise.all(upstreams.map((r) => r.close()));
  for (const s of servers) s.close();
  await agent.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A caller whose registry and rules are kept in snapshot files beside each other. */
function caller(address: string, logger = new MemoryLogger()): Mesh {
  return createMesh({
    service: 'shop',
    registry: new ConsulRegistry({ address, snapshotFile: join(dir, 'registry.json'), snapshotWaitMs: 100, logger }),
    rules: new ConsulKvStore({ address, snapshotFile: join(dir, 'rules.json'), snapshotWaitMs: 100, logger }),
    logger,
  });
}

/** What 20 calls answered, by body. */
async function answers(mesh: Mesh): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let n = 0; n < 20; n++) seen.add(await (await mesh.fetch('http://stock/')).text());
  return seen;
}

async function until(test: () => Promise<boolean>): Promise<void> {
  while (!(await test())) await new Promise((r) => setTimeout(r, 20));
}

function assertRulesInForce(mesh: Mesh): void {
  const breaker = mesh.breakers.snapshot().find((b) => b.breaker.level === 'service' && b.breaker.service === 'stock');
  assert.ok(breaker, 'the breaker rule of the snapshot is in force');
}

it('a caller restarted while Consul is down, or silent, routes from the snapshot with its route and breaker rules', async () => {
  // Live: the rules route every call to v2; both snapshot files catch up.
  const first = caller(agent.address);
  await first.rules.apply(rules, { author: 'test' });
  const revision = (await first.rulesInForce('stock')).revision;
  assert.deepEqual([...(await answers(first))], ['v2']);
  await until(async () => {
    const saved = await readFile(join(dir, 'rules.json'), 'utf8').catch(() => '{}');
    return (
      (JSON.parse(saved) as { prefixes?: Record<string, { revision: number }[]> }).prefixes?.['meshlet/rules/stock']?.[0]?.revision ===
      revision
    );
  });
  await until(async () => (await readFile(join(dir, 'registry.json'), 'utf8').catch(() => '')).includes('stock-v2'));
  await first.close();

  await agent.stop();

  // Restarted during the outage (connections refused).
  const refusedLogger = new MemoryLogger();
  const restarted = caller(agent.address, refusedLogger);
  assert.deepEqual([...(await answers(restarted))], ['v2'], 'the route rule of the snapshot is in force');
  assertRulesInForce(restarted);
  assert.ok(refusedLogger.entries.some((e) => e.fields?.code === 'MESHLET_KV_SNAPSHOT'));
  await restarted.close();

  // Restarted against an agent that accepts connections and never answers: the snapshot
  // after snapshotWaitMs (100 ms), rather than the 3 s rule wait and a 31 s query timeout.
  const sockets = new Set<Socket>();
  const silent = createTcpServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const silentLogger = new MemoryLogger();
  const stalled = caller(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, silentLogger);
  assert.deepEqual([...(await answers(stalled))], ['v2']);
  assertRulesInForce(stalled);
  const why = silentLogger.entries.find((e) => e.fields?.code === 'MESHLET_KV_SNAPSHOT')?.fields?.why;
  assert.equal(why, 'consul has not answered within 100 ms', 'the rules came from the snapshot on the configured bound');
  await stalled.close();
  for (const s of sockets) s.destroy();
  silent.close();
});
