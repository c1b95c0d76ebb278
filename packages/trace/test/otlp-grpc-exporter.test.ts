import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer as createNetServer } from 'node:net';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type LogFields, ManualClock, MeshletError } from '@meshlet/core';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import {
  checkTracingOptions,
  decodeTraceProto,
  encodeTraceProto,
  OtlpExportError,
  OtlpGrpcExporter,
  type OtlpHttpOptions,
  retryDelayOfStatusDetails,
} from '../src/index.js';
import { randomSpans } from './span-samples.js';

// The OTLP/gRPC exporter against a grpc-js server on loopback that answers the collector's
// TraceService/Export as each test says: metadata, retries, refusals, a partial success.
// The real Collector's gRPC receiver is in otel-collector.test.ts.

const EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/** What the server got: the request's bytes and its metadata. */
interface Got {
  readonly body: Buffer;
  readonly metadata: Record<string, unknown>;
}

/** A collector answering the n-th call (from 0) with `answer`: a status error, the response bytes, or (`silent`) nothing. */
async function collector(
  answer: (n: number) => { code: grpc.status; details?: string; metadata?: grpc.Metadata } | Buffer | 'silent',
): Promise<{ url: string; got: Got[] }> {
  const got: Got[] = [];
  const server = new grpc.Server();
  server.register<Buffer, Buffer>(
    EXPORT,
    (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      got.push({ body: call.request, metadata: call.metadata.getMap() });
      const a = answer(got.length - 1);
      if (a === 'silent') return;
      if (Buffer.isBuffer(a)) callback(null, a);
      else callback({ code: a.code, details: a.details ?? '', ...(a.metadata ? { metadata: a.metadata } : {}) }, null);
    },
    (b: Buffer) => b,
    (b: Buffer) => b,
    'unary',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  servers.push(server);
  return { url: `http://127.0.0.1:${port}`, got };
}

/** A ManualClock that also keeps the delay of every timer armed. */
class RecordingClock extends ManualClock {
  readonly armed: number[] = [];
  override setTimeout(fn: () => void, ms: number): () => void {
    this.armed.push(ms);
    return super.setTimeout(fn, ms);
  }
}

const servers: grpc.Server[] = [];
const exporters: OtlpGrpcExporter[] = [];
after(async () => {
  for (const e of exporters) await e.shutdown();
  for (const s of servers) s.forceShutdown();
});

function exporterFor(
  options: Omit<OtlpHttpOptions, 'protocol'>,
  clock: ManualClock = new RecordingClock(1_000_000),
  warnings: LogFields[] = [],
) {
  const logger = { debug() {}, info() {}, warn: (_m: string, f?: LogFields) => warnings.push(f ?? {}), error() {} };
  const e = new OtlpGrpcExporter({ ...options, protocol: 'grpc' }, { clock, logger, random: () => 0.5 });
  exporters.push(e);
  return e;
}

const spans = randomSpans(21);
const exported = (e: OtlpGrpcExporter): Promise<ExportResult> => new Promise((resolve) => e.export(spans, resolve));

/** Waits (real time, polling) until `probe` holds. */
async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (probe()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`not reached: ${what}`);
}

const empty = () => Buffer.alloc(0);

/** A protobuf length-delimited field. */
const field = (n: number, bytes: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, bytes.length]), bytes]);
/** grpc-status-details-bin: a google.rpc.Status with a RetryInfo of `seconds` and `nanos` (and another detail before it). */
function retryInfo(seconds: number, nanos: number): grpc.Metadata {
  const duration = Buffer.from([0x08, seconds, 0x10, ...varint(nanos)]);
  const other = field(3, Buffer.concat([field(1, Buffer.from('type.googleapis.com/google.rpc.DebugInfo')), field(2, Buffer.from([]))]));
  const any = Buffer.concat([field(1, Buffer.from('type.googleapis.com/google.rpc.RetryInfo')), field(2, field(1, duration))]);
  const md = new grpc.Metadata();
  md.set('grpc-status-details-bin', Buffer.concat([Buffer.from([0x08, 8]), other, field(3, any)]));
  return md;
}
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

