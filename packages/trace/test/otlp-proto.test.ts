import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { type RecordDeps, WallAnchors } from '../src/client-span-record.js';
import {
  createTracing,
  decodeTraceProto,
  encodeTraceLine,
  encodeTraceProto,
  ProtoDecodeError,
  readTraceLog,
  TraceLogExporter,
  TraceProtoBuilder,
} from '../src/index.js';
import { randomRecord, rng, text } from './random-spans.js';
import { asUtf8, fromJson, randomSpans, tracedSpans } from './span-samples.js';

/** The request of one size-prefixed protobuf batch, its prefix checked. */
function fromProto(frame: Buffer): unknown {
  assert.equal(frame.readUInt32BE(0), frame.length - 4, 'the size prefix is the size of the request after it');
  return decodeTraceProto(frame.subarray(4));
}

describe('the protobuf trace log encoding', () => {
  const deps = (service: string): RecordDeps => ({
    resource: resourceFromAttributes({ 'service.name': service }),
    scope: { name: '@meshlet/trace', version: '0.1.0' },
    ended: () => {},
    wall: new WallAnchors(),
  });

  it('decodes to what the OTLP/JSON line parses to: random records, late keys, events, links, statuses, parents, tracestate, two resources', () => {
    const a = deps('a');
    const b = deps('b é');
    let links = 0;
    let wrapped = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const spans: ReadableSpan[] = [];
      for (let i = Math.floor(r() * 12); i > 0; i--) {
        const span = randomRecord(r, r() < 0.8 ? a : b, true);
        links += span.links.length;
        // Now and then a wrapper (as some exporters make): written by the generic path.
        const wrap = r() < 0.1;
        if (wrap) wrapped++;
        spans.push(wrap ? (Object.create(span, { name: { value: text(r, 5) } }) as ReadableSpan) : span);
      }
      // Built as the batch queue builds it (span by span), and at once; then the JSON.
      const builder = new TraceProtoBuilder(r() < 0.5 ? 1 : 64 * 1024);
      for (const span of spans) builder.add(span);
      const built = builder.take();
      const whole = encodeTraceProto(spans);
      const want = fromJson(spans);
      assert.deepEqual(fromProto(built), want, `TraceProtoBuilder, seed ${seed}`);
      assert.deepEqual(fromProto(whole), want, `encodeTraceProto, seed ${seed}`);
    }
    assert.ok(links > 10 && wrapped > 10, `links ${links}, wrapped spans ${wrapped}`);
  });

  it("decodes to what the JSON line parses to for a Tracing's own spans: server, client records, SDK spans, every attribute type", async () => {
    const spans = [...(await tracedSpans('orders')), ...(await tracedSpans('payments'))];
    assert.ok(spans.some((s) => s.links.length > 0) && spans.some((s) => s.events.length > 0));
    const want = fromJson(spans);
    assert.deepEqual(fromProto(encodeTraceProto(spans)), want);
    // An integer past int64 is a double in both encodings (OTLP/JSON's `"intValue":"1e+21"` was not an int64).
    const line = encodeTraceLine(spans);
    assert.match(line, /"key":"custom.past-int64","value":\{"doubleValue":1e\+21\}/);
    assert.match(line, /"key":"custom.big","value":\{"intValue":"1152921504606846976"\}/);
  });

  it("reads what OpenTelemetry's own protobuf serializer writes as the same request", async () => {
    // An independent encoder of the same schema: the decoder's field numbers and types are the proto's.
    for (const spans of [await tracedSpans('orders'), randomSpans(41)]) {
      const theirs = decodeTraceProto(ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array);
      assert.deepEqual(withoutEmptyValues(theirs), fromJson(spans));
    }
  });

  it('is a fraction of the JSON: bytes per span for client records', async () => {
    const spans = (await tracedSpans('orders')).filter((s) => s.kind === SpanKind.CLIENT);
    const json = Buffer.byteLength(encodeTraceLine(spans));
    const proto = encodeTraceProto(spans).length;
    assert.ok(proto * 2 < json, `protobuf ${proto} bytes, JSON ${json}`);
  });

  it('writes times as exact fixed64 nanoseconds: seconds near 2³¹ and 2³², nanoseconds at the edges', () => {
    const r = rng(99);
    const times: [number, number][] = [
      [0, 0],
      [0, 999_999_999],
      [1, 0],
      [1_700_000_000, 123_456_789],
      [2 ** 31 - 1, 999_999_999],
      [2 ** 31, 1],
      [2 ** 32 - 1, 999_999_999],
    ];
    for (let i = 0; i < 500; i++) times.push([Math.floor(r() * 2 ** 32), Math.floor(r() * 1e9)]);
    const resource = resourceFromAttributes({ 'service.name': 't' });
    const instrumentationScope = { name: 's' };
    const spans = times.map(
      ([s, ns]) =>
        ({
          spanContext: () => ({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 }),
          parentSpanContext: undefined,
          name: 'timed',
          kind: SpanKind.INTERNAL,
          startTime: [s, ns],
          endTime: [s, ns],
          attributes: {},
          links: [],
          events: [],
          status: { code: 0 },
          droppedAttributesCount: 0,
          droppedEventsCount: 0,
          droppedLinksCount: 0,
          resource,
          instrumentationScope,
        }) as unknown as ReadableSpan,
    );
    const decoded = decodeTraceProto(encodeTraceProto(spans).subarray(4));
    const got = decoded.resourceSpans[0]?.scopeSpans[0]?.spans.map((s) => s.startTimeUnixNano);
    assert.deepEqual(
      got,
      times.map(([s, ns]) => (BigInt(s) * 1_000_000_000n + BigInt(ns)).toString()),
    );
  });

  it('refuses a span whose id is not hex (counted by the batch queue as failed), leaving the batch as it was', async () => {
    const [first] = await tracedSpans('orders');
    assert.ok(first);
    const odd = Object.create(first, { spanContext: { value: () => ({ ...first.spanContext(), spanId: 'x"y' }) } }) as ReadableSpan;
    const builder = new TraceProtoBuilder();
    builder.add(first);
    assert.throws(() => builder.add(odd), TypeError);
    assert.equal(builder.count, 1);
    assert.deepEqual(fromProto(builder.take()), fromJson([first]));
  });
});

