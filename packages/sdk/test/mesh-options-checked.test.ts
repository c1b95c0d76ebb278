// createMesh refuses a bad identity, registration, hook or section option with
// MESHLET_BAD_OPTION naming the field, before anything starts (found by trying them: a
// misspelt top-level key, a namespace with spaces, an instance id with "/" (it goes into
// Consul's URL paths), 100,000 metadata pairs (Consul refuses more than 64, but only at
// register), a string for instanceFilter (a TypeError at the first discovery), an unknown
// dialect (a plain TypeError without a code) and a warm-up without its window were all
// taken).
// `dialects` is checked by @meshlet/propagation's checkPropagationOptions, as TagPropagation's own options.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { WARMUP_BOUNDS } from '@meshlet/route';
import { createMesh, type MeshOptions } from '../src/index.js';
import { MESH_OPTION_BOUNDS } from '../src/mesh-option-checks.js';

const manyPairs = Object.fromEntries(Array.from({ length: MESH_OPTION_BOUNDS.metadataPairs + 1 }, (_, i) => [`k${i}`, 'v']));

/** What is refused, how, the field named, and (where rows share a field) why. */
const cases: readonly [string, Record<string, unknown>, string, RegExp?][] = [
  ['a misspelt top-level key', { tracng: {} }, 'options.tracng'],
  ['a namespace with spaces', { namespace: 'A B' }, 'namespace'],
  ['a namespace too long', { namespace: 'n'.repeat(MESH_OPTION_BOUNDS.namespaceChars + 1) }, 'namespace'],
  ['an instance id with a slash', { instanceId: 'orders/1' }, 'instanceId'],
  ['an instance id with a space', { instanceId: 'orders 1' }, 'instanceId'],
  ['an instance id too long', { instanceId: 'i'.repeat(MESH_OPTION_BOUNDS.instanceIdChars + 1) }, 'instanceId'],
  ['an address that is not one', { address: 'not an address' }, 'address', /is not an IP address or a host name/],
  ['a URL for an address', { address: 'http://10.0.0.1' }, 'address', /is not an IPv6 address/],
  ['an address in brackets', { address: '[::1]' }, 'address', /is not an IPv6 address \(written bare/],
  ['an address that is a number', { address: 5 }, 'address', /number is not an address/],
  // Accepted here before, left out by every reader of the registry (core's instanceAddressProblem).
  ['an address a URL reads as another', { address: '1.2.3' }, 'address', /a URL reads it as 1\.2\.0\.3/],
  ['an IPv6 address with a zone', { address: 'fe80::1%eth0' }, 'address', /is not an IPv6 address/],
  ['a metadata value that is a number', { metadata: { zone: 5 } }, 'metadata.zone'],
  ['a metadata key with a dot', { metadata: { 'a.b': 'c' } }, 'metadata.a.b'],
  ['a metadata key Consul reserves', { metadata: { 'consul-x': 'c' } }, 'metadata.consul-x'],
  // 171 characters, 513 bytes: Consul counts bytes, and refused it only at register().
  ['a metadata value over 512 bytes in UTF-8', { metadata: { zone: '€'.repeat(171) } }, 'metadata.zone', /512 bytes/],
  ['more metadata pairs than Consul takes', { metadata: manyPairs }, 'metadata'],
  ['metadata that is a string', { metadata: 'zone=a' }, 'metadata'],
  ['an instanceFilter that is not a function', { instanceFilter: 'x' }, 'instanceFilter'],
  ['inboundTags that is a number', { inboundTags: 5 }, 'inboundTags'],
  ['a fetch that is a string', { fetch: 'undici' }, 'fetch'],
  ['a logger without error', { logger: { info() {}, warn() {}, debug() {} } }, 'logger'],
  ['a clock without timers', { clock: { now: () => 0 } }, 'clock'],
  ['a registry that is a URL', { registry: 'http://127.0.0.1:8500' }, 'registry'],
  ['a health path without a slash', { healthPath: 'health' }, 'healthPath'],
  ['a health path that is a number', { healthPath: 5 }, 'healthPath'],
  ['a health path with a query', { healthPath: '/health?x=1' }, 'healthPath'],
  ['a misspelt auth key', { auth: { keys: [], defaultaction: 'deny' } }, 'auth.defaultaction'],
  ['an auth default action of maybe', { auth: { defaultAction: 'maybe' } }, 'auth.defaultAction'],
  ['a clock skew as a string', { auth: { maxSkewMs: '5s' } }, 'auth.maxSkewMs'],
  ['a token lifetime longer than a verifier accepts', { auth: { ttlMs: MESH_OPTION_BOUNDS.identityTtlMs + 1 } }, 'auth.ttlMs'],
  ['a token lifetime as a string', { auth: { ttlMs: '30000' } }, 'auth.ttlMs'],
  ['a token lifetime of a fraction of a millisecond', { auth: { ttlMs: 0.4 } }, 'auth.ttlMs'],
  ['a token lifetime of 0', { auth: { ttlMs: 0 } }, 'auth.ttlMs'],
  ['a negative token lifetime', { auth: { ttlMs: -5 } }, 'auth.ttlMs'],
  ['a catalog path without a slash', { catalog: { path: 'apis' } }, 'catalog.path'],
  ['catalog files that are a string', { catalog: { openapiFiles: 'api.yaml' } }, 'catalog.openapiFiles'],
  ['a misspelt catalog key', { catalog: { paths: '/apis' } }, 'catalog.paths'],
  ['a warm-up without its window', { warmup: { durationMs: 30_000 } }, 'warmup.durationMs'],
  ['a warm-up window that is negative', { warmup: { windowMs: -5 } }, 'warmup.windowMs'],
  ['a warm-up floor above 1', { warmup: { windowMs: 1000, floor: 2 } }, 'warmup.floor'],
  ['warm-up steps of 0', { warmup: { windowMs: 1000, steps: 0 } }, 'warmup.steps'],
  ['an unknown dialect to emit', { dialects: { emit: ['nope'] } }, 'dialects.emit[0]'],
  ['a pass-through header with a space', { dialects: { passThroughHeaders: ['x uid'] } }, 'dialects.passThroughHeaders[0]'],
  ['a misspelt dialects key', { dialects: { accepts: ['tsf'] } }, 'dialects.accepts'],
  ['a tag scope that is not one', { dialects: { scopes: { user: 'far' } } }, 'dialects.scopes.user'],
  ['a misspelt route key', { route: { panicThreshold: 10 } }, 'route.panicThreshold'],
  // Taken before, and every call then failed as MESHLET_NO_INSTANCE: the balancer was never made.
  [
    'a balancer type in the wrong case',
    { route: { loadBalancer: { type: 'roundrobin' } } },
    'route.loadBalancer.type',
    /must be one of "roundRobin", "random", "leastRequests", "consistentHash" \(got "roundrobin"\)/,
  ],
  ['a consistent hash without its tag', { route: { loadBalancer: { type: 'consistentHash' } } }, 'route.loadBalancer.hashTag'],
  ['a misspelt balancer key', { route: { loadBalancer: { type: 'random', hashTag: 'u' } } }, 'route.loadBalancer.hashTag'],
  ['a nearby share above 100', { route: { nearby: { minHealthyPercent: 150 } } }, 'route.nearby.minHealthyPercent'],
  ['a misspelt nearby key', { route: { nearby: { enable: false } } }, 'route.nearby.enable'],
  ['an empty lane tag', { route: { laneTag: '' } }, 'route.laneTag'],
  ['a random source that is a number', { route: { random: 0.5 } }, 'route.random'],
  ['a route clock without timers', { route: { clock: { now: () => 0 } } }, 'route.clock'],
  ['a route logger that is a function', { route: { logger: () => {} } }, 'route.logger'],
  ['a misspelt callDefaults key', { callDefaults: { retry: 1 } }, 'callDefaults.retry'],
  ['a misspelt admin key', { admin: { token: 't'.repeat(32), paht: '/admin' } }, 'admin.paht'],
  // The admin path is registered as metadata: register() refused these (or createAdminHandler, with another code).
  ['an admin path too long', { admin: { token: 't'.repeat(32), path: `/${'a'.repeat(600)}` } }, 'admin.path'],
  ['an admin path over 512 bytes in UTF-8', { admin: { token: 't'.repeat(32), path: `/${'€'.repeat(200)}` } }, 'admin.path', /bytes/],
  ['an admin path without a slash', { admin: { token: 't'.repeat(32), path: 'ops' } }, 'admin.path'],
  [
    'a header tag read from a header name with a space',
    { tagsFromHeaders: [{ header: 'x user', tag: 'user' }] },
    'tagsFromHeaders[0].header',
  ],
  ['a header tag with a misspelt key', { tagsFromHeaders: [{ headr: 'x-user', tag: 'user' }] }, 'tagsFromHeaders[0].headr'],
  [
    'a header tag transform that is a string',
    { tagsFromHeaders: [{ header: 'x-user', tag: 'user', transform: 'lower' }] },
    'tagsFromHeaders[0].transform',
  ],
  ['header tags that are not a list', { tagsFromHeaders: { header: 'x-user', tag: 'user' } }, 'tagsFromHeaders'],
];

const base = () => ({
  service: 'options-check',
  registry: new InMemoryRegistry(),
  rules: new InMemoryKvStore(),
  logger: new MemoryLogger(),
});

for (const [what, option, field, why] of cases) {
  it(`refuses ${what}, naming ${field}`, async () => {
    let refused: unknown;
    try {
      const mesh = createMesh({ ...base(), ...option } as MeshOptions);
      await mesh.close();
    } catch (err) {
      refused = err;
    }
    assert.ok(refused, `createMesh took ${what}`);
    const message = (refused as Error).message;
    assert.equal((refused as { code?: string }).code, 'MESHLET_BAD_OPTION', message);
    assert.ok(message.startsWith(`${field}:`), `${message.slice(0, 200)} names ${field}`);
    assert.ok(message.length < 400, `a message of ${message.length} characters`);
    if (why) assert.match(message, why);
  });
}

it('takes the options at their bounds, and what Spring Cloud and TSF instances carry', async () => {
  const meshes = [
    createMesh({
      ...base(),
      namespace: 'namespace-a1b2c3d4',
      instanceId: 'orders:8080:0af7651916cd43dd',
      address: '10.0.0.7',
      metadata: {
        ...Object.fromEntries(Array.from({ length: MESH_OPTION_BOUNDS.metadataPairs - 1 }, (_, i) => [`TSF_KEY_${i}`, 'v'])),
        zone: '😀'.repeat(128), // 512 bytes: Consul's bound
      },
      healthPath: '/actuator/health',
      catalog: { path: false, routes: [] },
      warmup: { windowMs: WARMUP_BOUNDS.windowMs, floor: 0, curvature: 2, steps: 1000 },
      dialects: { accept: ['tsf', 'sct', 'polaris', 'meshlet'], emit: ['meshlet', 'tsf'], passThroughHeaders: ['x-uid'] },
      tagsFromHeaders: [{ header: 'X-User-Tier', tag: 'user-tier', transform: (v) => v.toLowerCase() }],
      instanceFilter: (_s, list) => list,
      callDefaults: { retries: 2 },
      route: {
        panicThresholdPercent: 0,
        loadBalancer: { type: 'consistentHash', hashTag: 'user-id', virtualNodes: 1000 },
        nearby: { enabled: false, minHealthyPercent: 100 },
        laneTag: 'x-lane',
        random: Math.random,
      },
    }),
    createMesh({ ...base(), address: 'orders-0.orders.svc.cluster.local', healthPath: false }),
    createMesh({ ...base(), address: '::1' }),
    // A container name with "_": the registry's readers call it (core's instanceAddressProblem).
    createMesh({ ...base(), address: 'my_host' }),
  ];
  for (const m of meshes) await m.close();
  assert.equal(meshes.length, 4);
});

it('serve() refuses bad options before it waits on the server, and register() a bad address', async () => {
  const mesh = createMesh({ ...base(), port: 8080 });
  // A server that never listens: serve() would wait for it, up to its readiness timeout.
  const server = createServer();
  const serveRows: readonly [Record<string, unknown>, string][] = [
    [{ drainTimeoutMs: -1 }, 'serve.drainTimeoutMs'],
    [{ deregisterDelayMs: '35s' }, 'serve.deregisterDelayMs'],
    [{ readinessTimeoutMs: 0 }, 'serve.readinessTimeoutMs'],
    [{ signals: ['SIGTERN'] }, 'serve.signals[0]'],
    [{ healthPath: 'ready' }, 'serve.healthPath'],
    [{ exitOnSignal: 'no' }, 'serve.exitOnSignal'],
    [{ drainTimeout: 5000 }, 'serve.drainTimeout'],
  ];
  try {
    for (const [options, field] of serveRows)
      await assert.rejects(mesh.serve(server, options as never), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'MESHLET_BAD_OPTION');
        assert.ok((e as Error).message.startsWith(`${field}:`), (e as Error).message);
        return true;
      });
    await assert.rejects(mesh.register({ address: 'not an address' }), (e: unknown) =>
      (e as Error).message.startsWith('address: "not an address" is not an IP address or a host name'),
    );
  } finally {
    await mesh.close();
  }
});

it("the gRPC server's shutdown() refuses bad waits and unknown keys before it stops anything", async () => {
  const mesh = createMesh({ ...base(), port: 8080 });
  try {
    for (const [options, field] of [
      [{ drainTimeoutMs: -1 }, 'grpc.shutdown.drainTimeoutMs'],
      [{ deregisterDelayMs: Number.NaN }, 'grpc.shutdown.deregisterDelayMs'],
      [{ drainTimeout: 5000 }, 'grpc.shutdown.drainTimeout'],
    ] as const)
      await assert.rejects(mesh.grpc.shutdown(options as never), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'MESHLET_BAD_OPTION');
        assert.ok((e as Error).message.startsWith(`${field}:`), (e as Error).message);
        return true;
      });
  } finally {
    await mesh.close();
  }
});
