// createMesh refuses a bad `tracing` option with MESHLET_BAD_OPTION naming the field, before
// anything starts (found by trying it: a trace log of -1 bytes, an empty path, a queue of
// -5 spans, an ftp: collector and misspelt keys were all taken; the log then rotated on
// every line, or was never written, without a word).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { createTracing, defaultTracing, TRACING_BOUNDS } from '@meshlet/trace';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type MeshOptions } from '../src/index.js';

type TracingOption = NonNullable<MeshOptions['tracing']>;
const log = (more: object) => ({ log: { path: '/tmp/meshlet-never-written.jsonl', ...more } });
const exporter = { export() {}, shutdown: async () => {} };

const cases: readonly [string, unknown, string][] = [
  ['tracing that is true', true, 'tracing'],
  ['a misspelt key', { sampleratio: 1 }, 'tracing.sampleratio'],
  ["the service's name (createMesh's own)", { service: 'other' }, 'tracing.service'],
  ["a clock (createMesh's own)", { clock: new ManualClock() }, 'tracing.clock'],
  ['a ratio above 1', { sampleRatio: 1.5 }, 'tracing.sampleRatio'],
  ['a NaN ratio', { sampleRatio: Number.NaN }, 'tracing.sampleRatio'],
  ['a ratio as a string', { sampleRatio: '0.5' }, 'tracing.sampleRatio'],
  ['an empty log path', { log: { path: '' } }, 'tracing.log.path'],
  ['a log without a path', { log: {} }, 'tracing.log.path'],
  ['a log path with a NUL', { log: { path: '/tmp/a\0b' } }, 'tracing.log.path'],
  ['a log path too long', { log: { path: `/tmp/${'a'.repeat(TRACING_BOUNDS.logPathChars)}` } }, 'tracing.log.path'],
  ['a negative log size', log({ maxBytes: -1 }), 'tracing.log.maxBytes'],
  ['a log size of 0', log({ maxBytes: 0 }), 'tracing.log.maxBytes'],
  ['a log size under a line', log({ maxBytes: TRACING_BOUNDS.logBytes.min - 1 }), 'tracing.log.maxBytes'],
  ['a fractional log size', log({ maxBytes: 65_536.5 }), 'tracing.log.maxBytes'],
  ['a log format not known', log({ format: 'xml' }), 'tracing.log.format'],
  ['a log format not a string', log({ format: 1 }), 'tracing.log.format'],
  ['a billion rotated files', log({ maxFiles: 1e9 }), 'tracing.log.maxFiles'],
  ['no rotated file', log({ maxFiles: 0 }), 'tracing.log.maxFiles'],
  ['a misspelt log key', log({ maxbytes: 1e6 }), 'tracing.log.maxbytes'],
  ['a negative queue', { batch: { maxQueueSize: -5 } }, 'tracing.batch.maxQueueSize'],
  ['batches of no span', { batch: { maxBatchSize: 0 } }, 'tracing.batch.maxBatchSize'],
  ['a negative batch delay', { batch: { delayMs: -1 } }, 'tracing.batch.delayMs'],
  ['an infinite batch delay', { batch: { delayMs: Infinity } }, 'tracing.batch.delayMs'],
  ['APIs beyond the bound', { metrics: { maxApisPerService: 1e12 } }, 'tracing.metrics.maxApisPerService'],
  ['no bucket', { metrics: { buckets: [] } }, 'tracing.metrics.buckets'],
  ['a bucket that is a string', { metrics: { buckets: [0.1, 'x'] } }, 'tracing.metrics.buckets[1]'],
  ['a bucket twice', { metrics: { buckets: [0.1, 0.1] } }, 'tracing.metrics.buckets[1]'],
  ['a negative bucket', { metrics: { buckets: [-1] } }, 'tracing.metrics.buckets[0]'],
  ['metrics that are true', { metrics: true }, 'tracing.metrics'],
  ['an ftp: collector', { otlp: { url: 'ftp://127.0.0.1/v1/traces' } }, 'tracing.otlp.url'],
  ['a collector that is not a URL', { otlp: { url: '127.0.0.1:4318' } }, 'tracing.otlp.url'],
  [
    'a collector header with a line break',
    { otlp: { url: 'http://127.0.0.1:4318', headers: { a: 'b\r\nc: d' } } },
    'tracing.otlp.headers.a',
  ],
  [
    'a collector header the exporter sets',
    { otlp: { url: 'http://127.0.0.1:4318', headers: { 'Content-Type': 'text/plain' } } },
    'tracing.otlp.headers.Content-Type',
  ],
  [
    'a collector header of HTTP framing',
    { otlp: { url: 'http://127.0.0.1:4318', headers: { 'transfer-encoding': 'chunked' } } },
    'tracing.otlp.headers.transfer-encoding',
  ],
  ['collector headers as a string', { otlp: { url: 'http://127.0.0.1:4318', headers: 'authorization=x' } }, 'tracing.otlp.headers'],
  ['a collector header name with a space', { otlp: { url: 'http://127.0.0.1:4318', headers: { 'a b': 'c' } } }, 'tracing.otlp.headers'],
  ['a collector timeout of 0', { otlp: { url: 'http://127.0.0.1:4318', timeoutMs: 0 } }, 'tracing.otlp.timeoutMs'],
  ['an OTLP protocol it does not speak', { otlp: { url: 'http://127.0.0.1:4318', protocol: 'http/thrift' } }, 'tracing.otlp.protocol'],
  ['an OTLP compression it does not speak', { otlp: { url: 'http://127.0.0.1:4318', compression: 'br' } }, 'tracing.otlp.compression'],
  ['a logger under tracing (the mesh gives its own)', { logger: console }, 'tracing.logger'],
  ['an unknown propagation format', { propagation: { emit: ['jaeger'] } }, 'tracing.propagation.emit[0]'],
  ['no propagation format', { propagation: { emit: [] } }, 'tracing.propagation.emit'],
  ['baggage as a string', { propagation: { baggage: 'yes' } }, 'tracing.propagation.baggage'],
  ['an exporter without export', { exporters: [{ shutdown: async () => {} }] }, 'tracing.exporters[0]'],
  ['exporters beyond the bound', { exporters: Array(TRACING_BOUNDS.exporters + 1).fill(exporter) }, 'tracing.exporters'],
  ['an id generator without span ids', { idGenerator: { generateTraceId: () => '' } }, 'tracing.idGenerator'],
  ['a meter provider that is a string', { meterProvider: 'prometheus' }, 'tracing.meterProvider'],
];

