// Config and the API catalog on a real Consul agent (issue 7's config, issue 9's catalog).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createCatalog, listCatalogs, publishCatalog, readCatalog } from '@meshlet/auth';
import { type ConfigChangeEvent, createConfig, encryptValue } from '@meshlet/config';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';

describe('config and catalog on Consul KV', () => {
  let agent: ConsulAgent;
  let kv: ConsulKvStore;
  before(async () => {
    agent = await startConsulAgent();
    kv = new ConsulKvStore({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
  });
  after(() => agent.stop());

  it('reads Spring Cloud Consul Config’s layout with precedence, hot reload, encrypted values, and keeps the last good values', async () => {
    const key = randomBytes(32);
    await kv.put('config/application/data', 'a: shared\nb: shared\n');
    await kv.put('config/orders,dev/data', `b: mine\npw: ${encryptValue('s3cret', key, 'pw')}\n`);
    const logger = new MemoryLogger();
    const config = await createConfig({ kv, service: 'orders', profiles: ['dev'], format: 'yaml', keys: [key], env: {}, logger });
    assert.deepEqual([config.get('a'), config.get('b'), config.get('pw')], ['shared', 'mine', 's3cret']);

    const changed = new Promise<ConfigChangeEvent['changes']>((resolve) => {
      const off = config.onChange((e) => {
        off();
        resolve(e.changes);
      });
    });
    await kv.put('config/orders,dev/data', 'b: newer\n');
    const changes = await changed;
    assert.equal(config.get('b'), 'newer');
    assert.ok(changes.some((c) => c.key === 'b'));
    const pw = changes.find((c) => c.key === 'pw');
    assert.ok(pw, 'the removed secret is reported');
    assert.notEqual(pw.oldValue, 's3cret', 'secrets are masked in change events');

    const rejected = config.status.rejectedDocuments;
    await kv.put('config/orders,dev/data', 'b: [');
    const deadline = Date.now() + 30_000;
    while (config.status.rejectedDocuments === rejected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(config.status.rejectedDocuments, rejected + 1);
    assert.equal(config.get('b'), 'newer', 'bad YAML keeps the last good values');
    config.close();
  });

  it('publishes a service’s API catalog and reads it back', async () => {
    const catalog = createCatalog([
      { method: 'GET', path: '/users/{id}', summary: 'one user' },
      { method: 'POST', path: '/users' },
    ]);
    const hash = await publishCatalog(kv, 'users', catalog);
    assert.equal(hash, catalog.hash);
    const back = await readCatalog(kv, 'users');
    assert.deepEqual(back?.apis.map((a) => `${a.method} ${a.path}`).sort(), ['GET /users/{id}', 'POST /users']);
    const all = await listCatalogs(kv);
    assert.deepEqual(
      all.map((c) => c.service),
      ['users'],
    );
  });
});
