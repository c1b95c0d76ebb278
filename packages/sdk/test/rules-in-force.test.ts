// mesh.rulesInForce: waiting until this process's watch of the rule store has caught up.
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type KvEntry, type KvStore, MemoryLogger } from '@meshlet/core';
import { createMesh } from '../src/index.js';

/** A rule store whose watches hear nothing while `held`, then the latest state on release. */
function laggingStore() {
  const inner = new InMemoryKvStore();
  const pending = new Map<(entries: readonly KvEntry[]) => void, readonly KvEntry[]>();
  let held = false;
  const store: KvStore = {
    get: (k) => inner.get(k),
    list: (p) => inner.list(p),
    put: (k, v, o) => inner.put(k, v, o),
    delete: (k, o) => inner.delete(k, o),
    putAll: (w) => inner.putAll(w),
    watch: (prefix, listener) =>
      inner.watch(prefix, (entries) => {
        if (held) pending.set(listener, entries);
        else listener(entries);
      }),
  };
  return {
    store,
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      for (const [listener, entries] of pending) listener(entries);
      pending.clear();
    },
  };
}

const doc = (weight: number) =>
  JSON.stringify({
    service: 'orders',
    route: {
      rules: [],
      default: [
        { group: { version: '1' }, weight },
        { group: { version: '2' }, weight: 100 - weight },
      ],
    },
  });

const lagging = laggingStore();
const mesh = createMesh({ service: 'caller', registry: new InMemoryRegistry(), rules: lagging.store, logger: new MemoryLogger() });
after(() => mesh.close());

it('waits for the applied rules, and for a rollback to none', async () => {
  lagging.hold();
  await mesh.rules.apply(doc(20), { author: 't' });
  let settled = false;
  const inForce = mesh.rulesInForce('orders').then((s) => {
    settled = true;
    return s;
  });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(settled, false, 'not before the watch has the document');
  lagging.release();
  const status = await inForce;
  assert.equal(status.revision, (await mesh.rules.current('orders')).revision);

  lagging.hold();
  await mesh.rules.rollback('orders', { author: 't' });
  const none = mesh.rulesInForce('orders');
  lagging.release();
  assert.equal((await none).revision, 0);
});

it('rejects, naming the field, when this process rejected the document in the store', async () => {
  await lagging.store.put('meshlet/rules/orders', '{"service":"orders","route":{"rules":[],"default":[{"weight":-1}]}}');
  await assert.rejects(mesh.rulesInForce('orders'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'MESHLET_RULES_REJECTED');
    assert.match(err.message, /route\.default\[0\]/);
    return true;
  });
});

it('gives up after timeoutMs when the watch never catches up', async () => {
  lagging.hold();
  await mesh.rules.apply(doc(30), { author: 't' });
  await assert.rejects(mesh.rulesInForce('orders', { timeoutMs: 50 }), { code: 'MESHLET_RULES_NOT_IN_FORCE' });
  lagging.release();
  await mesh.rulesInForce('orders');
});

it('refuses a name that is not a service, and any call once the mesh is closed', async () => {
  await assert.rejects(mesh.rulesInForce('not a service!'), { code: 'MESHLET_BAD_OPTION' });
  const other = createMesh({
    service: 'other',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    logger: new MemoryLogger(),
  });
  await other.close();
  await assert.rejects(other.rulesInForce('orders'), { code: 'MESHLET_CLOSED' });
});
