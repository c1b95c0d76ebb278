import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { BatchQueue, createTracing, encodeTraceLineBytes, type OtlpTraceRequest, readTraceLog, TraceLogExporter } from '../src/index.js';
import { TraceLineBuilder } from '../src/otlp-json.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-tracelog-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An exporter that keeps what it is given in `into`. */
const collect = (into: ReadableSpan[]): SpanExporter => ({
  export(spans, done) {
    into.push(...spans);
    done({ code: ExportResultCode.SUCCESS });
  },
  shutdown: async () => {},
});

/** An exporter that holds each export until released, to fill the queue behind it. */
class HeldExporter implements SpanExporter {
  readonly batches: number[] = [];
  #pending: (() => void)[] = [];
  hold = true;
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.batches.push(spans.length);
    const finish = () => done({ code: ExportResultCode.SUCCESS });
    if (this.hold) this.#pending.push(finish);
    else finish();
  }
  release(): void {
    this.hold = false;
    for (const f of this.#pending.splice(0)) f();
  }
  async shutdown(): Promise<void> {}
}

describe('trace log', () => {
  it('gets all of 5 000 spans ended under load back from the file after shutdown, in batches', async () => {
    const path = join(dir, 'load.jsonl');
    const tracing = createTracing({ service: 'load', log: { path }, batch: { maxBatchSize: 512, delayMs: 1000 } });
    const worker = async (w: number) => {
      for (let i = 0; i < 100; i++) {
        const span = tracing.startClientSpan(ROOT_CONTEXT, {
          method: 'GET',
          url: `http://peer-${w % 5}/item/${i}`,
          service: `peer-${w % 5}`,
        });
        await tick();
        span.end(i % 10 === 0 ? 500 : 200);
      }
    };
    await Promise.all(Array.from({ length: 50 }, (_, w) => worker(w)));
    await tracing.shutdown();
    assert.equal(tracing.stats.dropped, 0);
    assert.equal(tracing.stats.exported, 5000);

    const text = await readFile(path, 'utf8');
    const lines = text.trimEnd().split('\n');
    assert.ok(lines.length <= 20, `${lines.length} lines: spans were not batched`);
    for (const line of lines) {
      const req = JSON.parse(line) as OtlpTraceRequest;
      const n = req.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)).length;
      assert.ok(n <= 512);
    }
    const { spans } = await readTraceLog([path]);
    assert.equal(spans.length, 5000);
    assert.equal(new Set(spans.map((s) => s.spanId)).size, 5000);
    assert.equal(spans.filter((s) => s.statusCode === 2).length, 500);
  });

  it('reads back a line whose strings hold U+2028 and U+2029 (JSON.stringify leaves them unescaped): one line, not three', async () => {
    const path = join(dir, 'separators.jsonl');
    const tracing = createTracing({ service: 'separators', log: { path } });
    const span = tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://b:81/y' });
    span.setAttribute('note', 'one\u2028two\u2029three');
    span.end({ error: new Error('line\u2028separator') });
    await tracing.shutdown();
    assert.ok((await readFile(path, 'utf8')).includes('\u2028'), 'the separator is in the line unescaped');
    const { spans, badLines } = await readTraceLog([path]);
    assert.equal(badLines, 0);
    assert.equal(spans.length, 1);
    assert.equal(spans[0]?.attributes.note, 'one\u2028two\u2029three');
  });

  it('writes the OTLP JSON encoding: hex ids, numeric kinds, nanosecond strings, typed attribute values', async () => {
    const path = join(dir, 'shape.jsonl');
    const tracing = createTracing({ service: 'shape', version: '2.0.0', log: { path } });
    const server = tracing.startServerSpan({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }, 'GET', '/x');
    tracing.startClientSpan(server.context, { method: 'GET', url: 'http://b:81/y', attempt: 1 }).end(404);
    server.end(200);
    await tracing.shutdown();
    const [line, extra] = (await readFile(path, 'utf8')).trimEnd().split('\n');
    assert.equal(extra, undefined);
    const req = JSON.parse(line as string) as OtlpTraceRequest;
    const rs = req.resourceSpans[0];
    assert.deepEqual(
      rs?.resource.attributes.filter((a) => a.key.startsWith('service.')),
      [
        { key: 'service.name', value: { stringValue: 'shape' } },
        { key: 'service.version', value: { stringValue: '2.0.0' } },
      ],
    );
    assert.deepEqual(rs?.scopeSpans[0]?.scope, { name: '@meshlet/trace', version: '0.1.0' });
    const [client, srv] = rs?.scopeSpans[0]?.spans ?? [];
    assert.equal(client?.kind, 3);
    assert.equal(srv?.kind, 2);
    assert.equal(srv?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(srv?.parentSpanId, '00f067aa0ba902b7');
    assert.equal(srv?.flags, 0x301);
    assert.equal(client?.parentSpanId, srv?.spanId);
    assert.match(client?.startTimeUnixNano ?? '', /^\d{19}$/);
    assert.ok(BigInt(client?.endTimeUnixNano ?? 0) >= BigInt(client?.startTimeUnixNano ?? 0));
    assert.deepEqual(client?.status, { code: 2 });
    const attr = (k: string) => client?.attributes.find((a) => a.key === k)?.value;
    assert.deepEqual(attr('http.response.status_code'), { intValue: '404' });
    assert.deepEqual(attr('http.request.resend_count'), { intValue: '1' });
    assert.deepEqual(attr('url.full'), { stringValue: 'http://b:81/y' });
  });

  it('rotates by size and keeps maxFiles rotated files', async () => {
    const path = join(dir, 'rot', 'spans.jsonl');
    const tracing = createTracing({ service: 'rot', log: { path, maxBytes: 4000, maxFiles: 2 }, batch: { maxBatchSize: 4 } });
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 4; i++) tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `http://a/${round}/${i}` }).end(200);
      await tracing.forceFlush();
    }
    await tracing.shutdown();
    const files = (await readdir(join(dir, 'rot'))).sort();
    assert.deepEqual(files, ['spans.jsonl', 'spans.jsonl.1', 'spans.jsonl.2']);
    for (const f of files) assert.ok((await stat(join(dir, 'rot', f))).size <= 4000, `${f} over maxBytes`);
    // The newest spans are in the live file; the oldest were rotated out.
    const { spans } = await readTraceLog(files.map((f) => join(dir, 'rot', f)));
    const urls = new Set(spans.map((s) => s.attributes['url.full']));
    assert.ok(urls.has('http://a/7/3'));
    assert.ok(!urls.has('http://a/0/0'));
  });

  it('drops spans with a counter when the queue is full, instead of blocking', async () => {
    const exporter = new HeldExporter();
    const clock = new ManualClock();
    const tracing = createTracing({ service: 'q', exporters: [exporter], clock, batch: { maxQueueSize: 10, maxBatchSize: 5 } });
    const end = (n: number) => {
      for (let i = 0; i < n; i++) tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/' }).end(200);
    };
    end(5); // a full batch: handed to the (held) exporter
    await tick();
    end(10); // fills the queue behind it
    end(3); // no room
    assert.deepEqual(tracing.stats, { exported: 0, dropped: 3, failed: 0, queued: 10 });
    exporter.release();
    await tracing.forceFlush();
    assert.deepEqual(tracing.stats, { exported: 15, dropped: 3, failed: 0, queued: 0 });
    assert.deepEqual(exporter.batches, [5, 5, 5]);
    await tracing.shutdown();
  });

  it('exports a partial batch when the delay passes, on the injected clock', async () => {
    const exporter = new HeldExporter();
    exporter.hold = false;
    const clock = new ManualClock();
    const tracing = createTracing({ service: 'd', exporters: [exporter], clock, batch: { delayMs: 1000 } });
    for (let i = 0; i < 3; i++) tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/' }).end(200);
    await tick();
    assert.deepEqual(exporter.batches, []);
    assert.equal(clock.pendingTimers, 1);
    clock.advance(1000);
    await tick();
    assert.deepEqual(exporter.batches, [3]);
    assert.equal(tracing.stats.exported, 3);
    await tracing.shutdown();
  });

  it('counts spans ended after shutdown as dropped', async () => {
    const tracing = createTracing({ service: 'late', log: { path: join(dir, 'late.jsonl') } });
    const span = tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/' });
    await tracing.shutdown();
    span.end(200);
    assert.deepEqual(tracing.stats, { exported: 0, dropped: 1, failed: 0, queued: 0 });
  });

  it('a line exporter gets lines built as spans end: the bytes of the batch, counted, an unencodable span failed without throwing', async () => {
    // Sampled spans to encode, from a real Tracing.
    const made: ReadableSpan[] = [];
    const source = createTracing({
      service: 'lines',
      exporters: [collect(made)],
    });
    for (let i = 0; i < 7; i++)
      source.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `http://peer/item/${i}`, service: 'peer' }).end(200);
    await source.shutdown();
    assert.equal(made.length, 7);
    const clock = new ManualClock();
    const lines: Buffer[] = [];
    let fail = false;
    let building = 0;
    const exporter = {
      lineBuilder: () => {
        building++;
        return new TraceLineBuilder();
      },
      exportLine: (line: Buffer, done: (r: ExportResult) => void) => {
        lines.push(line);
        done({ code: fail ? ExportResultCode.FAILED : ExportResultCode.SUCCESS });
      },
      export: () => assert.fail('spans are not exported as spans'),
      shutdown: async () => {},
    };
    const queue = new BatchQueue(exporter, { maxBatchSize: 3, delayMs: 100, clock });
    const broken = Object.create(made[0] as ReadableSpan, { attributes: { get: () => assert.fail('unencodable') } }) as ReadableSpan;
    for (const span of made.slice(0, 4)) queue.onEnd(span);
    assert.doesNotThrow(() => queue.onEnd(broken));
    assert.equal(queue.stats.failed, 1);
    await tick();
    // One full line went out at once; the fourth span waits in the line being built.
    assert.deepEqual(lines, [encodeTraceLineBytes(made.slice(0, 3))]);
    assert.equal(queue.stats.queued, 1);
    clock.advance(100);
    await tick();
    assert.deepEqual(lines[1], encodeTraceLineBytes(made.slice(3, 4)));
    fail = true;
    for (const span of made.slice(4)) queue.onEnd(span);
    await queue.forceFlush();
    assert.deepEqual(lines[2], encodeTraceLineBytes(made.slice(4, 7)));
    assert.deepEqual(queue.stats, { exported: 4, dropped: 0, failed: 4, queued: 0 });
    assert.equal(building, 3);
  });
});

