// A too-short admin token is refused by createMesh before anything starts: no registry
// watch left open, no component given the mesh's logger (it was refused when the admin
// endpoint was made, after the watches had started).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Unsubscribe } from '@meshlet/core';
import { AdminTokenError, createMesh } from '../src/index.js';

class CountingRegistry extends InMemoryRegistry {
  open = 0;
  adopted = 0;
  override watchServices(listener: (services: readonly string[]) => void): Unsubscribe {
    this.open++;
    const off = super.watchServices(listener);
    return () => {
      this.open--;
      off();
    };
  }
  adoptLogger(): void {
    this.adopted++;
  }
}

it('createMesh refuses a short admin token before it watches the registry or lends its logger', () => {
  const registry = new CountingRegistry();
  for (const token of ['short', undefined]) {
    assert.throws(
      () => createMesh({ service: 'a', registry, rules: new InMemoryKvStore(), admin: { token } as { token: string } }),
      AdminTokenError,
    );
  }
  assert.deepEqual({ open: registry.open, adopted: registry.adopted }, { open: 0, adopted: 0 });
});
