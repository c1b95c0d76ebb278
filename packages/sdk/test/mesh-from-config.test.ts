// createMeshFromConfig from environment variables and a local file (Consul KV: test/mesh-from-config.test.ts).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encryptValue, generateKey } from '@meshlet/config';
import { MemoryLogger, MeshletError } from '@meshlet/core';
import { createMeshFromConfig } from '../src/index.js';

const meshKeyBase64 = Buffer.alloc(32, 3).toString('base64');

describe('createMeshFromConfig without Consul', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('takes every option from environment variables alone', async () => {
    const key = generateKey();
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: {
        MESHLET_SERVICE: 'orders',
        MESHLET_VERSION: '2.1.0',
        MESHLET_NAMESPACE: 'prod',
        MESHLET_PORT: '8080',
        MESHLET_METADATA_ZONE: 'zone-b',
        MESHLET_ENCRYPT_KEY: key,
        MESHLET_AUTH_KEYS_0_ID: 'k1',
        MESHLET_AUTH_KEYS_0_KEY: encryptValue(meshKeyBase64, key),
        MESHLET_HEALTH_PATH: '/healthz',
      },
    });
    try {
      assert.deepEqual([mesh.service, mesh.version, mesh.namespace], ['orders', '2.1.0', 'prod']);
      const instance = await mesh.register();
      assert.equal(instance.port, 8080);
      assert.equal(instance.metadata.zone, 'zone-b');
      assert.equal(mesh.config.isSecret('meshlet.auth.keys[0].key'), true, 'the ENC(...) key is a secret');
    } finally {
      await mesh.close();
    }
  });

  it('reads a local file (MESHLET_CONFIG_FILE); the environment wins over it', async () => {
    const file = join(dir, 'meshlet.yml');
    await writeFile(file, 'meshlet:\n  service: billing\n  version: 1.0.0\n  metadata:\n    zone: zone-a\n    lane: blue\n');
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: { MESHLET_CONFIG_FILE: file, MESHLET_VERSION: '1.0.1', MESHLET_PORT: '9090' },
    });
    try {
      assert.deepEqual([mesh.service, mesh.version], ['billing', '1.0.1']);
      const instance = await mesh.register();
      assert.deepEqual([instance.metadata.zone, instance.metadata.lane], ['zone-a', 'blue']);
    } finally {
      await mesh.close();
    }
  });

  it('refuses an unusable mesh key with MESHLET_BAD_MESH_KEY naming it', async () => {
    await assert.rejects(
      createMeshFromConfig({
        logger: new MemoryLogger(),
        env: { MESHLET_SERVICE: 'orders', MESHLET_AUTH_KEYS_0_ID: 'k1', MESHLET_AUTH_KEYS_0_KEY: 'c2hvcnQ=' },
      }),
      (err: unknown) => err instanceof MeshletError && err.code === 'MESHLET_BAD_MESH_KEY' && /meshlet\.auth\.keys\[0\]/.test(err.message),
    );
  });

  it('refuses a missing service and a bad value with MESHLET_BAD_OPTION naming the variable', async () => {
    const refused = (env: Record<string, string>, pattern: RegExp) =>
      assert.rejects(createMeshFromConfig({ env, logger: new MemoryLogger() }), (err: unknown) => {
        assert.ok(err instanceof MeshletError);
        assert.equal(err.code, 'MESHLET_BAD_OPTION');
        assert.match(err.message, pattern);
        return true;
      });
    await refused({}, /MESHLET_SERVICE/);
    await refused({ MESHLET_SERVICE: 'orders', MESHLET_PORT: 'eighty' }, /meshlet\.port \(MESHLET_PORT\): "eighty" is not a number/);
    await refused({ MESHLET_SERVICE: 'orders', MESHLET_CONFIG_FORMAT: 'toml' }, /MESHLET_CONFIG_FORMAT/);
    // createMesh checks the Redis URL (ratelimit-options.ts); from configuration, the key and variable are named.
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_RATELIMIT_REDISURL: 'localhost:6379' },
      /^meshlet\.ratelimit\.redis-url \(MESHLET_RATELIMIT_REDISURL\): /,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_RATELIMIT_REDISURL: 'http://127.0.0.1:6379' },
      /^meshlet\.ratelimit\.redis-url \(MESHLET_RATELIMIT_REDISURL\): /,
    ); // And the tracing options (tracing-options.ts in @meshlet/trace).
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_ENABLED: 'true', MESHLET_TRACING_SAMPLERATIO: '2' },
      /^meshlet\.tracing\.sample-ratio \(MESHLET_TRACING_SAMPLERATIO\): 2 — give a number from 0/,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: 'ftp://127.0.0.1/v1/traces' },
      /^meshlet\.tracing\.otlp\.url \(MESHLET_TRACING_OTLP_URL\): "ftp:/,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: 'http://127.0.0.1:4318/v1/traces', MESHLET_TRACING_OTLP_PROTOCOL: 'grpc' },
      /^meshlet\.tracing\.otlp\.protocol \(MESHLET_TRACING_OTLP_PROTOCOL\): "grpc" must be one of 'http\/protobuf', 'http\/json'/,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_LOG_PATH: `/tmp/${'a'.repeat(5000)}` },
      /^meshlet\.tracing\.log\.path \(MESHLET_TRACING_LOG_PATH\): "\/tmp\/a+" must be a file path/,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_LOG_PATH: '/tmp/spans.binpb', MESHLET_TRACING_LOG_FORMAT: 'protobuf' },
      /^meshlet\.tracing\.log\.format \(MESHLET_TRACING_LOG_FORMAT\): "protobuf" must be one of 'json', 'proto'/,
    );
  });

  it("names the key and its variable when createMesh refuses a configured value (a value given in code keeps its option's name)", async () => {
    const refusal = async (env: Record<string, string>, overrides = {}) => {
      let caught: unknown;
      await createMeshFromConfig({ env, overrides, logger: new MemoryLogger() }).then(
        (mesh) => mesh.close(),
        (err: unknown) => {
          caught = err;
        },
      );
      assert.ok(caught instanceof MeshletError, `refused: ${JSON.stringify(env)}`);
      assert.equal(caught.code, 'MESHLET_BAD_OPTION');
      return caught.message;
    };
    assert.match(await refusal({ MESHLET_SERVICE: 'Orders' }), /^meshlet\.service \(MESHLET_SERVICE\): "Orders" has upper-case letters/);
    assert.match(
      await refusal({ MESHLET_SERVICE: 'orders', MESHLET_VERSION: 'v'.repeat(70) }),
      /^meshlet\.version \(MESHLET_VERSION\): "v+" must be/,
    );
    assert.match(
      await refusal({ MESHLET_SERVICE: 'orders', MESHLET_PORT: '70000' }),
      /^meshlet\.port \(MESHLET_PORT\): 70000 is not a port number/,
    );
    assert.match(await refusal({ MESHLET_SERVICE: 'orders' }, { port: 70000 }), /^port: 70000 is not a port number/);
  });

  it('takes an empty Redis URL variable as none (the local limits), as every empty variable is unset', async () => {
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: { MESHLET_SERVICE: 'orders', MESHLET_RATELIMIT_REDISURL: '' },
    });
    try {
      assert.equal(mesh.service, 'orders');
      assert.equal(mesh.config.get('meshlet.ratelimit.redis-url'), '');
    } finally {
      await mesh.close();
    }
  });
});