const base = () => ({
  service: 'options-check',
  registry: new InMemoryRegistry(),
  rules: new InMemoryKvStore(),
  logger: new MemoryLogger(),
});

for (const [what, tracing, field] of cases) {
  it(`refuses ${what}, naming ${field}, and makes no tracing`, async () => {
    const before = defaultTracing();
    let refused: unknown;
    try {
      const mesh = createMesh({ ...base(), tracing: tracing as TracingOption });
      await mesh.close();
    } catch (err) {
      refused = err;
    }
    assert.ok(refused, `createMesh took tracing with ${what}`);
    const message = (refused as Error).message;
    assert.equal((refused as { code?: string }).code, 'MESHLET_BAD_OPTION', message);
    assert.ok(message.startsWith(`${field}:`), `${message.slice(0, 200)} names ${field}`);
    assert.ok(message.length < 400, `a message of ${message.length} characters`);
    assert.equal(defaultTracing(), before, 'the refused createMesh made no tracing');
  });
}

it('refuses a collector URL with a user or password, without showing it (the URL is logged with each failed export)', () => {
  for (const url of ['http://orders:s3cr3t@127.0.0.1:4318/v1/traces', 'https://:s3cr3t@collector.example/v1/traces']) {
    assert.throws(
      () => createMesh({ ...base(), tracing: { otlp: { url } } }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'MESHLET_BAD_OPTION');
        assert.ok(err.message.startsWith('tracing.otlp.url: must not carry a user or password'), err.message);
        assert.ok(!err.message.includes('s3cr3t'), `the URL is shown: ${err.message}`);
        return true;
      },
    );
  }
});

