import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { type LogFields, ManualClock } from '@meshlet/core';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import {
  createTracing,
  decodeTraceProto,
  encodeTraceLine,
  encodeTraceProto,
  OtlpExportError,
  OtlpHttpExporter,
  type OtlpHttpOptions,
} from '../src/index.js';
import { retryAfterMs } from '../src/otlp-http-exporter.js';
import { randomSpans } from './span-samples.js';

/** A request as the fake collector got it. */
interface Got {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

/** A collector on loopback answering each request with `answer` (the n-th request, from 0). */
async function collector(answer: (n: number, res: ServerResponse) => void): Promise<{ url: string; got: Got[]; server: Server }> {
  const got: Got[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      answer(got.length - 1, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, got, server };
}

/** A ManualClock that also keeps the delay of every timer armed: a test waits for the backoff it expects, not for any timer. */
class RecordingClock extends ManualClock {
  readonly armed: number[] = [];
  override setTimeout(fn: () => void, ms: number): () => void {
    this.armed.push(ms);
    return super.setTimeout(fn, ms);
  }
}

const servers: Server[] = [];
const exporters: OtlpHttpExporter[] = [];
after(async () => {
  for (const e of exporters) await e.shutdown();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function exporterFor(
  options: OtlpHttpOptions,
  clock: ManualClock = new RecordingClock(1_000_000),
  warnings: LogFields[] = [],
): OtlpHttpExporter {
  const logger = { debug() {}, info() {}, warn: (_m: string, f?: LogFields) => warnings.push(f ?? {}), error() {} };
  const e = new OtlpHttpExporter(options, { clock, logger, random: () => 0.5 });
  exporters.push(e);
  return e;
}

const exported = (e: OtlpHttpExporter, spans: ReadableSpan[]): Promise<ExportResult> => new Promise((resolve) => e.export(spans, resolve));

/** Waits (on real time, polling) until `probe` holds: for what the exporter does on its own. */
async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (probe()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`not reached: ${what}`);
}

const ok = (_n: number, res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
const status =
  (code: number, headers: Record<string, string> = {}) =>
  (_n: number, res: ServerResponse) =>
    res.writeHead(code, headers).end();

describe('OtlpHttpExporter', () => {
  const spans = randomSpans(7);

  it('POSTs each batch as OTLP protobuf by default: the request the trace log writes, without its size prefix, and the headers given', async () => {
    const c = await collector(ok);
    const e = exporterFor({ url: c.url, headers: { authorization: 'Bearer t' } });
    assert.equal((await exported(e, spans)).code, ExportResultCode.SUCCESS);
    const [req] = c.got;
    assert.equal(req?.path, '/v1/traces');
    assert.equal(req?.headers['content-type'], 'application/x-protobuf');
    assert.equal(req?.headers.authorization, 'Bearer t');
    assert.deepEqual(req?.body, encodeTraceProto(spans).subarray(4));
    assert.deepEqual(decodeTraceProto(req?.body as Buffer), decodeTraceProto(encodeTraceProto(spans).subarray(4)));
  });

  it("sends OTLP/JSON with protocol 'http/json': the trace log's line", async () => {
    const c = await collector(ok);
    const e = exporterFor({ url: c.url, protocol: 'http/json' });
    assert.equal((await exported(e, spans)).code, ExportResultCode.SUCCESS);
    assert.equal(c.got[0]?.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(String(c.got[0]?.body)), JSON.parse(encodeTraceLine(spans)));
  });

  it('sends a batch built span by span (the batch queue’s way) as the same request as one encoded at once', async () => {
    const c = await collector(ok);
    const e = exporterFor({ url: c.url });
    const builder = e.lineBuilder();
    for (const s of spans) builder.add(s);
    const result = await new Promise<ExportResult>((resolve) => e.exportLine(builder.take(), resolve));
    assert.equal(result.code, ExportResultCode.SUCCESS);
    assert.deepEqual(c.got[0]?.body, encodeTraceProto(spans).subarray(4));
  });

  it("sends to the URL's query but shows the URL without it (a vendor's key may ride there), and refuses a user or password", async () => {
    const c = await collector(ok);
    const e = exporterFor({ url: `${c.url}?api-key=s3cr3t` });
    assert.equal(e.url, c.url);
    assert.equal((await exported(e, spans)).code, ExportResultCode.SUCCESS);
    assert.equal(c.got[0]?.path, '/v1/traces?api-key=s3cr3t');
    assert.throws(
      () => new OtlpHttpExporter({ url: 'http://user:s3cr3t@127.0.0.1:4318/v1/traces' }),
      (err: Error & { code?: string }) =>
        err.code === 'MESHLET_BAD_OPTION' && err.message.startsWith('otlp.url: must not carry') && !err.message.includes('s3cr3t'),
    );
  });

  for (const protocol of ['http/protobuf', 'http/json'] as const) {
    it(`gzips a ${protocol} batch with compression 'gzip': Content-Encoding gzip, the same request once gunzipped, and smaller`, async () => {
      const c = await collector(ok);
      const plain = await collector(ok);
      const e = exporterFor({ url: c.url, protocol, compression: 'gzip' });
      const p = exporterFor({ url: plain.url, protocol });
      const many = randomSpans(200);
      assert.equal((await exported(e, many)).code, ExportResultCode.SUCCESS);
      assert.equal((await exported(p, many)).code, ExportResultCode.SUCCESS);
      const [zipped] = c.got;
      const [sent] = plain.got;
      assert.equal(zipped?.headers['content-encoding'], 'gzip');
      assert.equal(sent?.headers['content-encoding'], undefined, 'uncompressed by default');
      assert.deepEqual(gunzipSync(zipped?.body as Buffer), sent?.body);
      assert.ok((zipped?.body.length ?? 0) < (sent?.body.length ?? 0) / 2, `${zipped?.body.length} bytes gzipped of ${sent?.body.length}`);
    });
  }

  it('sends a retried gzipped batch as the same bytes', async () => {
    const c = await collector((n, res) => (n === 0 ? status(503)(n, res) : ok(n, res)));
    const clock = new RecordingClock(1_000_000);
    const e = exporterFor({ url: c.url, compression: 'gzip' }, clock);
    const result = exported(e, spans);
    await until('the backoff armed', () => clock.armed.includes(1000));
    clock.advance(1000);
    assert.equal((await result).code, ExportResultCode.SUCCESS);
    assert.equal(c.got.length, 2);
    assert.equal(c.got[1]?.headers['content-encoding'], 'gzip');
    assert.deepEqual(c.got[1]?.body, c.got[0]?.body);
    assert.deepEqual(gunzipSync(c.got[1]?.body as Buffer), encodeTraceProto(spans).subarray(4));
  });

  it('calls a headers function before each attempt: a retry carries the token it gives then', async () => {
    const c = await collector((n, res) => (n === 0 ? status(503)(n, res) : ok(n, res)));
    const clock = new RecordingClock(1_000_000);
    let calls = 0;
    const e = exporterFor({ url: c.url, headers: async () => ({ authorization: `Bearer ${++calls}` }) }, clock);
    const result = exported(e, spans);
    await until('the backoff armed', () => clock.armed.includes(1000));
    clock.advance(1000);
    assert.equal((await result).code, ExportResultCode.SUCCESS);
    assert.deepEqual(
      c.got.map((g) => g.headers.authorization),
      ['Bearer 1', 'Bearer 2'],
    );
    assert.equal(c.got[1]?.headers['content-type'], 'application/x-protobuf', 'the content headers stay the exporter’s');
  });

  const failsWithoutSending = async (headers: NonNullable<OtlpHttpOptions['headers']>, message: RegExp, clock?: RecordingClock) => {
    const c = await collector(ok);
    const e = exporterFor({ url: c.url, headers, timeoutMs: 5000 }, clock);
    const pending = exported(e, spans);
    if (clock) {
      await until('the wait for the headers armed', () => clock.armed.includes(5000));
      clock.advance(5000);
    }
    const result = await pending;
    assert.equal(result.code, ExportResultCode.FAILED);
    assert.ok(result.error instanceof OtlpExportError, String(result.error));
    assert.equal((result.error as OtlpExportError).code, 'MESHLET_OTLP_EXPORT_FAILED');
    assert.match(result.error.message, message);
    assert.ok(!result.error.message.includes('s3cr3t'), `a value shown: ${result.error.message}`);
    assert.equal(c.got.length, 0, 'nothing sent');
  };

  it('fails the batch, sending nothing, when the headers function throws (its message, maybe a secret, kept as the cause)', () =>
    failsWithoutSending(() => {
      throw new Error('vault said no to s3cr3t');
    }, /^otlp\.headers: the headers function failed$/));

  it('fails the batch, sending nothing, when the headers function gives a bad header: named, never shown', () =>
    failsWithoutSending(async () => ({ authorization: 'Bearer s3cr3t\r\nx: y' }), /^otlp\.headers\.authorization: must be a string/));

  it('fails the batch, sending nothing, when the headers function gives a character undici would refuse (past U+00FF): named, never shown', () =>
    failsWithoutSending(
      async () => ({ authorization: 'Bearer s3cr3t€' }),
      /^otlp\.headers\.authorization: must be a string without line breaks, NUL or other characters HTTP refuses/,
    ));

  it('fails the batch, sending nothing, when the headers function gives a header the exporter sets', () =>
    failsWithoutSending(async () => ({ 'content-length': '1' }), /^otlp\.headers\.content-length: is set by the exporter/));

  it('fails the batch, sending nothing, when the headers function gives too many headers', () =>
    failsWithoutSending(() => Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, 's3cr3t'])), /at most 64 headers/));

  it('fails the batch at its timeout, on the injected clock, when the headers function never answers', () =>
    failsWithoutSending(() => new Promise<never>(() => {}), /gave no headers in 5000 ms/, new RecordingClock(1_000_000)));

  for (const code of [429, 502, 503, 504]) {
    it(`retries a ${code} after a backoff on the injected clock, and succeeds`, async () => {
      const c = await collector((n, res) => (n === 0 ? status(code)(n, res) : ok(n, res)));
      const clock = new RecordingClock(1_000_000);
      const e = exporterFor({ url: c.url }, clock);
      const result = exported(e, spans);
      await until('the backoff armed', () => clock.armed.includes(1000));
      // 1 s ±20% (random 0.5: exactly 1 s): not a moment before.
      clock.advance(999);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(c.got.length, 1, 'no second attempt before the backoff');
      clock.advance(1);
      assert.equal((await result).code, ExportResultCode.SUCCESS);
      assert.equal(c.got.length, 2);
      assert.deepEqual(c.got[1]?.body, c.got[0]?.body);
    });
  }

  it("waits the collector's Retry-After (seconds) instead of its own backoff", async () => {
    const c = await collector((n, res) => (n === 0 ? status(429, { 'retry-after': '3' })(n, res) : ok(n, res)));
    const clock = new RecordingClock(1_000_000);
    const e = exporterFor({ url: c.url }, clock);
    const result = exported(e, spans);
    await until('the wait of Retry-After armed', () => clock.armed.includes(3000));
    clock.advance(2_999);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(c.got.length, 1);
    clock.advance(1);
    assert.equal((await result).code, ExportResultCode.SUCCESS);
  });

  for (const code of [400, 401, 403, 404, 413, 500]) {
    it(`fails a batch answered ${code} at once, without a retry`, async () => {
      const c = await collector(status(code));
      const e = exporterFor({ url: c.url });
      const result = await exported(e, spans);
      assert.equal(result.code, ExportResultCode.FAILED);
      assert.ok(result.error instanceof OtlpExportError);
      assert.equal((result.error as OtlpExportError).status, code);
      assert.equal((result.error as OtlpExportError).code, 'MESHLET_OTLP_EXPORT_FAILED');
      assert.equal((result.error as OtlpExportError).attempts, 1);
      assert.equal(c.got.length, 1);
    });
  }

  it('does not follow a redirect: the headers (a credential) stay with the collector named', async () => {
    const elsewhere = await collector(ok);
    const c = await collector(status(307, { location: elsewhere.url }));
    const e = exporterFor({ url: c.url, headers: { authorization: 'Bearer secret' } });
    const result = await exported(e, spans);
    assert.equal(result.code, ExportResultCode.FAILED);
    assert.equal((result.error as OtlpExportError).status, 307);
    assert.equal(elsewhere.got.length, 0);
  });

  it('gives up when the next wait would pass the batch’s timeout: the attempts it made, the last status', async () => {
    const c = await collector(status(503));
    const clock = new RecordingClock(1_000_000);
    // Backoffs of 1 s, 1.5 s, 2.25 s: the third would end past 4 s.
    const e = exporterFor({ url: c.url, timeoutMs: 4_000 }, clock);
    const result = exported(e, spans);
    for (const wait of [1000, 1500]) {
      await until(`the backoff of ${wait} ms armed`, () => clock.armed.includes(wait));
      clock.advance(wait);
    }
    const r = await result;
    assert.equal(r.code, ExportResultCode.FAILED);
    assert.equal((r.error as OtlpExportError).attempts, 3);
    assert.equal((r.error as OtlpExportError).status, 503);
    assert.match(String(r.error?.message), /collector answered 503 \(3 attempts\)/);
    assert.equal(c.got.length, 3);
  });

  it('retries a collector it cannot reach, and fails naming the network error', async () => {
    const c = await collector(ok);
    const url = c.url;
    await new Promise((r) => c.server.close(r));
    const clock = new RecordingClock(1_000_000);
    const e = exporterFor({ url, timeoutMs: 2_000 }, clock);
    const result = exported(e, spans);
    await until('the backoff after the refusal armed', () => clock.armed.includes(1000));
    clock.advance(1000);
    const r = await result;
    assert.equal(r.code, ExportResultCode.FAILED);
    assert.equal((r.error as OtlpExportError).status, undefined);
    assert.equal((r.error as OtlpExportError).attempts, 2);
    assert.match(String(r.error?.message), /collector not reached: .*\(2 attempts\)/);
  });

  it('ends an attempt the collector does not answer at the timeout, on the injected clock', async () => {
    const c = await collector(() => {}); // never answers
    const clock = new RecordingClock(1_000_000);
    const e = exporterFor({ url: c.url, timeoutMs: 500 }, clock);
    const result = exported(e, spans);
    await until('the request arrived', () => c.got.length === 1);
    clock.advance(500);
    const r = await result;
    assert.equal(r.code, ExportResultCode.FAILED);
    assert.match(String(r.error?.message), /no answer in 500 ms/);
  });

  it("logs a collector's partial success (protobuf and JSON answers) and counts the batch as sent", async () => {
    // ExportTraceServiceResponse { partial_success { rejected_spans: 3, error_message: "too old" } }
    const message = Buffer.from('too old');
    const inner = Buffer.concat([Buffer.from([0x08, 3, 0x12, message.length]), message]);
    const proto = Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
    for (const [protocol, body] of [
      ['http/protobuf', proto],
      ['http/json', Buffer.from('{"partialSuccess":{"rejectedSpans":"3","errorMessage":"too old"}}')],
    ] as const) {
      const c = await collector((_n, res) => res.writeHead(200).end(body));
      const warnings: LogFields[] = [];
      const e = exporterFor({ url: c.url, protocol }, new ManualClock(0), warnings);
      assert.equal((await exported(e, spans)).code, ExportResultCode.SUCCESS, protocol);
      assert.equal(warnings.length, 1, protocol);
      assert.equal(warnings[0]?.code, 'MESHLET_OTLP_PARTIAL_SUCCESS');
      assert.equal(warnings[0]?.rejectedSpans, 3);
      assert.equal(warnings[0]?.message, 'too old');
    }
    // An empty partial success (the collector's usual answer) is nothing to tell.
    const c = await collector((_n, res) => res.writeHead(200).end('{"partialSuccess":{}}'));
    const warnings: LogFields[] = [];
    const e = exporterFor({ url: c.url, protocol: 'http/json' }, new ManualClock(0), warnings);
    assert.equal((await exported(e, spans)).code, ExportResultCode.SUCCESS);
    assert.equal(warnings.length, 0);
  });

  it('reads at most 64 KiB of an answer: a collector sending megabytes does not hold the batch', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 0x61);
    const c = await collector((_n, res) => res.writeHead(200).end(big));
    const e = exporterFor({ url: c.url, protocol: 'http/json' });
    assert.equal((await exported(e, spans)).code, ExportResultCode.SUCCESS);
  });

