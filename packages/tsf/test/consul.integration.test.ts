// Against a real Consul dev agent: TSF YAML written under TSF's keys governs real calls.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulRegistry } from '@meshlet/registry';
import { createMesh, ruleKinds } from 'meshlet';
import { TsfRuleStore, tsfMetadata, tsfRuleKey } from '../src/index.js';
import { consulEstate, listen, NS, seeded, until } from './consul-helpers.js';
import { fixture } from './fixtures.js';

describe('TSF rules in a real Consul govern Meshlet calls', () => {
  const estate = consulEstate();
  const { meshes, servers } = estate;
  const stores = new Map<string, TsfRuleStore>();

  const startUserService = async (group: string) => {
    const logger = new MemoryLogger();
    const store = new TsfRuleStore({
      kv: estate.kv,
      identity: { serviceName: 'user-service', namespaceId: NS, groupId: group },
      kinds: ruleKinds,
      logger,
    });
    stores.set(group, store);
    const mesh = createMesh({
      service: 'user-service',
      instanceId: `user-service-${group}`,
      registry: new ConsulRegistry({ address: estate.agent.address, waitSeconds: 2, logger }),
      rules: store,
      metadata: tsfMetadata({ applicationId: 'application-u1', groupId: group, namespaceId: NS, progVersion: '1.0' }),
      logger,
    });
    meshes.push(mesh);
    const { server, port } = await listen(mesh.httpHandler((_req, res) => res.end(group)));
    servers.push(server);
    await mesh.register({ port });
    return { mesh, port, store };
  };

  it('registers TSF Meta keys, a rate limit on destination.interface answers 429, a route splits 80/20 by TSF_GROUP_ID', async () => {
    await estate.kv.put(tsfRuleKey.ratelimit(NS, 'user-service'), fixture('ratelimit.yaml'));
    const a = await startUserService('group-a');
    await startUserService('group-b');

    // Registered as TSF registers: the route destinations below select on these keys.
    const registry = new ConsulRegistry({ address: estate.agent.address, waitSeconds: 2, logger: new MemoryLogger() });
    const services = (await registry.client.request<Record<string, { Meta: Record<string, string> }>>('GET', '/v1/agent/services')).body;
    assert.equal(services['user-service-group-a']?.Meta.TSF_GROUP_ID, 'group-a');
    assert.equal(services['user-service-group-a']?.Meta.TSF_NAMESPACE_ID, NS);
    assert.equal(services['user-service-group-a']?.Meta.protocol, 'http');

    // Rate limit: quota 2 per 60 s on /limited, STANDALONE, read from ratelimit/<ns>/<svc>/data.
    const limitKey = tsfRuleKey.ratelimit(NS, 'user-service');
    await until('the rate limit in force', () => (a.store.status.find((s) => s.key === limitKey)?.inForce ?? 0) > 0);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(`http://127.0.0.1:${a.port}/limited`)).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    assert.equal((await fetch(`http://127.0.0.1:${a.port}/other`)).status, 200);

    // Route: written once under route/<ns>/user-service/data, read by the caller "orders".
    await estate.kv.put(tsfRuleKey.route(NS, 'user-service'), fixture('route.yaml'));
    const logger = new MemoryLogger();
    const ordersStore = new TsfRuleStore({ kv: estate.kv, identity: { serviceName: 'orders', namespaceId: NS }, kinds: ruleKinds, logger });
    const orders = createMesh({
      service: 'orders',
      registry: new ConsulRegistry({ address: estate.agent.address, waitSeconds: 2, logger }),
      rules: ordersStore,
      route: { random: seeded(13) },
      logger,
    });
    meshes.push(orders);
    const first = await orders.fetch('http://user-service/who');
    assert.equal(first.status, 200);
    const routeKey = tsfRuleKey.route(NS, 'user-service');
    await until('the route in force', () => (ordersStore.status.find((s) => s.key === routeKey)?.inForce ?? 0) > 0);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 200; i++) {
      const body = await (await orders.fetch('http://user-service/who')).text();
      counts[body] = (counts[body] ?? 0) + 1;
    }
    assert.equal((counts['group-a'] ?? 0) + (counts['group-b'] ?? 0), 200);
    assert.ok((counts['group-a'] ?? 0) >= 140 && (counts['group-a'] ?? 0) <= 180, JSON.stringify(counts));
    assert.ok((counts['group-b'] ?? 0) >= 20, JSON.stringify(counts));
  });
  it('nearby affinity from affinity/<ns>/data keeps calls in the caller’s zone, and lets them spread when off', async () => {
    // Its own namespace, so the switch does not touch the route test above.
    const GEO = 'namespace-geo';
    for (const zone of ['zone-1', 'zone-2']) {
      const logger = new MemoryLogger();
      const mesh = createMesh({
        service: 'geo-service',
        instanceId: `geo-service-${zone}`,
        registry: new ConsulRegistry({ address: estate.agent.address, waitSeconds: 2, logger }),
        metadata: tsfMetadata({ applicationId: 'application-g1', groupId: `group-${zone}`, namespaceId: GEO, zone }),
        logger,
      });
      meshes.push(mesh);
      const { server, port } = await listen(mesh.httpHandler((_req, res) => res.end(zone)));
      servers.push(server);
      await mesh.register({ port });
    }
    const affinityKey = tsfRuleKey.affinity(GEO);
    await estate.kv.put(affinityKey, `namespaceId: ${GEO}\naffinity: false\n`);
    const logger = new MemoryLogger();
    const store = new TsfRuleStore({
      kv: estate.kv,
      identity: { serviceName: 'geo-client', namespaceId: NS },
      namespaceOf: (service) => (service === 'geo-service' ? GEO : NS),
      kinds: ruleKinds,
      logger,
    });
    const client = createMesh({
      service: 'geo-client',
      registry: new ConsulRegistry({ address: estate.agent.address, waitSeconds: 2, logger }),
      rules: store,
      metadata: { zone: 'zone-1' },
      route: { random: seeded(7) },
      logger,
    });
    meshes.push(client);
    const zones = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) seen.add(await (await client.fetch('http://geo-service/where')).text());
      return [...seen].sort();
    };
    await client.fetch('http://geo-service/where');
    await until('the affinity in force', () => (store.status.find((s) => s.key === affinityKey)?.inForce ?? 0) > 0);
    assert.deepEqual(await zones(), ['zone-1', 'zone-2']);
    // Read before the write: the store may apply the change before the next line runs.
    const before = store.status.find((s) => s.key === affinityKey)?.inForce ?? 0;
    await estate.kv.put(affinityKey, fixture('affinity.yaml').replace('namespace-n1', GEO));
    await until('the new affinity in force', () => (store.status.find((s) => s.key === affinityKey)?.inForce ?? 0) > before);
    assert.deepEqual(await zones(), ['zone-1']);
  });
});
