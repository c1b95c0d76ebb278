// A catalog too large for Consul's value limit is not published: the registration goes on
// without its hash, and the warning carries MESHLET_CATALOG_TOO_LARGE, not the store's answer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh } from '../src/index.js';

describe('publishing the API catalog', () => {
  it('registers without apis-hash, logging MESHLET_CATALOG_TOO_LARGE, a catalog over the limit in bytes', async () => {
    // 2,000 summaries of 80 CJK characters: 250,940 characters, 570,940 bytes of UTF-8.
    const routes = Array.from({ length: 2000 }, (_, i) => ({ method: 'GET', path: `/a${i}`, summary: '概'.repeat(80) }));
    const registry = new InMemoryRegistry();
    const logger = new MemoryLogger();
    const mesh = createMesh({ service: 'cjk', port: 18_301, registry, rules: new InMemoryKvStore(), catalog: { routes }, logger });
    try {
      const instance = await mesh.register();
      assert.equal(instance.metadata['apis-hash'], undefined);
      const warn = logger.entries.find((e) => e.message.startsWith('API catalog not published'));
      assert.equal(warn?.fields?.code, 'MESHLET_CATALOG_TOO_LARGE');
    } finally {
      await mesh.close();
    }
  });
});
