// createMeshFromConfig from environment variables and a local file (Consul KV: test/mesh-from-config.test.ts).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { ConfigParseError, encryptValue, generateKey } from '@meshlet/config';
import {
  InMemoryKvStore,
  InMemoryRegistry,
  type InstancesListener,
  ManualClock,
  MemoryLogger,
  MeshletError,
  type Unsubscribe,
} from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { decodeTraceProto } from '@meshlet/trace';
import { AdminTokenError, type ConfiguredMesh, createMeshFromConfig, type MeshOptions, TooManyDestinationsError } from '../src/index.js';
import { MESHLET_KEY_MAPS, MESHLET_KEYS } from '../src/mesh-from-config.js';
import {
  otlpFromOtelEnvironment,
  otlpHeadersOf,
  resourceAttributesFromOtelEnvironment,
  sampleRatioFromOtelEnvironment,
} from '../src/otlp-settings.js';

const meshKeyBase64 = Buffer.alloc(32, 3).toString('base64');
/** The test CA's files (test/fixtures/tls at the root): their paths, and their text. */
const fixturePath = (name: string) => fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url));
const fixture = (name: string) => readFileSync(fixturePath(name), 'utf8');

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
        MESHLET_AUTH_KEYS_0_KEY: encryptValue(meshKeyBase64, key, 'meshlet.auth.keys[0].key'),
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

  it('reads numbers in decimal only: a blank, 0x/0b, an exponent refused naming the key; the sample ratio checked with tracing off too', async () => {
    const refused = (env: Record<string, string>, pattern: RegExp) =>
      assert.rejects(createMeshFromConfig({ env: { MESHLET_SERVICE: 'orders', ...env }, logger: new MemoryLogger() }), (err: unknown) => {
        assert.ok(err instanceof MeshletError);
        assert.equal(err.code, 'MESHLET_BAD_OPTION');
        assert.match(err.message, pattern);
        return true;
      });
    const ratio = /^meshlet\.tracing\.sample-ratio \(MESHLET_TRACING_SAMPLERATIO\): /;
    for (const enabled of [{ MESHLET_TRACING_ENABLED: 'true' }, {}, { MESHLET_TRACING_ENABLED: 'false' }]) {
      for (const value of [' ', '\t', '0x1', '0b1', '1e-400', 'NaN', 'Infinity'])
        await refused({ ...enabled, MESHLET_TRACING_SAMPLERATIO: value }, new RegExp(`${ratio.source}.* is not a decimal number`));
      for (const value of ['2', '-0.5'])
        await refused({ ...enabled, MESHLET_TRACING_SAMPLERATIO: value }, new RegExp(`${ratio.source}${value} — give a number from 0`));
    }
    const timeout = { MESHLET_TRACING_OTLP_URL: 'http://127.0.0.1:4318/v1/traces' };
    for (const value of ['0x10', '1e3', ' '])
      await refused(
        { ...timeout, MESHLET_TRACING_OTLP_TIMEOUTMS: value },
        /^meshlet\.tracing\.otlp\.timeout-ms \(MESHLET_TRACING_OTLP_TIMEOUTMS\): .* is not a decimal number/,
      );
    for (const value of ['0x1f90', '8e3', '\t'])
      await refused({ MESHLET_PORT: value }, /^meshlet\.port \(MESHLET_PORT\): .* is not a decimal number/);
    const mesh = await createMeshFromConfig({
      env: { MESHLET_SERVICE: 'orders', MESHLET_TRACING_ENABLED: 'true', MESHLET_TRACING_SAMPLERATIO: ' 0.25 ' },
      logger: new MemoryLogger(),
    });
    try {
      assert.ok(mesh.tracing, 'a decimal with blanks around it is read');
    } finally {
      await mesh.close();
    }
  });

  it('refuses to start on a KV document that does not parse, naming its key; with failFast: false starts without it and says so', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/data', 'meshlet:\n  version: [1.2.3\n');
    const env = { MESHLET_SERVICE: 'orders', MESHLET_CONFIG_FORMAT: 'yaml' };
    await assert.rejects(createMeshFromConfig({ env, logger: new MemoryLogger(), overrides: { rules: kv } }), (err: unknown) => {
      assert.ok(err instanceof ConfigParseError);
      assert.equal(err.source, 'config/orders/data');
      assert.match(err.message, /^config\/orders\/data: invalid YAML: .*failFast: false/);
      return true;
    });

    const logger = new MemoryLogger();
    const mesh = await createMeshFromConfig({ env, logger, failFast: false, overrides: { rules: kv } });
    try {
      assert.equal(mesh.version, '0.0.0', 'the default: the document is not in force');
      const rejected = logger.entries.filter((e) => e.fields?.code === ConfigParseError.code);
      assert.deepEqual(
        rejected.map((e) => [e.message, e.fields?.key]),
        [['config document rejected at start (failFast: false); started without it', 'config/orders/data']],
      );
    } finally {
      await mesh.close();
    }
  });

  it('warns once at start of each key under meshlet. it does not read, naming the nearest known key; open maps are known', async () => {
    const file = join(dir, 'typos.properties');
    await writeFile(
      file,
      [
        'meshlet.service=orders',
        'meshlet.helth-path=/ready',
        'meshlet.tracing.sample-ration=0.1',
        'meshlet.verison=9.9.9',
        'meshlet.destinations.idlems=60000',
        'meshlet.destinations.max=10',
        'meshlet.version=1.0.0',
        'meshlet.metadata.zone=z',
        'meshlet.tracing.resource-attributes.team=t',
        'app.own.key=1',
        '',
      ].join('\n'),
    );
    const logger = new MemoryLogger();
    const mesh = await createMeshFromConfig({ env: { MESHLET_CONFIG_FILE: file }, logger });
    try {
      const unknown = logger.entries
        .filter((e) => e.fields?.code === 'MESHLET_CONFIG_UNKNOWN_KEY')
        .map((e) => `${e.fields?.key} ~ ${e.fields?.nearest}`);
      assert.deepEqual(unknown.sort(), [
        'meshlet.destinations.idlems ~ meshlet.destinations.idle-ms',
        'meshlet.helth-path ~ meshlet.health-path',
        'meshlet.tracing.sample-ration ~ meshlet.tracing.sample-ratio',
        'meshlet.verison ~ meshlet.version',
      ]);
    } finally {
      await mesh.close();
    }
  });

  it('MESHLET_KEYS holds every meshlet. key the source reads', () => {
    let read = 0;
    for (const name of ['mesh-from-config', 'identity-keys']) {
      const source = readFileSync(fileURLToPath(new URL(`../../src/${name}.ts`, import.meta.url)), 'utf8');
      for (const [, key] of source.matchAll(/'(meshlet\.[a-z0-9.-]*[a-z0-9])'/g)) {
        const k = key as string;
        read++;
        assert.ok(
          MESHLET_KEYS.includes(k) || MESHLET_KEY_MAPS.some((map) => map.startsWith(k) || k.startsWith(map)),
          `${name}.ts reads ${k}`,
        );
      }
    }
    assert.ok(read > 20, `${read} keys read`);
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
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_PORT: 'eighty' },
      /meshlet\.port \(MESHLET_PORT\): "eighty" is not a decimal number/,
    );
    await refused({ MESHLET_SERVICE: 'orders', MESHLET_CONFIG_FORMAT: 'toml' }, /MESHLET_CONFIG_FORMAT/);
    for (const bad of ['/tmp/a\u0000b', '/tmp/a\nb', `/${'d'.repeat(4096)}`])
      await refused({ MESHLET_SERVICE: 'orders', MESHLET_CONSUL_SNAPSHOTDIR: bad }, /MESHLET_CONSUL_SNAPSHOTDIR/);
    // A metadata name createMesh refuses (Consul's keys take no dots): named by its key, as the README says.
    const badMetadata = join(dir, 'bad-metadata.properties');
    await writeFile(badMetadata, 'meshlet.metadata.bad.key=v\n');
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_CONFIG_FILE: badMetadata },
      /^meshlet\.metadata\.bad\.key \(MESHLET_METADATA_BAD_KEY\): metadata key "bad\.key"/,
    );
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
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: 'http://127.0.0.1:4318/v1/traces', MESHLET_TRACING_OTLP_PROTOCOL: 'grpc-web' },
      /^meshlet\.tracing\.otlp\.protocol \(MESHLET_TRACING_OTLP_PROTOCOL\): "grpc-web" must be one of 'http\/protobuf', 'http\/json', 'grpc'/,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: 'http://127.0.0.1:4318/v1/traces', MESHLET_TRACING_OTLP_COMPRESSION: 'br' },
      /^meshlet\.tracing\.otlp\.compression \(MESHLET_TRACING_OTLP_COMPRESSION\): "br" must be one of 'none', 'gzip'/,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: 'http://127.0.0.1:4318/v1/traces', MESHLET_TRACING_OTLP_TIMEOUTMS: '0' },
      /^meshlet\.tracing\.otlp\.timeout-ms \(MESHLET_TRACING_OTLP_TIMEOUTMS\): /,
    );
    await refused(
      { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: 'http://127.0.0.1:4318/v1/traces', MESHLET_TRACING_OTLP_HEADERS: 'x=s3cr3t%' },
      /^meshlet\.tracing\.otlp\.headers \(MESHLET_TRACING_OTLP_HEADERS\): x: a bad percent-encoding/,
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

  /** A collector on loopback keeping each request's path, headers and body. */
  /** A collector answering 200; with `mutualTls`, over HTTPS with the test CA's certificate, asking for a client certificate of that CA. */
  async function fakeCollector(mutualTls = false) {
    const got: { path: string; headers: IncomingHttpHeaders; body: Buffer; peer?: string }[] = [];
    const tls = {
      cert: fixture('server.pem'),
      key: fixture('server.key'),
      ca: fixture('ca.pem'),
      requestCert: true,
      rejectUnauthorized: true,
    };
    const serve = (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const peer = mutualTls ? String((req.socket as TLSSocket).getPeerCertificate().subject?.CN) : undefined;
        got.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), ...(peer ? { peer } : {}) });
        res.writeHead(200).end();
      });
    };
    const server = mutualTls ? createHttpsServer(tls, serve) : createServer(serve);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const origin = `${mutualTls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { origin, got, close: () => new Promise((r) => server.close(r)) };
  }

  /** Makes a mesh from `env`, ends one CLIENT span, flushes: what the collector got. */
  async function oneSpanSent(env: Record<string, string>, check?: (mesh: ConfiguredMesh) => void) {
    const mesh = await createMeshFromConfig({ logger: new MemoryLogger(), env: { MESHLET_SERVICE: 'orders', ...env } });
    try {
      check?.(mesh);
      assert.ok(mesh.tracing, 'tracing is on');
      mesh.tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1/ledger/1', service: 'ledger' }).end(200);
      await mesh.tracing.forceFlush();
    } finally {
      await mesh.close();
    }
  }

  const spanNames = (body: Buffer) =>
    decodeTraceProto(body).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((sp) => sp.name)));

  it('sends spans to the collector the variables name: its headers (percent-decoded, a secret key), gzip, its timeout', async () => {
    const c = await fakeCollector();
    try {
      await oneSpanSent(
        {
          MESHLET_TRACING_OTLP_URL: `${c.origin}/v1/traces`,
          MESHLET_TRACING_OTLP_HEADERS: 'Authorization=Bearer%20s3cr3t , x-tenant=blue%2Cgreen',
          MESHLET_TRACING_OTLP_COMPRESSION: 'gzip',
          MESHLET_TRACING_OTLP_TIMEOUTMS: '2500',
        },
        (mesh) => assert.equal(mesh.config.isSecret('meshlet.tracing.otlp.headers'), true, 'the headers are masked as a secret'),
      );
      assert.equal(c.got.length, 1);
      const [req] = c.got;
      assert.equal(req?.headers.authorization, 'Bearer s3cr3t');
      assert.equal(req?.headers['x-tenant'], 'blue,green');
      assert.equal(req?.headers['content-encoding'], 'gzip');
      assert.deepEqual(spanNames(gunzipSync(req?.body as Buffer)), ['GET']);
    } finally {
      await c.close();
    }
  });

  it("sends spans where OpenTelemetry's own variables say, with no Meshlet key: the endpoint's /v1/traces, its headers, gzip", async () => {
    const c = await fakeCollector();
    try {
      await oneSpanSent({
        OTEL_EXPORTER_OTLP_ENDPOINT: `${c.origin}/otel`,
        OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s3cr3t',
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
      });
      assert.equal(c.got.length, 1);
      const [req] = c.got;
      assert.equal(req?.path, '/otel/v1/traces');
      assert.equal(req?.headers['api-key'], 's3cr3t');
      assert.deepEqual(spanNames(gunzipSync(req?.body as Buffer)), ['GET']);
    } finally {
      await c.close();
    }
  });

  it("sends spans over mutual TLS with the files OpenTelemetry's variables or Meshlet's keys name (CA, client certificate, key)", async () => {
    for (const names of [
      [
        'OTEL_EXPORTER_OTLP_ENDPOINT',
        'OTEL_EXPORTER_OTLP_CERTIFICATE',
        'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE',
        'OTEL_EXPORTER_OTLP_CLIENT_KEY',
      ],
      [
        'MESHLET_TRACING_OTLP_URL',
        'MESHLET_TRACING_OTLP_CERTIFICATE',
        'MESHLET_TRACING_OTLP_CLIENTCERTIFICATE',
        'MESHLET_TRACING_OTLP_CLIENTKEY',
      ],
    ] as const) {
      const c = await fakeCollector(true);
      try {
        const [url, ca, cert, key] = names;
        await oneSpanSent({
          [url]: url.startsWith('OTEL') ? c.origin : `${c.origin}/v1/traces`,
          [ca]: fixturePath('ca.pem'),
          [cert]: fixturePath('server.pem'),
          [key]: fixturePath('server.key'),
        });
        assert.equal(c.got.length, 1, url);
        assert.equal(c.got[0]?.peer, 'server.dc1.consul', 'the client certificate was shown');
        assert.deepEqual(spanNames(c.got[0]?.body as Buffer), ['GET']);
      } finally {
        await c.close();
      }
    }
  });

  it('refuses a TLS file that is missing, not PEM, half a pair, or for an http: collector, naming its key or variable and never its content', async () => {
    const secret = join(dir, 'secret.txt');
    await writeFile(secret, 'hunter2-not-a-key');
    const https = { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://127.0.0.1:4318' };
    const cases: [Record<string, string>, RegExp][] = [
      [
        { ...https, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: join(dir, 'nope.pem') },
        /^MeshletError: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: ".*nope\.pem" cannot be opened \(ENOENT\)$/,
      ],
      [
        { ...https, OTEL_EXPORTER_OTLP_CERTIFICATE: secret },
        /^MeshletError: OTEL_EXPORTER_OTLP_CERTIFICATE: ".*secret\.txt" holds no PEM block/,
      ],
      [
        { ...https, OTEL_EXPORTER_OTLP_CERTIFICATE: fixturePath('server.key') },
        /^MeshletError: OTEL_EXPORTER_OTLP_CERTIFICATE: holds no "-----BEGIN CERTIFICATE-----" block$/,
      ],
      [
        { ...https, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: fixturePath('server.pem') },
        /^MeshletError: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: a client certificate without its key file$/,
      ],
      [
        {
          ...https,
          OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: fixturePath('server.pem'),
          OTEL_EXPORTER_OTLP_CLIENT_KEY: fixturePath('ca.pem'),
        },
        /^MeshletError: OTEL_EXPORTER_OTLP_CLIENT_KEY: is not an unencrypted private key in PEM/,
      ],
      [
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_EXPORTER_OTLP_CERTIFICATE: fixturePath('ca.pem') },
        /^MeshletError: OTEL_EXPORTER_OTLP_CERTIFICATE: TLS files are for an https: collector; the URL OTEL_EXPORTER_OTLP_ENDPOINT gives is not$/,
      ],
      [
        { MESHLET_TRACING_OTLP_URL: 'https://127.0.0.1:4318/v1/traces', MESHLET_TRACING_OTLP_CLIENTKEY: secret },
        /^MeshletError: meshlet\.tracing\.otlp\.client-key \(MESHLET_TRACING_OTLP_CLIENTKEY\): a client key without its certificate file$/,
      ],
      [
        {
          MESHLET_TRACING_OTLP_URL: 'https://127.0.0.1:4318/v1/traces',
          MESHLET_TRACING_OTLP_CLIENTCERTIFICATE: fixturePath('server.pem'),
          MESHLET_TRACING_OTLP_CLIENTKEY: secret,
        },
        /^MeshletError: meshlet\.tracing\.otlp\.client-key \(MESHLET_TRACING_OTLP_CLIENTKEY\): ".*secret\.txt" holds no PEM block/,
      ],
    ];
    for (const [env, want] of cases) {
      const err = await createMeshFromConfig({ logger: new MemoryLogger(), env: { MESHLET_SERVICE: 'orders', ...env } }).then(
        (m) => m.close().then(() => assert.fail(`not refused: ${JSON.stringify(env)}`)),
        (e: unknown) => e,
      );
      assert.ok(err instanceof MeshletError && err.code === 'MESHLET_BAD_OPTION', String(err));
      assert.match(String(err), want);
      assert.ok(!String(err).includes('hunter2') && !String(err).includes('PRIVATE'), String(err));
    }
  });

  it("puts OTEL_RESOURCE_ATTRIBUTES on the spans' resource, percent-decoded, the mesh's own service identity kept", async () => {
    const c = await fakeCollector();
    try {
      await oneSpanSent({
        MESHLET_TRACING_OTLP_URL: `${c.origin}/v1/traces`,
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod, k8s.pod.name=orders-7f9c ,team=pay%2Cments,service.name=not-orders',
      });
      const request = decodeTraceProto(c.got[0]?.body as Buffer);
      const attrs = Object.fromEntries(
        (request.resourceSpans[0]?.resource?.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
      );
      assert.deepEqual(attrs, {
        'deployment.environment': 'prod',
        'k8s.pod.name': 'orders-7f9c',
        team: 'pay,ments',
        'service.name': 'orders',
        'service.version': '0.0.0',
        'service.namespace': 'default',
      });
    } finally {
      await c.close();
    }
  });

  it("merges resource attributes from OTEL_RESOURCE_ATTRIBUTES, Spring Boot's management.opentelemetry.resource-attributes and Meshlet's key, later ones winning", async () => {
    const c = await fakeCollector();
    const file = join(dir, 'resource.yml');
    await writeFile(
      file,
      [
        'management:',
        '  opentelemetry:',
        '    resource-attributes:',
        '      "[deployment.environment]": prod',
        '      region: eu-1',
        '      service.name: not-orders',
        'meshlet:',
        '  tracing:',
        '    resource-attributes:',
        '      region: eu-2',
        '      team: payments',
        '',
      ].join('\n'),
    );
    try {
      await oneSpanSent({
        MESHLET_CONFIG_FILE: file,
        MESHLET_TRACING_OTLP_URL: `${c.origin}/v1/traces`,
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=dev,k8s.pod.name=orders-7f9c',
      });
      const request = decodeTraceProto(c.got[0]?.body as Buffer);
      const attrs = Object.fromEntries(
        (request.resourceSpans[0]?.resource?.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
      );
      assert.equal(attrs['deployment.environment'], 'prod', "Spring's over OpenTelemetry's variable");
      assert.equal(attrs.region, 'eu-2', "Meshlet's over Spring's");
      assert.equal(attrs.team, 'payments');
      assert.equal(attrs['k8s.pod.name'], 'orders-7f9c');
      assert.equal(attrs['service.name'], 'orders', 'the mesh names its spans');
    } finally {
      await c.close();
    }
    const bad = join(dir, 'resource-bad.yml');
    await writeFile(bad, `meshlet:\n  tracing:\n    resource-attributes:\n      team: ${'x'.repeat(4097)}\n`);
    await assert.rejects(
      createMeshFromConfig({
        logger: new MemoryLogger(),
        env: { MESHLET_SERVICE: 'orders', MESHLET_CONFIG_FILE: bad, MESHLET_TRACING_OTLP_URL: `${c.origin}/v1/traces` },
      }),
      /^MeshletError: meshlet\.tracing\.resource-attributes\.team \(MESHLET_TRACING_RESOURCEATTRIBUTES_TEAM\): must be a string of at most 4096 characters/,
    );
  });

  it("says once, at start, that an OTEL_SERVICE_NAME other than the mesh's service does not name the spans", async () => {
    const c = await fakeCollector();
    try {
      for (const [name, warned] of [
        ['billing', true],
        ['orders', false],
      ] as const) {
        const logger = new MemoryLogger();
        const mesh = await createMeshFromConfig({
          logger,
          env: { MESHLET_SERVICE: 'orders', MESHLET_TRACING_OTLP_URL: `${c.origin}/v1/traces`, OTEL_SERVICE_NAME: name },
        });
        await mesh.close();
        const said = logger.entries.filter((e) => e.fields?.code === 'MESHLET_OTEL_SERVICE_NAME_UNUSED');
        assert.equal(said.length, warned ? 1 : 0, name);
        if (warned) assert.deepEqual([said[0]?.fields?.otelServiceName, said[0]?.fields?.service], ['billing', 'orders']);
      }
    } finally {
      await c.close();
    }
  });

  it('refuses a bad OTEL_RESOURCE_ATTRIBUTES naming it, and leaves it unread without tracing', async () => {
    const cases: [string, RegExp][] = [
      ['a=1,nokey', /^MeshletError: OTEL_RESOURCE_ATTRIBUTES: pair 2 must be key=value$/],
      ['=1', /^MeshletError: OTEL_RESOURCE_ATTRIBUTES: pair 1 must be key=value$/],
      ['a=%zz', /^MeshletError: OTEL_RESOURCE_ATTRIBUTES: a: a bad percent-encoding \(the value is not shown\)$/],
      ['a=1,a=2', /^MeshletError: OTEL_RESOURCE_ATTRIBUTES: a is given twice$/],
      [`a=${'x'.repeat(4097)}`, /^MeshletError: OTEL_RESOURCE_ATTRIBUTES: a: must be a string of at most 4096 characters/],
      [Array.from({ length: 69 }, (_, i) => `k${i}=v`).join(','), /^MeshletError: OTEL_RESOURCE_ATTRIBUTES: 69 attributes; at most 64$/],
    ];
    for (const [value, want] of cases)
      assert.throws(() => resourceAttributesFromOtelEnvironment({ OTEL_RESOURCE_ATTRIBUTES: value }), want);
    assert.equal(resourceAttributesFromOtelEnvironment({ OTEL_RESOURCE_ATTRIBUTES: 'a=1', OTEL_SDK_DISABLED: 'true' }), undefined);
    assert.equal(resourceAttributesFromOtelEnvironment({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=x' }), undefined);
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: { MESHLET_SERVICE: 'orders', OTEL_RESOURCE_ATTRIBUTES: 'nokey' },
    });
    try {
      assert.equal(mesh.tracing, undefined, 'no tracing: the variable, set for another SDK, is not read');
    } finally {
      await mesh.close();
    }
  });

  it("takes the collector whole from Meshlet's keys when they name one: OpenTelemetry's headers never go to Meshlet's URL", async () => {
    const mine = await fakeCollector();
    const theirs = await fakeCollector();
    try {
      await oneSpanSent({
        MESHLET_TRACING_OTLP_URL: `${mine.origin}/v1/traces`,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${theirs.origin}/v1/traces`,
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=theirs',
        OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
      });
      assert.equal(theirs.got.length, 0);
      assert.equal(mine.got.length, 1);
      assert.equal(mine.got[0]?.headers.authorization, undefined);
      assert.equal(mine.got[0]?.headers['content-encoding'], undefined);
      assert.deepEqual(spanNames(mine.got[0]?.body as Buffer), ['GET']);
    } finally {
      await mine.close();
      await theirs.close();
    }
  });

  it("leaves OpenTelemetry's variables unread when Meshlet's tracing is switched off (a protocol Meshlet lacks there is not refused)", async () => {
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: {
        MESHLET_SERVICE: 'orders',
        MESHLET_TRACING_ENABLED: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/thrift',
      },
    });
    try {
      assert.equal(mesh.tracing, undefined);
    } finally {
      await mesh.close();
    }
    await assert.rejects(
      createMeshFromConfig({
        logger: new MemoryLogger(),
        env: {
          MESHLET_SERVICE: 'orders',
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/thrift',
        },
      }),
      /^MeshletError: OTEL_EXPORTER_OTLP_PROTOCOL: "http\/thrift" must be one of/,
      'without the switch, the same variables are refused',
    );
  });

  it("reads OpenTelemetry's variables as its SDKs do: the traces form first, the endpoint's path, none when disabled", () => {
    const base = 'http://127.0.0.1:4318';
    const cases: [string, Record<string, string>, unknown][] = [
      ['no endpoint', { OTEL_EXPORTER_OTLP_HEADERS: 'a=1' }, undefined],
      ['a base endpoint', { OTEL_EXPORTER_OTLP_ENDPOINT: base }, { url: `${base}/v1/traces` }],
      ['a base endpoint with a slash', { OTEL_EXPORTER_OTLP_ENDPOINT: `${base}/` }, { url: `${base}/v1/traces` }],
      [
        'a traces endpoint, as it is',
        { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${base}/in`, OTEL_EXPORTER_OTLP_ENDPOINT: base },
        { url: `${base}/in` },
      ],
      [
        'the traces forms over the others',
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: base,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
          OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
          OTEL_EXPORTER_OTLP_TIMEOUT: '5000',
          OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '7000',
          OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
          OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'none',
          OTEL_EXPORTER_OTLP_HEADERS: 'a=1',
          OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'b=2',
        },
        { url: `${base}/v1/traces`, protocol: 'http/json', compression: 'none', timeoutMs: 7000, headers: { b: '2' } },
      ],
      [
        "grpc: the endpoint is the collector's address, as it is",
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
        { url: 'http://127.0.0.1:4317', protocol: 'grpc' },
      ],
      [
        'grpc: an address without a scheme is TLS (OTEL_EXPORTER_OTLP_INSECURE unset)',
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector.internal:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
        { url: 'https://collector.internal:4317', protocol: 'grpc' },
      ],
      [
        'grpc: an address without a scheme, OTEL_EXPORTER_OTLP_INSECURE=true',
        { OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_INSECURE: 'True' },
        { url: 'http://127.0.0.1:4317', protocol: 'grpc' },
      ],
      [
        'grpc: the traces forms of the endpoint and of INSECURE, an IPv6 address',
        {
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '[::1]:4317',
          OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
          OTEL_EXPORTER_OTLP_TRACES_INSECURE: 'true',
          OTEL_EXPORTER_OTLP_INSECURE: 'false',
        },
        { url: 'http://[::1]:4317', protocol: 'grpc' },
      ],
      [
        'grpc: INSECURE does not apply to an endpoint with a scheme',
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://127.0.0.1:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_INSECURE: 'true' },
        { url: 'https://127.0.0.1:4317', protocol: 'grpc' },
      ],
      ['OTEL_SDK_DISABLED=true', { OTEL_EXPORTER_OTLP_ENDPOINT: base, OTEL_SDK_DISABLED: 'true' }, undefined],
      ['OTEL_TRACES_EXPORTER=none', { OTEL_EXPORTER_OTLP_ENDPOINT: base, OTEL_TRACES_EXPORTER: 'none' }, undefined],
      [
        'OTEL_TRACES_EXPORTER listing otlp',
        { OTEL_EXPORTER_OTLP_ENDPOINT: base, OTEL_TRACES_EXPORTER: 'console, otlp' },
        { url: `${base}/v1/traces` },
      ],
    ];
    for (const [what, env, want] of cases) assert.deepEqual(otlpFromOtelEnvironment(env), want, what);
  });

  it("takes the sample ratio from OpenTelemetry's parent-based samplers when Meshlet's key gives none, and refuses the others", () => {
    const cases: [Record<string, string>, number | undefined][] = [
      [{}, undefined],
      [{ OTEL_TRACES_SAMPLER: 'parentbased_always_on' }, 1],
      [{ OTEL_TRACES_SAMPLER: 'parentbased_always_off' }, 0],
      [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }, 0.25],
      [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' }, 1],
      [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '.5' }, 0.5],
      [{ OTEL_TRACES_SAMPLER: 'always_on', OTEL_SDK_DISABLED: 'true' }, undefined],
    ];
    for (const [env, want] of cases) assert.equal(sampleRatioFromOtelEnvironment(env), want, JSON.stringify(env));
    for (const [env, want] of [
      [{ OTEL_TRACES_SAMPLER: 'always_on' }, /^OTEL_TRACES_SAMPLER: "always_on": Meshlet's sampling follows the caller's sampled flag/],
      [{ OTEL_TRACES_SAMPLER: 'traceidratio' }, /^OTEL_TRACES_SAMPLER: "traceidratio"/],
      [{ OTEL_TRACES_SAMPLER: 'jaeger_remote' }, /^OTEL_TRACES_SAMPLER: "jaeger_remote"/],
      [
        { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '1.5' },
        /^OTEL_TRACES_SAMPLER_ARG: "1.5" must be a ratio/,
      ],
      [
        { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '1e-1' },
        /^OTEL_TRACES_SAMPLER_ARG: "1e-1" must be a ratio/,
      ],
    ] as const)
      assert.throws(
        () => sampleRatioFromOtelEnvironment(env),
        (err: unknown) => err instanceof MeshletError && want.test(err.message),
      );
  });

  it("samples as OpenTelemetry's variables say with a collector from them; without tracing, a bad sampler does not stop the service", async () => {
    const c = await fakeCollector();
    try {
      await oneSpanSent({ OTEL_EXPORTER_OTLP_ENDPOINT: c.origin, OTEL_TRACES_SAMPLER: 'parentbased_always_off' }, (mesh) => {
        const span = mesh.tracing?.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.2/x' });
        assert.equal(span?.recording, false, 'parentbased_always_off: not sampled');
        span?.end(200);
      });
      assert.equal(c.got.length, 0, 'nothing sampled, nothing sent');
    } finally {
      await c.close();
    }
    const mesh = await createMeshFromConfig({
      logger: new MemoryLogger(),
      env: { MESHLET_SERVICE: 'orders', OTEL_TRACES_SAMPLER: 'xray' },
    });
    try {
      assert.equal(mesh.tracing, undefined);
    } finally {
      await mesh.close();
    }
  });

  it("refuses OpenTelemetry's variables naming the variable, never showing a header's value", () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
    const cases: [Record<string, string>, RegExp][] = [
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://127.0.0.1' }, /^OTEL_EXPORTER_OTLP_ENDPOINT: "ftp:.*" must be an http: or https: URL/],
      [
        { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '127.0.0.1:4318' },
        /^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "127\.0\.0\.1:4318" must be an http:/,
      ],
      [
        { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://user:s3cr3t@127.0.0.1:4318' },
        /^OTEL_EXPORTER_OTLP_ENDPOINT: must not carry a user or password/,
      ],
      [{ ...base, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'thrift' }, /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" must be one of/],
      [
        { OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_INSECURE: 'yes' },
        /^OTEL_EXPORTER_OTLP_INSECURE: "yes" must be true or false/,
      ],
      [
        { OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4318', OTEL_EXPORTER_OTLP_INSECURE: 'true' },
        /^OTEL_EXPORTER_OTLP_ENDPOINT: "127\.0\.0\.1:4318\/v1\/traces" must be an http:/,
      ],
      [{ ...base, OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' }, /^OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" must be one of none, gzip/],
      [{ ...base, OTEL_EXPORTER_OTLP_TIMEOUT: '10s' }, /^OTEL_EXPORTER_OTLP_TIMEOUT: "10s" must be milliseconds/],
      [{ ...base, OTEL_EXPORTER_OTLP_TIMEOUT: '0' }, /^OTEL_EXPORTER_OTLP_TIMEOUT: "0" must be milliseconds/],
      [
        { ...base, OTEL_EXPORTER_OTLP_HEADERS: 'authorization=s3cr3t%' },
        /^OTEL_EXPORTER_OTLP_HEADERS: authorization: a bad percent-encoding/,
      ],
    ];
    for (const [env, want] of cases)
      assert.throws(
        () => otlpFromOtelEnvironment(env),
        (err: unknown) => {
          assert.ok(err instanceof MeshletError);
          assert.equal(err.code, 'MESHLET_BAD_OPTION');
          assert.match(err.message, want);
          assert.ok(!err.message.includes('s3cr3t'), err.message);
          return true;
        },
        JSON.stringify(env),
      );
  });

  it('refuses bad collector headers naming the key, never showing a value', async () => {
    const source = 'meshlet.tracing.otlp.headers (MESHLET_TRACING_OTLP_HEADERS)';
    for (const [raw, why] of [
      ['authorization', /pair 1 must be name=value/],
      ['a=1,b c=s3cr3t', /pair 2 must be name=value/],
      ['authorization=s3cr3t%zz', /authorization: a bad percent-encoding/],
      ['authorization=s3cr3t%0D%0Ax-evil: 1', /authorization: must be a string without line breaks, NUL or other characters HTTP refuses/],
      ['a=s3cr3t,A=s3cr3t', /a is given twice/],
      ['Content-Encoding=s3cr3t', /content-encoding: is set by the exporter or by HTTP itself/],
      [`${'n'.repeat(5_000)}=s3cr3t%`, /^.{0,200}: n{80}: a bad percent-encoding/],
      [Array.from({ length: 65 }, (_, i) => `h${i}=s3cr3t`).join(','), /at most 64 headers/],
      [`a=${'s3cr3t'.repeat(10_000)}`, /characters; at most/],
      [`a=s3cr3t${'x'.repeat(14_000)},b=${'%41'.repeat(3_000)}`, /characters; at most 16384 in all/],
    ] as const) {
      assert.throws(
        () => otlpHeadersOf(raw, source),
        (err: unknown) => {
          assert.ok(err instanceof MeshletError);
          assert.equal(err.code, 'MESHLET_BAD_OPTION');
          assert.ok(err.message.startsWith(`${source}: `), err.message);
          assert.match(err.message, why);
          assert.ok(!err.message.includes('s3cr3t'), `a value shown: ${err.message.slice(0, 200)}`);
          return true;
        },
        raw.slice(0, 40),
      );
    }
    assert.deepEqual(otlpHeadersOf(' a = 1 ,, b=%3D ', source), { a: '1', b: '=' });
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
    // The destinations keys, bounded as createMesh bounds `destinations`.
    for (const [env, pattern] of [
      [
        { MESHLET_DESTINATIONS_IDLEMS: '999' },
        /^meshlet\.destinations\.idle-ms \(MESHLET_DESTINATIONS_IDLEMS\): 999 must be a whole number from 1000 to 86400000/,
      ],
      [
        { MESHLET_DESTINATIONS_IDLEMS: '1e4' },
        /^meshlet\.destinations\.idle-ms \(MESHLET_DESTINATIONS_IDLEMS\): "1e4" is not a decimal number/,
      ],
      [
        { MESHLET_DESTINATIONS_MAX: '0' },
        /^meshlet\.destinations\.max \(MESHLET_DESTINATIONS_MAX\): 0 must be a whole number from 1 to 100000/,
      ],
      [{ MESHLET_DESTINATIONS_MAX: '2.5' }, /^meshlet\.destinations\.max \(MESHLET_DESTINATIONS_MAX\): 2\.5 must be a whole number/],
    ] as const)
      assert.match(await refusal({ MESHLET_SERVICE: 'orders', ...env }), pattern);
  });

  it('names meshlet.admin.token (MESHLET_ADMIN_TOKEN) when the configured admin secret is too short, admin.token when the option is', async () => {
    const refusal = async (overrides?: Partial<MeshOptions>) => {
      let caught: unknown;
      await createMeshFromConfig({
        env: { MESHLET_SERVICE: 'orders', MESHLET_ADMIN_TOKEN: 'too-short' },
        logger: new MemoryLogger(),
        ...(overrides ? { overrides } : {}),
      }).then(
        (mesh) => mesh.close(),
        (err: unknown) => {
          caught = err;
        },
      );
      assert.ok(caught instanceof AdminTokenError, 'refused with the admin token error');
      assert.equal(caught.code, 'MESHLET_ADMIN_TOKEN');
      assert.equal(caught.message.includes('too-short'), false, 'the secret is not shown');
      return caught.message;
    };
    assert.match(
      await refusal(),
      /^meshlet\.admin\.token \(MESHLET_ADMIN_TOKEN\): the admin endpoint needs a secret of at least 16 characters/,
    );
    assert.match(await refusal({ admin: { token: 'also-short' } }), /^admin\.token: /);
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

  it('follows destinations as meshlet.destinations.idle-ms and .max say: a second one refused past max 1, one released once idle', async () => {
    /** Open registry watches by service: a destination followed holds one. */
    const open = new Map<string, number>();
    const registry = new (class extends InMemoryRegistry {
      override watch(service: string, listener: InstancesListener): Unsubscribe {
        const un = super.watch(service, listener);
        open.set(service, (open.get(service) ?? 0) + 1);
        return () => {
          open.set(service, (open.get(service) ?? 0) - 1);
          un();
        };
      }
    })();
    const heldResponses: ServerResponse[] = [];
    const upstream = await listen((req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/hold') heldResponses.push(res);
      else res.end('ok');
    });
    for (const service of ['svc-a', 'svc-b'])
      await registry.register({
        id: `${service}-0`,
        service,
        address: '127.0.0.1',
        port: upstream.port,
        tags: [],
        metadata: {},
        health: 'passing',
      });
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const mesh = await createMeshFromConfig({
      env: { MESHLET_SERVICE: 'orders', MESHLET_DESTINATIONS_IDLEMS: '5000', MESHLET_DESTINATIONS_MAX: '1' },
      overrides: { registry, clock },
      logger: new MemoryLogger(),
    });
    try {
      const heldCall = mesh.fetch('http://svc-a/hold');
      while (heldResponses.length === 0) await new Promise((r) => setImmediate(r));
      await assert.rejects(mesh.fetch('http://svc-b/'), TooManyDestinationsError, 'max 1, its one destination busy');
      heldResponses[0]?.end('ok');
      assert.equal(await (await heldCall).text(), 'ok');
      clock.advance(4_999);
      assert.equal(open.get('svc-a'), 1, 'not idle for 5 s yet');
      // Looked for every idleMs when under a minute: released by the second look.
      clock.advance(5_001);
      assert.equal(open.get('svc-a'), 0, 'released after 5 s idle');
    } finally {
      for (const res of heldResponses) res.end();
      await mesh.close();
      await upstream.close();
    }
  });
});
