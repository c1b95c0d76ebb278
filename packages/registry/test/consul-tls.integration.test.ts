// TLS to a real Consul dev agent serving HTTPS with a test CA (test/fixtures/tls at the root).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MemoryLogger } from '@meshlet/core';
import { ConsulError, ConsulKvStore, ConsulRegistry } from '../src/index.js';
import { type ConsulAgent, startConsulAgent } from '../src/testing/consul-agent.js';

// The fixtures are not compiled: read them from the source tree beside dist/.
const fixture = (name: string) => fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url));
let agent: ConsulAgent;
before(async () => {
  agent = await startConsulAgent({ tls: { caFile: fixture('ca.pem'), certFile: fixture('server.pem'), keyFile: fixture('server.key') } });
});
after(() => agent.stop());

it('registers, discovers and writes KV over HTTPS with the CA given; without it the certificate is refused', async () => {
  const address = agent.httpsAddress ?? '';
  assert.match(address, /^https:\/\/127\.0\.0\.1:\d+$/);
  const logger = new MemoryLogger();
  const tls = { ca: readFileSync(fixture('ca.pem')) };
  const registry = new ConsulRegistry({ address, tls, healthCheck: { type: 'ttl', ttl: '30s' }, logger });
  const untrusting = new ConsulRegistry({ address, tls: {}, healthCheck: { type: 'ttl', ttl: '30s' }, logger });
  try {
    await registry.register({
      id: 'orders-tls',
      service: 'orders',
      address: '127.0.0.1',
      port: 9,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    assert.deepEqual(
      (await registry.healthyInstances('orders')).map((i) => i.id),
      ['orders-tls'],
    );
    const kv = new ConsulKvStore({ address, tls, logger });
    assert.equal(await kv.putAll([{ key: 'tls/doc', value: 'over https', ifRevision: 0 }]), true);
    assert.equal((await kv.get('tls/doc'))?.value, 'over https');
    // The system's CAs do not know the test CA: the client refuses the agent's certificate.
    await assert.rejects(
      untrusting.client.request('GET', '/v1/status/leader'),
      (err: unknown) => err instanceof ConsulError && /unreachable/.test(err.message),
    );
    await registry.deregister('orders-tls');
  } finally {
    await registry.close();
    await untrusting.close();
  }
});
