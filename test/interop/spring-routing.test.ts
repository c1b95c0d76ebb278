// Node → Spring with two Spring instances: routing by their Consul metadata, and one that
// crashed before Consul noticed ejected by the default outlier detection, then by an
// instance breaker rule.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, type Mesh } from 'meshlet';
import { eventually } from './eventually.js';
import { SPRING_LINES, type SpringLine, type SpringPeer, startSpringPeers } from './spring-peer.js';

// The same suite against each Spring line (Boot 3 and Boot 4 peers), one after the other.
for (const line of SPRING_LINES) describe(`Meshlet routing and breaking over Spring instances — ${line.label}`, () => suite(line));

function suite(line: SpringLine): void {
  let consul: ConsulAgent;
  let peers: SpringPeer[] = [];
  let mesh: Mesh;

  before(
    async () => {
      consul = await startConsulAgent();
      peers = await startSpringPeers([
        // Consul goes on listing the first one as passing for up to 30 s after it crashed (its
        // TTL), while it heartbeats every 3 s (interval-ratio 0.1, Spring's least) so that it
        // passes soon after start: its crash is for the breaker to find. (An HTTP check every
        // 60 s would do the same, but only after a random first delay of up to 60 s.)
        {
          boot: line.boot,
          consulAddress: consul.address,
          name: 'spring-peer',
          instanceId: 'spring-peer-1',
          zone: 'zone-a',
          heartbeat: true,
          heartbeatTtl: '30s',
          heartbeatIntervalRatio: 0.1,
        },
        { boot: line.boot, consulAddress: consul.address, name: 'spring-peer', instanceId: 'spring-peer-2', zone: 'zone-b' },
      ]);
      mesh = createMesh({
        service: 'node-caller',
        registry: new ConsulRegistry({ address: consul.address, waitSeconds: 5, logger: new MemoryLogger() }),
        rules: new ConsulKvStore({ address: consul.address, waitSeconds: 5, logger: new MemoryLogger() }),
        // Round robin, named: the tests count on four calls reaching both instances (the default draws at random).
        route: { loadBalancer: { type: 'roundRobin' } },
        logger: new MemoryLogger(),
      });
      await eventually(
        'both Spring instances passing',
        async () => ((await mesh.registry.healthyInstances('spring-peer')).length === 2 ? true : undefined),
        60_000,
      );
    },
    { timeout: 25 * 60_000 },
  );
  after(async () => {
    await mesh?.close();
    await Promise.all(peers.map((p) => p.stop()));
    await consul?.stop();
  });

  const hello = async () => {
    const res = await mesh.fetch('http://spring-peer/hello');
    assert.equal(res.status, 200);
    return ((await res.json()) as { instanceId: string }).instanceId;
  };

  it('a route rule on the Spring instances’ metadata (zone) sends every call to the matching one', async () => {
    await mesh.rules.apply(
      JSON.stringify({ service: 'spring-peer', route: { rules: [], default: [{ group: { zone: 'zone-b' }, weight: 100 }] } }),
      { author: 'test' },
    );
    await mesh.rulesInForce('spring-peer');
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add(await hello());
    assert.deepEqual([...seen], ['spring-peer-2']);
    await mesh.rules.rollback('spring-peer', { author: 'test' });
    await mesh.rulesInForce('spring-peer');
    const spread = new Set<string>();
    for (let i = 0; i < 4; i++) spread.add(await hello());
    assert.deepEqual([...spread].sort(), ['spring-peer-1', 'spring-peer-2'], 'round robin over both instances again');
  });

  it('a Spring instance that crashed is ejected with no rules (the safe defaults), then by an instance rule; no call fails', async () => {
    // No breaker rules: a refused connection is retried on the other instance, and 5 in a
    // row eject the crashed one (the defaults, README "Safe defaults").
    await peers[0]?.kill();
    const unruled: string[] = [];
    for (let i = 0; i < 20; i++) unruled.push(await hello());
    assert.ok(
      unruled.every((id) => id === 'spring-peer-2'),
      'every call answered by the live instance',
    );
    assert.equal(mesh.breakers.instanceBreakers.isExcluded('spring-peer-1'), true, 'ejected by default outlier detection');
    // An instance rule replaces the default: its breakers start closed and eject on its terms.
    await mesh.rules.apply(
      JSON.stringify({
        service: 'spring-peer',
        breaker: {
          rules: [{ level: 'instance', consecutiveFailures: 2, sleepWindowMs: 60_000, probes: 1, maxEjectionPercent: 50 }],
          retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 1 } },
        },
      }),
      { author: 'test' },
    );
    // The rule reaches the caller by blocking query.
    await mesh.rulesInForce('spring-peer');
    const served: string[] = [];
    for (let i = 0; i < 20; i++) served.push(await hello());
    assert.ok(
      served.every((id) => id === 'spring-peer-2'),
      'every call answered by the live instance',
    );
    assert.equal(mesh.breakers.instanceBreakers.isExcluded('spring-peer-1'), true, 'the crashed instance is ejected');
    assert.equal((await mesh.registry.healthyInstances('spring-peer')).length, 2, 'while Consul still lists it as passing');
  });
}
