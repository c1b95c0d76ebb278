// What register() puts in the registry and when the mesh takes the instance as its own, on
// the in-memory registry. Found by a reviewer: the app's `metadata` was spread over the keys
// the mesh writes, so `registered-at`, `meshlet-admin`, `apis-hash` and `gRPC_port` given
// there replaced the registration time callers warm up from, the admin path, the catalog's
// hash and the port mesh.grpc.serve set; and the instance was recorded before the registry
// took it, so a refused registration named an instance the registry did not have, and a
// second register() on another port left the first registered after close().
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Instance, ManualClock, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
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
  // `registered-at` is wall time: here the wall clock was stepped an hour on since the start.
  const clock = new ManualClock(1_700_000_000_000 - 3_600_000);
  clock.stepWall(3_600_000);
  const mesh = createMesh({
    ...base(),
    registry,
    version: '2.1.0',
    namespace: 'prod',
    clock,
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

/** An in-memory registry that refuses the ports in `refused`, and holds a registration of a port in `gated` until `open()`. */
class PickyRegistry extends InMemoryRegistry {
  readonly refused = new Set<number>();
  readonly gated = new Map<number, { started: Promise<void>; open: () => void; arrived: () => void; gate: Promise<void> }>();
  readonly deregistered: string[] = [];

  gate(port: number): { started: Promise<void>; open: () => void } {
    let open!: () => void;
    let arrived!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const started = new Promise<void>((r) => {
      arrived = r;
    });
    this.gated.set(port, { started, open, arrived, gate });
    return { started, open };
  }

  override async register(instance: Instance): Promise<void> {
    const gated = this.gated.get(instance.port);
    if (gated) {
      gated.arrived();
      await gated.gate;
    }
    if (this.refused.has(instance.port)) throw new Error(`HTTP 400: port ${instance.port} refused`);
    await super.register(instance);
  }

  override async deregister(id: string): Promise<void> {
    this.deregistered.push(id);
    await super.deregister(id);
  }

  async ids(service: string): Promise<string[]> {
    return (await this.healthyInstances(service)).map((i) => i.id).sort();
  }
}

it('a registration the registry refuses names no instance: not mesh.instance, not the caller header, nothing to deregister', async () => {
  const registry = new PickyRegistry();
  registry.refused.add(18081);
  const logger = new MemoryLogger();
  const mesh = createMesh({ ...base(), registry, logger });
  const headers: string[] = [];
  const upstream = await listen((req, res) => {
    headers.push(String(req.headers['x-meshlet-caller']));
    res.end('ok');
  });
  try {
    await registry.register({
      id: 'up-1',
      service: 'up',
      address: '127.0.0.1',
      port: upstream.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    await assert.rejects(mesh.register({ port: 18081 }), /port 18081 refused/);
    assert.equal(mesh.instance?.id, undefined);
    await (await mesh.fetch('http://up/')).text();
    assert.doesNotMatch(headers[0] ?? '', /instance/, 'the caller header names no instance');

    // Registered, then refused on another port: the first stays this process's instance.
    await mesh.register({ port: 18080 });
    await assert.rejects(mesh.register({ port: 18081 }), /refused/);
    assert.equal(mesh.instance?.id, 'registering-18080');
    await (await mesh.fetch('http://up/')).text();
    assert.match(headers[1] ?? '', /instance=registering-18080/);
  } finally {
    await mesh.close();
    await upstream.close();
  }
  assert.deepEqual(registry.deregistered, ['registering-18080']);
  assert.deepEqual(await registry.ids('registering'), []);
  assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_DEREGISTER_FAILED').length, 0);
});

it('a register() on another port replaces the instance: the one before is deregistered, close() leaves none', async () => {
  const registry = new PickyRegistry();
  const mesh = createMesh({ ...base(), registry });
  await mesh.register({ port: 18082 });
  await mesh.register({ port: 18083 });
  assert.deepEqual(await registry.ids('registering'), ['registering-18083']);
  assert.equal(mesh.instance?.id, 'registering-18083');
  await mesh.register({ port: 18083 });
  assert.deepEqual(registry.deregistered, ['registering-18082'], 'the same id again replaces nothing');
  await mesh.close();
  assert.deepEqual(await registry.ids('registering'), []);
});

it('two register() calls at once run in the order asked: the later one is left registered, whichever the registry answers first', async () => {
  const registry = new PickyRegistry();
  const mesh = createMesh({ ...base(), registry });
  const slow = registry.gate(18084);
  const first = mesh.register({ port: 18084 });
  const second = mesh.register({ port: 18085 });
  await slow.started;
  slow.open();
  await Promise.all([first, second]);
  assert.deepEqual(await registry.ids('registering'), ['registering-18085']);
  assert.equal(mesh.instance?.id, 'registering-18085');
  await mesh.close();
  assert.deepEqual(await registry.ids('registering'), []);
});