describe('OtlpGrpcExporter', () => {
  it('sends the protobuf request the trace log writes (without its size prefix), the headers as metadata', async () => {
    const c = await collector(empty);
    const plain = exporterFor({ url: c.url, headers: { 'x-tenant': 'blue' } });
    assert.equal((await exported(plain)).code, ExportResultCode.SUCCESS);
    const want = encodeTraceProto(spans).subarray(4);
    assert.deepEqual(c.got[0]?.body, want);
    assert.deepEqual(decodeTraceProto(c.got[0]?.body as Buffer), decodeTraceProto(want));
    assert.equal(c.got[0]?.metadata['x-tenant'], 'blue');
  });

  it("compresses with gzip as gRPC's message encoding: fewer bytes on the wire, the same request at the server", async () => {
    const c = await collector(empty);
    // Bytes from the exporter to the collector, through a counting proxy (grpc-js keeps grpc-encoding from the server's metadata).
    let sent = 0;
    const target = Number(new URL(c.url).port);
    const proxy = createNetServer((socket) => {
      const upstream = connect(target, '127.0.0.1');
      socket.on('data', (d: Buffer) => {
        sent += d.length;
      });
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const via = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const bytes: number[] = [];
      for (const compression of ['none', 'gzip'] as const) {
        const e = exporterFor({ url: via, compression });
        sent = 0;
        assert.equal((await exported(e)).code, ExportResultCode.SUCCESS, compression);
        await e.shutdown();
        bytes.push(sent);
      }
      assert.ok((bytes[1] as number) < 0.8 * (bytes[0] as number), `gzip ${bytes[1]} bytes against ${bytes[0]}`);
      assert.deepEqual(c.got[1]?.body, c.got[0]?.body, 'the same request once the server decompressed it');
    } finally {
      proxy.close();
    }
  });

  it('retries UNAVAILABLE after a backoff on the injected clock, and succeeds', async () => {
    const c = await collector((n) => (n === 0 ? { code: grpc.status.UNAVAILABLE, details: 'draining' } : empty()));
    const clock = new RecordingClock(1_000_000);
    const result = exported(exporterFor({ url: c.url }, clock));
    await until('the backoff armed', () => clock.armed.includes(1000));
    assert.equal(c.got.length, 1);
    clock.advance(1000);
    assert.equal((await result).code, ExportResultCode.SUCCESS);
    assert.equal(c.got.length, 2);
    assert.deepEqual(c.got[1]?.body, c.got[0]?.body);
  });

  it("cancels an attempt the collector does not answer when its time passes on the exporter's clock", async () => {
    const c = await collector(() => 'silent');
    const clock = new RecordingClock(1_000_000);
    const result = exported(exporterFor({ url: c.url, timeoutMs: 10_000 }, clock));
    await until('the call reached the collector', () => c.got.length === 1);
    assert.ok(clock.armed.includes(10_000), `the attempt's timer, armed: ${clock.armed}`);
    clock.advance(10_000);
    const r = await result;
    assert.equal(r.code, ExportResultCode.FAILED);
    assert.match(String(r.error?.message), /^no answer in 10000 ms \(1 attempt\)$/);
    assert.equal(c.got.length, 1, 'no time left for another attempt');
  });

  for (const code of [grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNAVAILABLE]) {
    it(`waits the server's RetryInfo delay after ${grpc.status[code]} (the gRPC Retry-After), and succeeds`, async () => {
      const c = await collector((n) => (n === 0 ? { code, details: 'busy', metadata: retryInfo(2, 500_000_000) } : empty()));
      const clock = new RecordingClock(1_000_000);
      const result = exported(exporterFor({ url: c.url }, clock));
      await until('the wait armed', () => clock.armed.includes(2500));
      assert.ok(!clock.armed.includes(1000), 'not its own backoff');
      clock.advance(2500);
      assert.equal((await result).code, ExportResultCode.SUCCESS);
      assert.equal(c.got.length, 2);
    });
  }

  it('reads a RetryInfo delay from status details, bounded, and none from anything else', () => {
    const details = (md: grpc.Metadata) => md.get('grpc-status-details-bin')[0] as Buffer;
    assert.equal(retryDelayOfStatusDetails(details(retryInfo(2, 500_000_000))), 2500);
    assert.equal(retryDelayOfStatusDetails(details(retryInfo(0, 0))), 0);
    assert.equal(retryDelayOfStatusDetails(Buffer.from([0x08, 8])), undefined, 'a status with no details');
    assert.equal(retryDelayOfStatusDetails(Buffer.from([0x1a, 0x7f, 0x01])), undefined, 'a detail cut short');
    assert.equal(retryDelayOfStatusDetails(Buffer.alloc(70 * 1024, 0x1a)), undefined, 'past 64 KiB');
    const hour = Buffer.concat([
      Buffer.from([0x08, 8]),
      field(
        3,
        Buffer.concat([
          field(1, Buffer.from('type.googleapis.com/google.rpc.RetryInfo')),
          field(2, field(1, Buffer.from([0x08, ...varint(3600)]))),
        ]),
      ),
    ]);
    assert.equal(retryDelayOfStatusDetails(hour), 600_000, 'an hour is taken as ten minutes');
  });

  for (const code of [grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED, grpc.status.RESOURCE_EXHAUSTED]) {
    it(`fails a batch answered ${grpc.status[code]} (no RetryInfo) at once, without a retry, naming the status`, async () => {
      const c = await collector(() => ({ code, details: 'no' }));
      const r = await exported(exporterFor({ url: c.url }));
      assert.equal(r.code, ExportResultCode.FAILED);
      assert.ok(r.error instanceof OtlpExportError);
      assert.equal(r.error.attempts, 1);
      assert.match(r.error.message, new RegExp(`^collector answered gRPC ${grpc.status[code]} \\(${code}\\): no`));
      assert.equal(c.got.length, 1);
    });
  }

  it('fails a collector it cannot reach within the batch timeout, naming UNAVAILABLE', async () => {
    const r = await exported(exporterFor({ url: 'http://127.0.0.1:9', timeoutMs: 200 }, new ManualClock(0)));
    assert.equal(r.code, ExportResultCode.FAILED);
    assert.match(String(r.error?.message), /gRPC UNAVAILABLE \(14\)/);
  });

  it("logs a collector's partial success and counts the batch as sent", async () => {
    // ExportTraceServiceResponse { partial_success { rejected_spans: 3, error_message: "too old" } }
    const message = Buffer.from('too old');
    const inner = Buffer.concat([Buffer.from([0x08, 3, 0x12, message.length]), message]);
    const c = await collector(() => Buffer.concat([Buffer.from([0x0a, inner.length]), inner]));
    const warnings: LogFields[] = [];
    assert.equal((await exported(exporterFor({ url: c.url }, new ManualClock(0), warnings))).code, ExportResultCode.SUCCESS);
    assert.equal(warnings[0]?.code, 'MESHLET_OTLP_PARTIAL_SUCCESS');
    assert.equal(warnings[0]?.rejectedSpans, 3);
  });

  it('refuses headers gRPC reserves or takes as bytes, given or from a function, sending nothing', async () => {
    for (const name of ['grpc-timeout', 'x-trace-bin'])
      assert.throws(
        () => exporterFor({ url: 'http://127.0.0.1:4317', headers: { [name]: 'v' } }),
        (err: unknown) => err instanceof MeshletError && err.message.startsWith(`otlp.headers.${name}: `),
      );
    assert.throws(
      () => checkTracingOptions({ otlp: { url: 'http://127.0.0.1:4317', protocol: 'grpc', headers: { 'Grpc-Timeout': '1S' } } }, 'tracing'),
      /^MeshletError: tracing\.otlp\.headers\.Grpc-Timeout: is reserved by gRPC/,
    );
    // A value grpc-js would refuse with an error that shows it (a credential, maybe).
    assert.throws(
      () =>
        checkTracingOptions(
          { otlp: { url: 'http://127.0.0.1:4317', protocol: 'grpc', headers: { authorization: 'Bearer s3cr3t-é' } } },
          'tracing',
        ),
      (err: unknown) =>
        err instanceof MeshletError &&
        /^tracing\.otlp\.headers\.authorization: must be printable ASCII/.test(err.message) &&
        !err.message.includes('s3cr3t'),
    );
    const c = await collector(empty);
    const fromFunction = await exported(exporterFor({ url: c.url, headers: () => ({ authorization: 'Bearer s3cr3t-é' }) }));
    assert.equal(fromFunction.code, ExportResultCode.FAILED);
    assert.equal((fromFunction.error as OtlpExportError).attempts, 1, 'refused, not retried');
    assert.ok(!String(fromFunction.error?.message).includes('s3cr3t'), String(fromFunction.error?.message));
    const r = await exported(exporterFor({ url: c.url, headers: () => ({ 'grpc-status': '0' }) }));
    assert.equal(r.code, ExportResultCode.FAILED);
    assert.match(String(r.error?.message), /^otlp\.headers\.grpc-status: is reserved by gRPC/);
    assert.equal(c.got.length, 0);
  });

  it('shows the collector by its origin, and is made only for protocol grpc', () => {
    assert.equal(exporterFor({ url: 'http://127.0.0.1:4317/ignored?key=s3cr3t' }).url, 'http://127.0.0.1:4317');
    assert.throws(() => new OtlpGrpcExporter({ url: 'http://127.0.0.1:4317' }), /otlp\.protocol: OtlpGrpcExporter speaks 'grpc' only/);
  });
});
