import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import {
  createTracing,
  encodeTraceLine,
  type OtlpCompression,
  OtlpGrpcExporter,
  OtlpHttpExporter,
  type OtlpProtocol,
} from '../src/index.js';
import { asUtf8, randomSpans, tracedSpans } from './span-samples.js';

// The OTLP exporter against a real OpenTelemetry Collector (test/interop/otel-collector,
// built by scripts/otel-collector.sh: the collector's own OTLP receiver and file exporter,
// v0.161.0). What the collector decoded and wrote back as OTLP/JSON must be the request
// the trace log writes for the same spans, in both protocols.

const BIN = process.env.MESHLET_OTELCOL;

/** A port free on loopback now (the collector binds it next; a race lost is retried with another). */
async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

interface Collector {
  readonly url: string;
  /** Its OTLP/gRPC receiver's address. */
  readonly grpcUrl: string;
  /** The requests the file exporter wrote so far, parsed. */
  received(): Promise<unknown[]>;
  stop(): Promise<void>;
}

/** The test CA and the certificate the collector serves and the exporter shows (test/fixtures/tls at the root). */
const fixture = (name: string) => fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url));

/** With `mutualTls`, the collector serves HTTPS with the fixtures' certificate and asks for a client certificate of their CA. */
async function startCollector(dir: string, mutualTls = false): Promise<Collector> {
  if (!BIN) throw new Error('MESHLET_OTELCOL is not set: run scripts/otel-collector.sh (npm test does) and set it to the path it prints');
  let lastLog = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const grpcPort = await freePort();
    const tls = mutualTls
      ? [
          '        tls:',
          `          cert_file: ${fixture('server.pem')}`,
          `          key_file: ${fixture('server.key')}`,
          `          client_ca_file: ${fixture('ca.pem')}`,
        ]
      : [];
    const out = join(dir, `received-${attempt}.jsonl`);
    const config = join(dir, `collector-${attempt}.yaml`);
    await writeFile(
      config,
      [
        'receivers:',
        '  otlp:',
        '    protocols:',
        '      http:',
        `        endpoint: 127.0.0.1:${port}`,
        ...tls,
        '      grpc:',
        `        endpoint: 127.0.0.1:${grpcPort}`,
        ...tls,
        'exporters:',
        '  file:',
        `    path: ${out}`,
        '    flush_interval: 50ms',
        'service:',
        '  telemetry:',
        '    metrics:',
        '      level: none',
        '  pipelines:',
        '    traces:',
        '      receivers: [otlp]',
        '      exporters: [file]',
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(BIN, [`--config=file:${config}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr?.on('data', (c: Buffer) => {
      log = (log + c.toString('utf8')).slice(-20_000);
    });
    const ready = await new Promise<boolean>((resolve) => {
      const onData = () => {
        if (log.includes('Everything is ready')) resolve(true);
      };
      child.stderr?.on('data', onData);
      child.once('exit', () => resolve(false));
    });
    if (!ready) {
      lastLog = log;
      continue; // the port was taken between freePort and the bind
    }
    return {
      url: `${mutualTls ? 'https' : 'http'}://127.0.0.1:${port}/v1/traces`,
      grpcUrl: `${mutualTls ? 'https' : 'http'}://127.0.0.1:${grpcPort}`,
      async received() {
        const text = await readFile(out, 'utf8').catch(() => '');
        // Whole lines only: the exporter's buffer is flushed as it fills, mid-line too.
        return text
          .slice(0, text.lastIndexOf('\n') + 1)
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as unknown);
      },
      async stop() {
        if (child.exitCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      },
    };
  }
  throw new Error(`the collector did not start in three tries:\n${lastLog.slice(-2000)}`);
}

/** Polls (real time) until `probe` gives a value: the collector writes on its own schedule. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not reached in 30 s: ${what}`);
}

/**
 * One request's OTLP/JSON as a comparable value: the collector's marshaller leaves out
 * what is empty or zero (a status with no code, a scope with no name, a zero count) and
 * the trace log leaves out other such fields, so both are compared without them; spans
 * are put in span-id order per scope.
 */
function comparable(v: unknown): unknown {
  if (Array.isArray(v)) {
    const items = v.map(comparable).filter((x) => !isEmpty(x));
    if (items.every((x) => typeof x === 'object' && x !== null && 'spanId' in x))
      items.sort((a, b) => String((a as { spanId: string }).spanId).localeCompare(String((b as { spanId: string }).spanId)));
    return items;
  }
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const c = comparable(x);
      if (!isEmpty(c)) out[k] = c;
    }
    return out;
  }
  return v;
}
const isEmpty = (x: unknown): boolean =>
  x === undefined ||
  x === null ||
  x === '' ||
  x === 0 ||
  x === false ||
  (Array.isArray(x) && x.length === 0) ||
  (typeof x === 'object' && x !== null && Object.keys(x).length === 0);

