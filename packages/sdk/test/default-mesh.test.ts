// The module-level fetch, outside a request, sends through the newest mesh still open: when
// the newest closes, the one created before it takes over (it went to none, and the fetch
// then failed as if no mesh existed while one was open).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, fetch as meshFetch } from '../src/index.js';

it('module-level fetch: the older mesh serves it once the newer one is closed', async (t) => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const backend = await listen((_req, res) => res.end('ok'));
  t.after(() => backend.close());
  await registry.register({
    id: 'b1',
    service: 'back',
    address: '127.0.0.1',
    port: backend.port,
    tags: [],
    metadata: {},
    health: 'passing',
  });
  const older = createMesh({ service: 'older', registry, rules, logger: new MemoryLogger() });
  const newer = createMesh({ service: 'newer', registry, rules, logger: new MemoryLogger() });
  t.after(() => older.close());
  await newer.close();
  const res = await meshFetch('http://back/x');
  assert.equal(await res.text(), 'ok');
  await older.close();
  await assert.rejects(meshFetch('http://back/x'), (err: Error & { code?: string }) => /mesh/i.test(err.message));
});
