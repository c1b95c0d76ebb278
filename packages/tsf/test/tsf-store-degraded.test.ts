// A TsfRuleStore wraps the store that reads Consul: the mesh reads `degraded` and gives its
// logger through it, so a Consul outage under TSF rules shows as meshlet_degraded{what="kv"}
// and the wrapped store's conditions are counted (both stayed with the wrapped store, out of
// the mesh's sight).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Logger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { createMesh, ruleKinds } from 'meshlet';
import { TsfRuleStore } from '../src/index.js';

/** A rule store that can be told it is degraded, and says what logger it was given. */
class FlakyStore extends InMemoryKvStore {
  degraded = false;
  adopted: Logger | undefined;
  adoptLogger(logger: Logger): void {
    this.adopted = logger;
  }
}

it('the mesh reads degraded through a TsfRuleStore and lends its logger to the store it wraps', async (t) => {
  const token = 'a-long-enough-admin-token-0123';
  const inner = new FlakyStore();
  const store = new TsfRuleStore({ kv: inner, identity: { serviceName: 'checkout', namespaceId: 'ns-1' }, kinds: ruleKinds });
  const mesh = createMesh({ service: 'checkout', registry: new InMemoryRegistry(), rules: store, admin: { token } });
  const server = await listen(mesh.httpHandler((_req, res) => res.end('ok')));
  t.after(async () => {
    await mesh.close();
    await server.close();
  });
  await mesh.register({ port: server.port });
  const metrics = async () =>
    (await fetch(`http://127.0.0.1:${server.port}/_meshlet/metrics`, { headers: adminAuthorization(token, server.port) })).text();
  assert.match(await metrics(), /^meshlet_degraded\{what="kv"\} 0$/m);
  inner.degraded = true;
  assert.match(await metrics(), /^meshlet_degraded\{what="kv"\} 1$/m);
  // The wrapped store logs through the mesh: its coded lines are counted.
  inner.adopted?.warn('consul KV query failed', { code: 'MESHLET_KV_DEGRADED' });
  assert.match(await metrics(), /^meshlet_conditions_total\{code="MESHLET_KV_DEGRADED"\} 1$/m);
});