/** The spans of requests, as comparable values, keyed by resource and scope. */
function spansOf(requests: readonly unknown[]): unknown {
  const groups = new Map<string, unknown[]>();
  for (const req of requests)
    for (const rs of (req as { resourceSpans: { resource?: unknown; scopeSpans: { scope?: unknown; spans: unknown[] }[] }[] })
      .resourceSpans)
      for (const ss of rs.scopeSpans) {
        const k = JSON.stringify([comparable(rs.resource ?? {}), comparable(ss.scope ?? {})]);
        groups.set(k, [...(groups.get(k) ?? []), ...ss.spans]);
      }
  return Object.fromEntries([...groups].sort(([a], [b]) => a.localeCompare(b)).map(([k, spans]) => [k, comparable(spans)]));
}

describe('the OTLP exporter against a real OpenTelemetry Collector (OTLP receiver, file exporter)', () => {
  let dir = '';
  let collector: Collector;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-otelcol-'));
    collector = await startCollector(dir);
  });
  after(async () => {
    await collector?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Waits until the collector has written `n` requests; returns those after the first `from`. */
  const requestsAfter = (from: number, n: number) =>
    eventually(`${n} requests written by the collector`, async () => {
      const all = await collector.received();
      return all.length >= n ? all.slice(from) : undefined;
    });

  const kinds: [OtlpProtocol, OtlpCompression][] = [
    ['http/protobuf', 'none'],
    ['http/json', 'none'],
    ['http/protobuf', 'gzip'],
    ['http/json', 'gzip'],
    ['grpc', 'none'],
    ['grpc', 'gzip'],
  ];
  for (const [i, [protocol, compression]] of kinds.entries()) {
    it(`takes a batch sent as ${protocol}, compression ${compression}, as the request the trace log writes: a Tracing's spans of every kind, random records`, async () => {
      const spans: ReadableSpan[] = [...(await tracedSpans(`orders-${protocol}-${compression}`)), ...randomSpans(100 + i)];
      const exporter =
        protocol === 'grpc'
          ? new OtlpGrpcExporter({ url: collector.grpcUrl, protocol, compression })
          : new OtlpHttpExporter({ url: collector.url, protocol, compression });
      try {
        const before = (await collector.received()).length;
        const result = await new Promise<{ code: number; error?: Error }>((resolve) => exporter.export(spans, resolve));
        assert.equal(result.code, ExportResultCode.SUCCESS, String(result.error));
        const got = await requestsAfter(before, before + 1);
        assert.equal(got.length, 1);
        const want = asUtf8(JSON.parse(encodeTraceLine(spans)));
        assert.deepEqual(spansOf(got), spansOf([want]));
      } finally {
        await exporter.shutdown();
      }
    });
  }

  it("gets a Tracing's spans through its batch queue, the same as its own trace log has them", async () => {
    const log = join(dir, 'spans.jsonl');
    const tracing = createTracing({ service: 'payments', otlp: { url: collector.url }, log: { path: log }, batch: { maxBatchSize: 4 } });
    const before = (await collector.received()).length;
    const server = tracing.startServerSpan({}, 'POST', '/pay/:id', { target: '/pay/9' });
    await server.run(async () => {
      for (let k = 0; k < 10; k++)
        tracing
          .startClientSpan(undefined, { method: 'GET', url: `http://10.0.0.${k}/ledger/${k}`, service: 'ledger', attempt: 1 })
          .end(200);
      await tracing.inSpan('settle', async () => {});
    });
    server.end(201);
    await tracing.shutdown();
    assert.equal(tracing.stats.exported, 24, 'twelve spans, to each of two exporters');
    assert.equal(tracing.stats.failed, 0);
    // The trace log's lines: OTLP/JSON requests of the same spans.
    const requests = (await readFile(log, 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as unknown);
    const got = await eventually('every span at the collector', async () => {
      const all = (await collector.received()).slice(before);
      const n = all.reduce<number>(
        (sum, r) =>
          sum +
          (r as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] }).resourceSpans
            .flatMap((rs) => rs.scopeSpans)
            .reduce((s, ss) => s + ss.spans.length, 0),
        0,
      );
      return n >= 12 ? all : undefined;
    });
    assert.deepEqual(spansOf(got), spansOf(requests));
  });
});

