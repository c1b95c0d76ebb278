// ACL tokens against a real Consul dev agent with ACLs on and default policy deny.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulError, ConsulKvStore, ConsulRegistry } from '../src/index.js';
import { type ConsulAgent, startConsulAgent } from '../src/testing/consul-agent.js';

const TOKEN = 'c6b2f0de-3f3c-4d35-9a3e-7d5e2f5b0a11';
let agent: ConsulAgent;
before(async () => {
  agent = await startConsulAgent({ aclManagementToken: TOKEN });
});
after(() => agent.stop());

const instance = {
  id: 'orders-acl',
  service: 'orders',
  address: '127.0.0.1',
  port: 9,
  tags: [],
  metadata: { version: '1.0.0' },
  health: 'passing' as const,
};
const forbidden = (err: unknown) => err instanceof ConsulError && err.status === 403;

it('with the token, registration, discovery and KV work; without it Consul refuses, and the error says so', async () => {
  const logger = new MemoryLogger();
  const withToken = new ConsulRegistry({ address: agent.address, token: TOKEN, healthCheck: { type: 'ttl', ttl: '30s' }, logger });
  const anonymous = new ConsulRegistry({ address: agent.address, token: '', healthCheck: { type: 'ttl', ttl: '30s' }, logger });
  try {
    await assert.rejects(anonymous.register(instance), forbidden);
    await withToken.register(instance);
    const [found] = await withToken.healthyInstances('orders');
    assert.equal(found?.id, 'orders-acl');

    const kv = new ConsulKvStore({ address: agent.address, token: TOKEN, logger });
    const noKv = new ConsulKvStore({ address: agent.address, token: '', logger });
    assert.equal(await kv.put('meshlet/rules/orders', '{}'), true);
    assert.equal((await kv.get('meshlet/rules/orders'))?.value, '{}');
    await assert.rejects(noKv.put('meshlet/rules/orders', 'x'), forbidden);
    await assert.rejects(noKv.putAll([{ key: 'meshlet/rules/orders', value: 'x' }]), forbidden);
    assert.equal((await kv.get('meshlet/rules/orders'))?.value, '{}', 'nothing written without the token');
    await withToken.deregister('orders-acl');
  } finally {
    await withToken.close();
    await anonymous.close();
  }
});
