// A route.logger of the app's own gets the router's per-call codes throttled, as the mesh's
// logger would: a rule whose group has no instance wrote a line per call to it. Its entries
// are counted with the mesh's in meshlet_conditions_total (they were counted nowhere).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { createMesh } from '../src/index.js';

const TOKEN = 'route-logger-test-admin-token-0123';

it('route.logger: MESHLET_ROUTE_GROUP_EMPTY is written once per interval, not once per call, and every call counted in meshlet_conditions_total', async (t) => {
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
    admin: { token: TOKEN },
  });
  t.after(() => mesh.close());
  const app = await listen(mesh.httpHandler((_req, res) => res.end('app')));
  t.after(() => app.close());
  await mesh.register({ port: app.port });
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
  const res = await fetch(`http://127.0.0.1:${app.port}/_meshlet/metrics`, { headers: adminAuthorization(TOKEN, app.port) });
  assert.equal(res.status, 200);
  assert.match(await res.text(), /^meshlet_conditions_total\{code="MESHLET_ROUTE_GROUP_EMPTY"\} 20$/m);
});