  it('refuses a batch after shutdown, and shutdown waits for the batch in flight', async () => {
    let release: (() => void) | undefined;
    const c = await collector((_n, res) => {
      release = () => res.writeHead(200).end();
    });
    const e = new OtlpHttpExporter({ url: c.url });
    const inFlight = exported(e, spans);
    await until('the request arrived', () => release !== undefined);
    let closed = false;
    const closing = e.shutdown().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, false, 'shutdown waits for the batch in flight');
    release?.();
    assert.equal((await inFlight).code, ExportResultCode.SUCCESS);
    await closing;
    const late = await exported(e, spans);
    assert.equal(late.code, ExportResultCode.FAILED);
  });
});

describe('retryAfterMs', () => {
  const cases: [string | undefined, number | undefined][] = [
    [undefined, undefined],
    ['', undefined],
    ['0', 0],
    ['3', 3000],
    [' 12 ', 12_000],
    ['-1', undefined],
    ['1.5', undefined],
    ['soon', undefined],
    ['Thu, 01 Jan 1970 00:00:10 GMT', 4000],
    ['Thu, 01 Jan 1970 00:00:01 GMT', 0],
  ];
  for (const [value, want] of cases)
    it(`${JSON.stringify(value)} → ${want}`, () => {
      assert.equal(retryAfterMs(value, 6000), want);
    });
});

