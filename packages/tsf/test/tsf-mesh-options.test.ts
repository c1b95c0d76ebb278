import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh, ruleKinds } from 'meshlet';
import { TsfMetaKey, tsfMeshOptions, tsfRuleKey } from '../src/index.js';
import { fixture } from './fixtures.js';

it('tsfMeshOptions: one identity names the rule keys, the registration and the tsf-metadata header', async () => {
  const kv = new InMemoryKvStore();
  const registry = new InMemoryRegistry();
  const tsf = tsfMeshOptions({
    kv,
    kinds: ruleKinds,
    serviceName: 'orders',
    namespaceId: 'namespace-n1',
    groupId: 'group-o1',
    applicationId: 'application-o1',
    progVersion: '1.0',
    logger: new MemoryLogger(),
  });
  assert.equal(tsf.service, 'orders');
  assert.equal(tsf.namespace, 'namespace-n1');
  assert.equal(tsf.metadata[TsfMetaKey.groupId], 'group-o1');
  assert.equal(tsf.metadata[TsfMetaKey.progVersion], '1.0');
  assert.deepEqual(tsf.route, { nearby: { enabled: false } }, 'nearby as TSF: off unless an affinity key turns it on');

  // TSF's own key for a service this process calls shows up as its Meshlet document.
  await kv.put(tsfRuleKey.route('namespace-n1', 'user-service'), fixture('route.yaml'));
  const converted = await tsf.rules.get('meshlet/rules/user-service');
  assert.match(converted?.value ?? '', /"route"/);

  // The header a called service's authority rules match on names this instance.
  let seen: string | undefined;
  const down = createServer((req, res) => {
    seen = req.headers['tsf-metadata'] as string | undefined;
    res.end('ok');
  }).listen(0, '127.0.0.1');
  await new Promise((r) => down.once('listening', r));
  const { port } = down.address() as { port: number };
  await registry.register({ id: 'ledger-1', service: 'ledger', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
  const mesh = createMesh({ ...tsf, registry, logger: new MemoryLogger() });
  try {
    assert.equal((await mesh.fetch('http://ledger/entries')).status, 200);
    const metadata = JSON.parse(decodeURIComponent(seen ?? '{}')) as Record<string, string>;
    assert.deepEqual([metadata.sn, metadata.gi, metadata.ni, metadata.ai], ['orders', 'group-o1', 'namespace-n1', 'application-o1']);
  } finally {
    await mesh.close();
    down.close();
  }
});

it('tsfMeshOptions refuses an empty TSF id, naming it', () => {
  assert.throws(
    () =>
      tsfMeshOptions({ kv: new InMemoryKvStore(), serviceName: 'orders', namespaceId: 'namespace-n1', groupId: '', applicationId: 'a' }),
    /groupId must be the TSF id/,
  );
});
