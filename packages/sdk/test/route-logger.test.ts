// A route.logger of the app's own gets the router's per-call codes throttled, as the mesh's
// logger would: a rule whose group has no instance wrote a line per call to it.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh } from '../src/index.js';

it('route.logger: MESHLET_ROUTE_GROUP_EMPTY is written once per interval, not once per call', async (t) => {
  const server = await listen((_req, res) => res.end('ok'));
  t.after(() => server.close());
  const registry = new InMemoryRegistry();
  await registry.register({
    id: 'u1',
    service: 'users',
    address: '127.0.0.1',
    port: server.port,
    tags: [],
    metadata: { version: 'v1' },
    health: 'passing',
  });
  const routeLogger = new MemoryLogger();
  const mesh = createMesh({
    service: 'gw',
    registry,
    rules: new InMemoryKvStore(),
    logger: new MemoryLogger(),
    clock: new ManualClock(1e6),
    route: { logger: routeLogger },
  });
  t.after(() => mesh.close());
  const to = (version: string) => [{ group: { version }, weight: 100 }];
  await mesh.rules.apply(
    JSON.stringify({
      service: 'users',
      route: { rules: [{ name: 'gray', priority: 1, when: [], destinations: to('v2') }], default: to('v1') },
    }),
    { author: 't' },
  );
  await mesh.rulesInForce('users');
  for (let i = 0; i < 20; i++) await (await mesh.fetch('http://users/x')).text();
  assert.equal(routeLogger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_GROUP_EMPTY').length, 1);
});