describe('the OTLP exporter against a real OpenTelemetry Collector over mutual TLS (the test CA, a client certificate asked for)', () => {
  let dir = '';
  let collector: Collector;
  const tls = async () => ({
    ca: await readFile(fixture('ca.pem'), 'utf8'),
    cert: await readFile(fixture('server.pem'), 'utf8'),
    key: await readFile(fixture('server.key'), 'utf8'),
  });
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-otelcol-tls-'));
    collector = await startCollector(dir, true);
  });
  after(async () => {
    await collector?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("takes a Tracing's spans from an exporter given the CA and a client certificate, as the trace log has them", async () => {
    assert.match(collector.url, /^https:/);
    const log = join(dir, 'spans.jsonl');
    const tracing = createTracing({ service: 'payments', otlp: { url: collector.url, tls: await tls() }, log: { path: log } });
    for (let k = 0; k < 5; k++)
      tracing.startClientSpan(undefined, { method: 'GET', url: `http://10.0.0.${k}/ledger/${k}`, service: 'ledger', attempt: 1 }).end(200);
    await tracing.shutdown();
    assert.equal(tracing.stats.failed, 0);
    const requests = (await readFile(log, 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as unknown);
    const got = await eventually('the batch at the collector', async () => {
      const all = await collector.received();
      return all.length >= 1 ? all : undefined;
    });
    assert.deepEqual(spansOf(got), spansOf(requests));
  });

  it("takes a Tracing's spans over OTLP/gRPC with the CA and a client certificate", async () => {
    const before = (await collector.received()).length;
    const tracing = createTracing({ service: 'payments-grpc', otlp: { url: collector.grpcUrl, protocol: 'grpc', tls: await tls() } });
    for (let k = 0; k < 3; k++)
      tracing.startClientSpan(undefined, { method: 'GET', url: `http://10.0.0.${k}/ledger/${k}`, service: 'ledger', attempt: 1 }).end(200);
    await tracing.shutdown();
    assert.equal(tracing.stats.failed, 0);
    assert.equal(tracing.stats.exported, 3);
    const got = await eventually('the gRPC batch at the collector', async () => {
      const all = await collector.received();
      return all.length > before ? all.slice(before) : undefined;
    });
    assert.equal(JSON.stringify(got).includes('payments-grpc'), true);
  });

  it('is refused by the collector without a client certificate, and refuses a collector its CA did not sign', async () => {
    const { ca } = await tls();
    const spans = randomSpans(7);
    for (const options of [{ tls: { ca } }, {}]) {
      const exporter = new OtlpHttpExporter({ url: collector.url, timeoutMs: 500, ...options });
      try {
        const result = await new Promise<{ code: number; error?: Error }>((resolve) => exporter.export(spans, resolve));
        assert.equal(result.code, ExportResultCode.FAILED, JSON.stringify(options));
      } finally {
        await exporter.shutdown();
      }
    }
    for (const options of [{ tls: { ca } }, {}]) {
      const exporter = new OtlpGrpcExporter({ url: collector.grpcUrl, protocol: 'grpc', timeoutMs: 500, ...options });
      try {
        const result = await new Promise<{ code: number; error?: Error }>((resolve) => exporter.export(spans, resolve));
        assert.equal(result.code, ExportResultCode.FAILED, `grpc ${JSON.stringify(options)}`);
      } finally {
        await exporter.shutdown();
      }
    }
    assert.equal((await collector.received()).length, 2, "only the first two tests' batches got in");
  });
});