describe('TraceLogExporter as a plain SpanExporter', () => {
  it('writes a batch given as spans as one line, the same bytes', async () => {
    const spans: ReadableSpan[] = [];
    const source = createTracing({ service: 'plain', exporters: [collect(spans)] });
    for (let i = 0; i < 3; i++) source.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `http://peer/${i}`, service: 'peer' }).end(200);
    await source.shutdown();
    const path = join(dir, 'plain.jsonl');
    const exporter = new TraceLogExporter({ path });
    const result = await new Promise<ExportResult>((resolve) => exporter.export(spans, resolve));
    assert.equal(result.code, ExportResultCode.SUCCESS);
    await exporter.shutdown();
    assert.deepEqual(await readFile(path), encodeTraceLineBytes(spans));
  });
});

describe('TraceLineBuilder', () => {
  it('builds the bytes encodeTraceLineBytes gives for the spans added, several resources and scopes included', async () => {
    const spans: ReadableSpan[] = [];
    for (const service of ['a', 'b']) {
      const tracing = createTracing({
        service,
        exporters: [collect(spans)],
      });
      const server = tracing.startServerSpan({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }, 'GET', '/x');
      tracing.startClientSpan(server.context, { method: 'POST', url: 'http://peer:81/y?sig=1', service: 'peer' }).end(503);
      server.end(200);
      await tracing.shutdown();
    }
    const [first] = spans;
    assert.ok(first);
    const other = Object.create(first, { instrumentationScope: { value: { name: 'other', version: '2' } } }) as ReadableSpan;
    const mixed = [spans[2], first, other, spans[1], spans[3], other] as ReadableSpan[];
    for (const set of [[], spans, mixed]) {
      const builder = new TraceLineBuilder();
      for (const span of set) builder.add(span);
      assert.equal(builder.count, set.length);
      assert.deepEqual(builder.take(), encodeTraceLineBytes(set));
    }
  });
});
