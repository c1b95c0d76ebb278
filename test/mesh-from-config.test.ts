// A twelve-factor service joins the estate with environment variables alone: who it is
// and where Consul is from the environment, everything else from Consul KV in Spring's
// layout (with an ENC(...) mesh key), on a real Consul agent with ACLs on.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encryptValue, generateKey } from '@meshlet/config';
import { MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMeshFromConfig } from 'meshlet';

describe('createMeshFromConfig on Consul', () => {
  const token = 'test-management-token';
  let agent: ConsulAgent;
  let echo: TestServer;
  let seen: IncomingHttpHeaders | undefined;

  before(async () => {
    agent = await startConsulAgent({ aclManagementToken: token });
    echo = await listen((req, res) => {
      seen = req.headers;
      res.end('ok');
    });
    const registry = new ConsulRegistry({ address: agent.address, token, logger: new MemoryLogger() });
    await registry.register({
      id: 'echo-1',
      service: 'echo',
      address: '127.0.0.1',
      port: echo.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
  });
  after(async () => {
    await echo.close();
    await agent.stop();
  });

  it('joins with MESHLET_SERVICE, the Consul address and token, and an encryption key; the rest comes from KV, the mesh keys hot', async () => {
    const key = generateKey();
    const kv = new ConsulKvStore({ address: agent.address, token, logger: new MemoryLogger() });
    await kv.put('config/application/data', 'meshlet:\n  namespace: estate\n  metadata:\n    zone: zone-a\n');
    await kv.put(
      'config/orders/data',
      `meshlet:\n  version: 3.2.1\n  metadata:\n    zone: zone-c\n  auth:\n    keys:\n      - id: k1\n        key: ${encryptValue(Buffer.alloc(32, 9).toString('base64'), key, 'meshlet.auth.keys[0].key')}\n`,
    );
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: {
        MESHLET_SERVICE: 'orders',
        MESHLET_PORT: '18080',
        MESHLET_CONSUL_ADDRESS: agent.address,
        MESHLET_CONSUL_TOKEN: token,
        MESHLET_CONFIG_FORMAT: 'yaml',
        MESHLET_ENCRYPT_KEY: key,
      },
    });
    try {
      assert.deepEqual([mesh.version, mesh.namespace], ['3.2.1', 'estate'], 'from config/orders/data over config/application/data');
      // Registered in Consul with the metadata from KV.
      await mesh.register();
      const services = await fetch(`${agent.address}/v1/agent/services`, { headers: { 'x-consul-token': token } });
      const orders = Object.values((await services.json()) as Record<string, { Service: string; Meta: Record<string, string> }>).find(
        (s) => s.Service === 'orders',
      );
      assert.equal(orders?.Meta.zone, 'zone-c');
      assert.equal(orders?.Meta.version, '3.2.1');
      // Discovery through Consul, and the ENC(...) mesh key signs the caller's identity.
      const res = await mesh.fetch('http://echo/hello');
      assert.equal(await res.text(), 'ok');
      assert.match(String(seen?.['x-meshlet-caller']), /version=3\.2\.1/);
      assert.ok(seen?.['x-meshlet-identity'], 'a signed identity: auth keys came from KV');
      assert.match(String(seen?.['x-meshlet-identity']), /\|k1\|/);
      // Hot: a new key in KV (the rollover's first step) signs the next calls.
      await kv.put(
        'config/orders/data',
        `meshlet:\n  version: 3.2.1\n  metadata:\n    zone: zone-c\n  auth:\n    keys:\n      - id: k2\n        key: ${encryptValue(Buffer.alloc(32, 8).toString('base64'), key, 'meshlet.auth.keys[0].key')}\n      - id: k1\n        key: ${encryptValue(Buffer.alloc(32, 9).toString('base64'), key, 'meshlet.auth.keys[1].key')}\n`,
      );
      while (!/\|k2\|/.test(String(seen?.['x-meshlet-identity']))) await (await mesh.fetch('http://echo/hello')).text();
      // Rules live in Consul KV too.
      await mesh.rules.apply(JSON.stringify({ service: 'echo', breaker: { timeoutMs: 5000 } }), { author: 'test' });
      assert.ok(await kv.get('meshlet/rules/echo'));
    } finally {
      await mesh.close();
    }
  });

  it("puts the resource attributes of Spring's shared document (management.opentelemetry.resource-attributes) on its spans", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-kv-resource-'));
    const kv = new ConsulKvStore({ address: agent.address, token, logger: new MemoryLogger() });
    await kv.put(
      'config/application/data',
      'management:\n  opentelemetry:\n    resource-attributes:\n      "[deployment.environment]": prod\n      region: eu-1\n',
    );
    await kv.put('config/payments/data', `meshlet:\n  tracing:\n    log:\n      path: ${join(dir, 'spans.jsonl')}\n`);
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: {
        MESHLET_SERVICE: 'payments',
        MESHLET_CONSUL_ADDRESS: agent.address,
        MESHLET_CONSUL_TOKEN: token,
        MESHLET_CONFIG_FORMAT: 'yaml',
      },
    });
    try {
      assert.ok(mesh.tracing, 'tracing on: a trace log is configured');
      await (await mesh.fetch('http://echo/hello')).text();
      await mesh.tracing.forceFlush();
      const line = JSON.parse((await readFile(join(dir, 'spans.jsonl'), 'utf8')).split('\n')[0] as string) as {
        resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] } }[];
      };
      const attrs = Object.fromEntries(line.resourceSpans[0]?.resource.attributes.map((a) => [a.key, a.value.stringValue]) ?? []);
      assert.equal(attrs['deployment.environment'], 'prod');
      assert.equal(attrs.region, 'eu-1');
      assert.equal(attrs['service.name'], 'payments');
    } finally {
      await mesh.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