/** OpenTelemetry's serializer writes a null in an array attribute as an empty AnyValue (`{}`); Meshlet's encoders leave it out. */
function withoutEmptyValues(v: unknown): unknown {
  if (Array.isArray(v))
    return v.filter((x) => !(x !== null && typeof x === 'object' && Object.keys(x).length === 0)).map(withoutEmptyValues);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withoutEmptyValues(x)]));
  return v;
}

describe('decodeTraceProto on bad input', () => {
  it('refuses with ProtoDecodeError, never another error: cut short, overlong varints, fields past their message, nesting past 16', () => {
    const good = encodeTraceProto(randomSpans(5)).subarray(4);
    for (const cut of [1, 2, 7, good.length >> 1, good.length - 1])
      assert.throws(() => decodeTraceProto(good.subarray(0, cut)), ProtoDecodeError);
    assert.throws(
      () => decodeTraceProto(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
      ProtoDecodeError,
    );
    assert.throws(() => decodeTraceProto(Buffer.from([0x0a, 0x05, 0x01])), ProtoDecodeError);
    assert.throws(() => decodeTraceProto(Buffer.from([0x0b])), ProtoDecodeError); // wire type 3 (a group)
    // An attribute value of arrays nested `depth` deep, in a span of a scope of a resource.
    const nested = (depth: number): Buffer => {
      let v: Buffer = Buffer.from([0x0a, 0x01, 0x78]);
      for (let i = 0; i < depth; i++) {
        const array = lengthDelimited(0x0a, v);
        v = lengthDelimited(0x2a, array);
      }
      const kv = Buffer.concat([lengthDelimited(0x0a, Buffer.from('k')), lengthDelimited(0x12, v)]);
      const span = lengthDelimited(0x4a, kv);
      const scopeSpans = lengthDelimited(0x12, span);
      return lengthDelimited(0x0a, lengthDelimited(0x12, scopeSpans));
    };
    assert.doesNotThrow(() => decodeTraceProto(nested(10)));
    assert.throws(() => decodeTraceProto(nested(40)), /nested more than 16 deep/);
  });

  it('random bytes and flipped bytes of a good request decode or refuse with ProtoDecodeError', () => {
    const r = rng(12);
    const good = encodeTraceProto(randomSpans(6)).subarray(4);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      let bytes: Buffer;
      if (i % 2 === 0) bytes = Buffer.from(Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256)));
      else {
        bytes = Buffer.from(good);
        for (let k = 0; k < 3; k++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
      }
      try {
        decodeTraceProto(bytes);
      } catch (error) {
        assert.ok(error instanceof ProtoDecodeError, `input ${i}: ${error}`);
        refused++;
      }
    }
    assert.ok(refused > 100, `refused ${refused}`);
  });
});

/** A length-delimited field: its key byte, its length (one byte), its content. */
function lengthDelimited(keyByte: number, content: Buffer): Buffer {
  const n = content.length;
  const size = n < 128 ? Buffer.from([n]) : Buffer.from([(n & 0x7f) | 0x80, n >> 7]);
  return Buffer.concat([Buffer.from([keyByte]), size, content]);
}

