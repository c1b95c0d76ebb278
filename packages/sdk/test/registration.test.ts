// What register() puts in the registry, on the in-memory registry. Found by a reviewer: the
// app's `metadata` was spread over the keys the mesh writes, so `registered-at`,
// `meshlet-admin`, `apis-hash` and `gRPC_port` given there replaced the registration time
// callers warm up from, the admin path, the catalog's hash and the port mesh.grpc.serve set.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { createMesh, type MeshOptions } from '../src/index.js';
import { MESH_METADATA } from '../src/mesh-metadata.js';

const base = () => ({
  service: 'registering',
  registry: new InMemoryRegistry(),
  rules: new InMemoryKvStore(),
  logger: new MemoryLogger(),
});

it('refuses in the app metadata each key the mesh writes, naming metadata.<key> and what sets it', () => {
  const given: Record<string, RegExp> = {
    version: /createMesh\(\{ version \}\)/,
    namespace: /createMesh\(\{ namespace \}\)/,
    'registered-at': /register\(\)/,
    'meshlet-admin': /admin: \{ path \}/,
    'apis-hash': /catalog/,
    gRPC_port: /mesh\.grpc\.serve/,
  };
  assert.deepEqual(Object.keys(MESH_METADATA).sort(), Object.keys(given).sort(), 'the keys Registration writes');
  for (const [key, source] of Object.entries(given)) {
    assert.throws(
      () => createMesh({ ...base(), metadata: { zone: 'a', [key]: '1' } } as MeshOptions),
      (err: unknown) => {
        const { code, message } = err as { code?: string; message: string };
        return code === 'MESHLET_BAD_OPTION' && message.startsWith(`metadata.${key}:`) && source.test(message);
      },
      key,
    );
  }
});

it('registers the app’s secure and zone, and the mesh’s own keys from what sets them', async () => {
  const registry = new InMemoryRegistry();
  const mesh = createMesh({
    ...base(),
    registry,
    version: '2.1.0',
    namespace: 'prod',
    clock: new ManualClock(1_700_000_000_000),
    metadata: { secure: 'true', zone: 'zone-a', lane: 'blue' },
    admin: { token: 't'.repeat(32), path: '/ops' },
    catalog: { routes: [{ method: 'GET', path: '/orders' }] },
  });
  try {
    const instance = await mesh.register({ port: 18080 });
    const [registered] = await registry.healthyInstances('registering');
    assert.deepEqual(registered?.metadata, instance.metadata);
    const { 'apis-hash': hash, ...rest } = instance.metadata;
    assert.match(hash ?? '', /^[0-9a-f]{16}$/);
    assert.deepEqual(rest, {
      secure: 'true',
      zone: 'zone-a',
      lane: 'blue',
      version: '2.1.0',
      namespace: 'prod',
      'registered-at': '1700000000000',
      'meshlet-admin': '/ops',
    });
  } finally {
    await mesh.close();
  }
});