describe("Tracing's exports that fail", () => {
  it('are logged once a minute per code, with how many there were, on the injected clock', async () => {
    const c = await collector(status(400));
    const clock = new ManualClock(1_000_000);
    const warnings: LogFields[] = [];
    const logger = { debug() {}, info() {}, warn: (_m: string, f?: LogFields) => warnings.push(f ?? {}), error() {} };
    const tracing = createTracing({ service: 'orders', otlp: { url: c.url }, batch: { maxBatchSize: 1 }, clock, logger });
    for (let i = 0; i < 3; i++) tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1/a' }).end(200);
    await tracing.forceFlush();
    assert.equal(tracing.stats.failed, 3);
    assert.equal(warnings.length, 1, 'three failed batches, one line');
    assert.equal(warnings[0]?.code, 'MESHLET_TRACE_EXPORT_FAILED');
    assert.equal(warnings[0]?.exporter, c.url);
    assert.match(String(warnings[0]?.error), /collector answered 400/);
    clock.advance(60_000);
    tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1/a' }).end(200);
    await tracing.forceFlush();
    assert.equal(warnings.length, 2);
    assert.equal(warnings[1]?.count, 3, 'the line after the interval counts the two not written and itself');
    await tracing.shutdown();
  });

  it('include a trace log that cannot be written: the warning names its path and the error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-trace-fail-'));
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a directory');
    const path = join(file, 'spans.jsonl');
    const warnings: LogFields[] = [];
    const logger = { debug() {}, info() {}, warn: (_m: string, f?: LogFields) => warnings.push(f ?? {}), error() {} };
    const tracing = createTracing({ service: 'orders', log: { path }, clock: new ManualClock(0), logger });
    try {
      tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1/a' }).end(200);
      await tracing.forceFlush();
      assert.equal(tracing.stats.failed, 1);
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]?.code, 'MESHLET_TRACE_EXPORT_FAILED');
      assert.equal(warnings[0]?.exporter, path);
      assert.match(String(warnings[0]?.error), /ENOTDIR|EEXIST/);
    } finally {
      await tracing.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