describe("the trace log with format: 'proto'", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const exportTo = (exporter: TraceLogExporter, spans: ReadableSpan[]): Promise<void> =>
    new Promise((resolve, reject) => exporter.export(spans, (r) => (r.code === 0 ? resolve() : reject(r.error))));

  it('reads back (readTraceLog) as the same spans as the JSON log of the same batches', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-proto-log-'));
    dirs.push(dir);
    const json = new TraceLogExporter({ path: join(dir, 'spans.jsonl') });
    const proto = new TraceLogExporter({ path: join(dir, 'spans.binpb'), format: 'proto' });
    const batches = [await tracedSpans('orders'), randomSpans(8), await tracedSpans('payments')];
    for (const batch of batches) {
      await exportTo(json, batch);
      await exportTo(proto, batch);
    }
    await json.shutdown();
    await proto.shutdown();
    const fromJsonLog = await readTraceLog([join(dir, 'spans.jsonl')]);
    const fromProtoLog = await readTraceLog([join(dir, 'spans.binpb')]);
    assert.equal(fromProtoLog.badLines, 0);
    assert.equal(fromProtoLog.spans.length, batches.flat().length);
    assert.deepEqual(fromProtoLog.spans, asUtf8ish(fromJsonLog.spans));
  });

  it('as the batch queue writes it (createTracing log.format), rotated, every file read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-proto-log-'));
    dirs.push(dir);
    const path = join(dir, 'spans.binpb');
    const tracing = createTracing({
      service: 'orders',
      sampleRatio: 1,
      log: { path, format: 'proto', maxBytes: 4096, maxFiles: 5 },
      batch: { maxBatchSize: 8 },
    });
    for (let i = 0; i < 60; i++)
      tracing.startClientSpan(undefined, { method: 'GET', url: `http://10.0.0.1:8080/items/${i}`, service: 'items' }).end(200);
    await tracing.shutdown();
    const files = (await readdir(dir)).filter((f) => f.startsWith('spans.binpb'));
    assert.ok(files.length >= 3, `files: ${files.join(', ')}`);
    const { spans, badLines } = await readTraceLog(files.map((f) => join(dir, f)));
    assert.equal(badLines, 0);
    // The newest spans are in the live file and its rotations; the oldest rotated away beyond maxFiles.
    assert.ok(spans.length > 0 && spans.length <= 60);
    assert.ok(spans.every((s) => s.kind === 3 && s.service === 'orders' && /\/items\/\d+$/.test(String(s.attributes['url.full']))));
    const first = await readFile(path);
    assert.equal(first.readUInt32BE(0) + 4 <= first.length, true);
  });

  it('counts a request that does not decode and reads on; a file cut short is counted once and read no further', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-proto-log-'));
    dirs.push(dir);
    const path = join(dir, 'bad.binpb');
    const a = encodeTraceProto(randomSpans(1));
    const b = encodeTraceProto(randomSpans(2));
    const junk = Buffer.from([0, 0, 0, 3, 0x0a, 0x7f, 0x00]); // a size of 3, then a field longer than its message
    await writeFile(path, Buffer.concat([a, junk, b]));
    let read = await readTraceLog([path]);
    assert.equal(read.badLines, 1);
    assert.equal(read.spans.length, 40);
    await appendFile(path, b.subarray(0, b.length - 5)); // cut short
    read = await readTraceLog([path]);
    assert.equal(read.badLines, 2);
    assert.equal(read.spans.length, 40);
    // A size past the bound: counted, not read (no 4 GiB allocation).
    await writeFile(path, Buffer.concat([a, Buffer.from([0xff, 0xff, 0xff, 0xff]), b]));
    read = await readTraceLog([path]);
    assert.deepEqual([read.badLines, read.spans.length], [1, 20]);
  });

  it('tells the formats apart by the first byte: an empty file and a JSON log are JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-proto-log-'));
    dirs.push(dir);
    await writeFile(join(dir, 'empty'), '');
    await writeFile(join(dir, 'lines.jsonl'), `\n${encodeTraceLine(randomSpans(3))}\n`);
    const read = await readTraceLog([join(dir, 'empty'), join(dir, 'lines.jsonl')]);
    assert.deepEqual([read.badLines, read.spans.length], [0, 20]);
  });
});

/** Logged spans from the JSON log with their strings as UTF-8 (what the protobuf log holds). */
function asUtf8ish<T>(spans: T): T {
  return (spans as unknown[]).map((s) => {
    const { startTimeUnixNano, ...rest } = s as { startTimeUnixNano: bigint };
    return { ...(asUtf8(rest) as object), startTimeUnixNano };
  }) as T;
}
