// createMeshFromConfig builds the Consul store and registry: their per-answer codes (a bad
// X-Consul-Index, from anyone who sits between the app and Consul) reach the mesh's logger
// one by one and each is counted, as with a store the app builds without a logger. (Built
// with a logger of their own, they throttled first: the mesh counted one a minute.)
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MemoryLogger, type ThrottledLogger } from '@meshlet/core';
import { listen, waitFor } from '@meshlet/core/testing';
import { createMeshFromConfig } from '../src/index.js';
import { meshInternals } from '../src/mesh-internals.js';

it('a Consul that answers every query with a bad index: the mesh counts each answer, not one a minute', async (t) => {
  const consul = await listen((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-consul-index', 'not-a-number');
    res.end('[]');
  });
  t.after(() => consul.close());
  const mesh = await createMeshFromConfig({
    logger: new MemoryLogger(),
    env: { MESHLET_SERVICE: 'orders', MESHLET_CONSUL_ADDRESS: `http://127.0.0.1:${consul.port}` },
  });
  t.after(() => mesh.close());
  // What meshlet_conditions_total reads: the mesh's throttled logger's counts.
  const counted = () => (meshInternals(mesh).logger as ThrottledLogger).counts.get('MESHLET_CONSUL_BAD_INDEX') ?? 0;
  await waitFor(() => counted() >= 5, 'the mesh counting each bad answer (5 of them)');
  assert.ok(counted() >= 5);
});
