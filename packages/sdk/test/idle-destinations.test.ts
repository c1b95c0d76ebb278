// Destinations left idle are released (their registry watch and rule watch end, their state
// is dropped) and followed again on their next call; at most `destinations.max` are followed
// at once. On a ManualClock, against in-memory stores that count the watches open.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import {
  InMemoryKvStore,
  InMemoryRegistry,
  type InstancesListener,
  type KvEntry,
  ManualClock,
  MemoryLogger,
  type Unsubscribe,
} from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, DEFAULT_DESTINATION_IDLE_MS, type Mesh, MeshletError, TooManyDestinationsError } from '../src/index.js';

/** Open watches by service (registry) and by key (rule store). */
class CountingRegistry extends InMemoryRegistry {
  readonly open = new Map<string, number>();
  override watch(service: string, listener: InstancesListener): Unsubscribe {
    const un = super.watch(service, listener);
    this.open.set(service, (this.open.get(service) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.open.set(service, (this.open.get(service) ?? 0) - 1);
      un();
    };
  }
  watching(service: string): number {
    return this.open.get(service) ?? 0;
  }
}

class CountingKv extends InMemoryKvStore {
  readonly open = new Map<string, number>();
  override watch(prefix: string, listener: (entries: readonly KvEntry[]) => unknown): Unsubscribe {
    const un = super.watch(prefix, listener);
    this.open.set(prefix, (this.open.get(prefix) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.open.set(prefix, (this.open.get(prefix) ?? 0) - 1);
      un();
    };
  }
  /** Rule watches open on a key naming `service`. */
  watching(service: string): number {
    let n = 0;
    for (const [key, count] of this.open) if (key.split('/').includes(service)) n += count;
    return n;
  }
}

/** Requests to /hold wait here until the test answers them; any other path is answered at once. */
const held: ServerResponse[] = [];
let server: Awaited<ReturnType<typeof listen>>;
const meshes: Mesh[] = [];
before(async () => {
  server = await listen((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/hold') held.push(res);
    else res.end('ok');
  });
});
after(async () => {
  for (const res of held) res.end('ok');
  for (const m of meshes) await m.close();
  await server.close();
});

/** A mesh on a ManualClock, with counting stores, and `services` registered (one instance each). */
async function world(services: readonly string[], destinations?: { idleMs?: number; max?: number }) {
  const registry = new CountingRegistry();
  const kv = new CountingKv();
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  for (const service of services)
    await registry.register({
      id: `${service}-0`,
      service,
      address: '127.0.0.1',
      port: server.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
  const logger = new MemoryLogger();
  const mesh = createMesh({ service: 'caller', registry, rules: kv, clock, logger, ...(destinations ? { destinations } : {}) });
  meshes.push(mesh);
  /** Both watches of `service` open (1) or both closed (0). */
  const watches = (service: string) => {
    const r = registry.watching(service);
    const k = kv.watching(service);
    assert.equal(r, k, `${service}: as many registry watches (${r}) as rule watches (${k})`);
    return r;
  };
  return { registry, kv, clock, mesh, logger, watches };
}

const call = async (m: Mesh, service: string) => {
  const res = await m.fetch(`http://${service}/`);
  assert.equal(await res.text(), 'ok');
};
/** The call's attempt reached the instance and is held there. */
async function heldCall(m: Mesh, service: string): Promise<{ answer: () => Promise<void> }> {
  const n = held.length;
  const pending = m.fetch(`http://${service}/hold`);
  while (held.length === n) await new Promise((r) => setImmediate(r));
  const res = held[n] as ServerResponse;
  return {
    answer: async () => {
      res.end('ok');
      assert.equal(await (await pending).text(), 'ok');
    },
  };
}
const breakersOf = (m: Mesh, service: string) => m.breakers.snapshot().filter((b) => b.breaker.service === service).length;
/** The idle time and the longest time between two looks for idle destinations. */
const IDLE = DEFAULT_DESTINATION_IDLE_MS;
const LOOK = 60_000;

describe('idle destinations', () => {
  it('releases a destination not called for the idle time (its watches, its breakers), and follows it again on its next call', async () => {
    const { clock, mesh, watches } = await world(['svc-a', 'svc-b']);
    await call(mesh, 'svc-a');
    await call(mesh, 'svc-b');
    assert.equal(watches('svc-a'), 1);
    assert.equal(watches('svc-b'), 1);
    // Outlier detection (the call defaults) made an instance breaker for each.
    assert.equal(breakersOf(mesh, 'svc-a'), 1);
    clock.advance(IDLE / 2);
    await call(mesh, 'svc-a');
    clock.advance(IDLE / 2 + LOOK);
    assert.equal(watches('svc-b'), 0, 'svc-b: idle for the idle time: released');
    assert.equal(breakersOf(mesh, 'svc-b'), 0);
    assert.equal(watches('svc-a'), 1, 'svc-a: called half the idle time ago: still followed');
    assert.equal(breakersOf(mesh, 'svc-a'), 1);
    // Called again: followed again, routed to its instance as on a first call.
    await call(mesh, 'svc-b');
    assert.equal(watches('svc-b'), 1);
    assert.equal(breakersOf(mesh, 'svc-b'), 1);
    clock.advance(IDLE + LOOK);
    assert.equal(watches('svc-a'), 0);
    assert.equal(watches('svc-b'), 0);
    assert.equal(breakersOf(mesh, 'svc-a') + breakersOf(mesh, 'svc-b'), 0);
  });

  it('keeps a destination with an attempt in flight past the idle time; releases it once idle', async () => {
    const { clock, mesh, watches } = await world(['svc-slow']);
    const slow = await heldCall(mesh, 'svc-slow');
    clock.advance(IDLE + LOOK);
    assert.equal(watches('svc-slow'), 1, 'an attempt in flight: not released');
    await slow.answer();
    clock.advance(IDLE + LOOK);
    assert.equal(watches('svc-slow'), 0);
  });

  it('mesh.rulesInForce of a service never called: its rule watch is released too', async () => {
    const { clock, mesh, kv } = await world([]);
    await mesh.rulesInForce('svc-rules');
    assert.equal(kv.watching('svc-rules'), 1);
    clock.advance(IDLE + LOOK);
    assert.equal(kv.watching('svc-rules'), 0);
  });

  it('follows at most `destinations.max` at once: the least recently called is released for a new one', async () => {
    const { clock, mesh, watches } = await world(['svc-1', 'svc-2', 'svc-3'], { max: 2 });
    await call(mesh, 'svc-1');
    clock.advance(1);
    await call(mesh, 'svc-2');
    clock.advance(1);
    await call(mesh, 'svc-1');
    clock.advance(1);
    await call(mesh, 'svc-3');
    assert.deepEqual(
      ['svc-1', 'svc-2', 'svc-3'].map((s) => watches(s)),
      [1, 0, 1],
    );
  });

  it('past the cap with a call in flight to every destination: a new one is refused with MESHLET_TOO_MANY_DESTINATIONS', async () => {
    const { mesh, watches, logger } = await world(['svc-x', 'svc-y'], { max: 1 });
    const x = await heldCall(mesh, 'svc-x');
    await assert.rejects(mesh.fetch('http://svc-y/'), (err: unknown) => {
      assert.ok(err instanceof TooManyDestinationsError);
      assert.equal(err.code, 'MESHLET_TOO_MANY_DESTINATIONS');
      assert.equal(err.service, 'svc-y');
      return true;
    });
    assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_TOO_MANY_DESTINATIONS'));
    assert.equal(watches('svc-y'), 0, 'nothing of the refused destination kept');
    await x.answer();
    // Nothing in flight any more: svc-x makes room.
    await call(mesh, 'svc-y');
    assert.deepEqual([watches('svc-x'), watches('svc-y')], [0, 1]);
  });

  it('refuses a bad destinations option, naming the field', () => {
    for (const [destinations, field] of [
      [{ idleMs: 10 }, 'destinations.idleMs'],
      [{ max: 0 }, 'destinations.max'],
      [{ max: 1.5 }, 'destinations.max'],
      [{ idle: 1000 }, 'destinations.idle'],
    ] as const)
      assert.throws(
        () =>
          createMesh({
            service: 'caller',
            registry: new InMemoryRegistry(),
            rules: new InMemoryKvStore(),
            destinations: destinations as never,
          }),
        (err: unknown) => err instanceof MeshletError && err.code === 'MESHLET_BAD_OPTION' && err.message.includes(field),
      );
  });
});