it("refuses a collector header's bad value without showing it (a header carries the collector's credential)", () => {
  const secret = 'Bearer s3cr3t-token';
  assert.throws(
    () => createMesh({ ...base(), tracing: { otlp: { url: 'http://127.0.0.1:4318', headers: { authorization: `${secret}\n` } } } }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'MESHLET_BAD_OPTION');
      assert.ok(err.message.startsWith('tracing.otlp.headers.authorization:'), err.message);
      assert.ok(!err.message.includes('s3cr3t'), `the value is shown: ${err.message}`);
      return true;
    },
  );
});

it('takes every option at its bounds, and a Tracing made by createTracing as it is', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-tracing-options-'));
  const meshes = [];
  try {
    meshes.push(
      createMesh({
        ...base(),
        tracing: {
          sampleRatio: 0,
          propagation: { emit: ['w3c', 'b3', 'b3multi'], baggage: false },
          log: { path: join(dir, 'spans.jsonl'), maxBytes: TRACING_BOUNDS.logBytes.min, maxFiles: TRACING_BOUNDS.logFiles.max },
          otlp: {
            url: 'https://127.0.0.1:4318/v1/traces',
            headers: { authorization: 'Bearer x' },
            timeoutMs: 600_000,
            protocol: 'http/json',
            compression: 'gzip',
          },
          exporters: [new InMemorySpanExporter()],
          batch: { maxQueueSize: TRACING_BOUNDS.queueSize.max, maxBatchSize: 1, delayMs: 0 },
          metrics: { buckets: [0.001, 0.01, 1], maxApisPerService: TRACING_BOUNDS.apisPerService.max },
        },
      }),
    );
    meshes.push(createMesh({ ...base(), tracing: { metrics: false } }));
    // Headers as a function (a token that expires): taken; what it gives is checked when it gives it.
    meshes.push(
      createMesh({
        ...base(),
        tracing: { otlp: { url: 'http://127.0.0.1:4318/v1/traces', headers: async () => ({ authorization: 'Bearer x' }) } },
      }),
    );
    const own = createTracing({ service: 'options-check', clock: new ManualClock(), sampleRatio: 1 });
    const mesh = createMesh({ ...base(), tracing: own });
    meshes.push(mesh);
    assert.equal(mesh.tracing, own);
  } finally {
    for (const m of meshes) await m.close();
    await rm(dir, { recursive: true, force: true });
  }
});

it('createTracing refuses the same values naming the field without the prefix, and needs a service', () => {
  assert.throws(
    () => createTracing({ service: 's', log: { path: '/tmp/x.jsonl', maxBytes: -1 } }),
    (e: unknown) => (e as { code?: string }).code === 'MESHLET_BAD_OPTION' && (e as Error).message.startsWith('log.maxBytes: '),
  );
  assert.throws(
    () => createTracing({ service: '' }),
    (e: unknown) => (e as Error).message.startsWith('service: '),
  );
  assert.throws(
    () => createTracing({ service: 's', bogus: 1 } as never),
    (e: unknown) => (e as Error).message.startsWith('options.bogus: '),
  );
  // A logger without warn would fail at the first failed export: refused when made.
  assert.throws(
    () => createTracing({ service: 's', logger: { info() {} } as never }),
    (e: unknown) => (e as { code?: string }).code === 'MESHLET_BAD_OPTION' && (e as Error).message.startsWith('logger'),
  );
});
