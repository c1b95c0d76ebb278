// The trace log's two encodings side by side, without the network (issue 19): the spans the
// governed client records at 100% (`mesh.request` under the bench rules), encoded into a
// batch as the batch queue does (a line builder, span by span) as OTLP/JSON and as OTLP
// protobuf (`log.format: 'proto'`). Bytes per span, and the best of several timed rounds
// of CPU per span; the two encoders take turns in every round. Then what gzip (the OTLP
// exporter's `compression: 'gzip'`) makes of each batch, at its fastest level (the
// exporter's) and at zlib's default, and the CPU it takes (on libuv's thread pool in the
// exporter; timed here on the main thread, synchronously).
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { type SpanLine, TraceLineBuilder, TraceProtoBuilder } from '@meshlet/trace';
import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { governedClient } from './governed-client.js';
import { fmt, load, machine, median, sized, startUpstream, stopUpstream, table } from './harness.js';

const BATCH = 512;
const ROUNDS = sized('BENCH_RUNS', 15, 3);
const REPEAT = sized('BENCH_ENCODE_REPEAT', 200, 20);

/** A batch of the governed client's own span records. */
async function recordedSpans(): Promise<ReadableSpan[]> {
  const spans: ReadableSpan[] = [];
  const keep = {
    export: (batch: ReadableSpan[], done: (r: ExportResult) => void) => {
      if (spans.length < BATCH) spans.push(...batch.slice(0, BATCH - spans.length));
      done({ code: 0 });
    },
    shutdown: async () => {},
  };
  const { port, child } = await startUpstream();
  const client = await governedClient({
    port,
    tracing: false,
    tracingOptions: { sampleRatio: 1, exporters: [keep], batch: { maxBatchSize: 64, delayMs: 10 } },
  });
  try {
    await load(client.request, 2 * BATCH, 10);
    for (let i = 0; i < 100 && spans.length < BATCH; i++) await sleep(10);
  } finally {
    await client.close();
    await stopUpstream(child);
  }
  return spans;
}

/** CPU ns per span to encode the batch `REPEAT` times with fresh builders. */
function nsPerSpan(spans: readonly ReadableSpan[], builder: () => SpanLine): number {
  const start = process.cpuUsage();
  for (let i = 0; i < REPEAT; i++) {
    const line = builder();
    for (const span of spans) line.add(span);
    line.take();
  }
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / (REPEAT * spans.length);
}

export async function traceEncode(): Promise<string> {
  const spans = await recordedSpans();
  const encoders: [string, () => SpanLine][] = [
    ['OTLP/JSON (the default)', () => new TraceLineBuilder(256 * 1024)],
    ["OTLP protobuf (`log.format: 'proto'`)", () => new TraceProtoBuilder(256 * 1024)],
  ];
  const bytes = encoders.map(([, make]) => {
    const line = make();
    for (const span of spans) line.add(span);
    return line.take().length / spans.length;
  });
  const times: number[][] = encoders.map(() => []);
  for (let r = 0; r < ROUNDS; r++)
    for (let k = 0; k < encoders.length; k++) {
      const i = (k + r) % encoders.length;
      times[i]?.push(nsPerSpan(spans, (encoders[i] as [string, () => SpanLine])[1]));
    }
  const json = median(times[0] ?? []);
  const rows = encoders.map(([name], i) => [
    name,
    fmt(bytes[i] ?? 0),
    fmt(median(times[i] ?? []), 0),
    `${fmt(median(times[i] ?? []) / json, 2)}x`,
  ]);
  const batches = encoders.map(([, make]) => {
    const line = make();
    for (const span of spans) line.add(span);
    return line.take();
  });
  const levels = [1, 6];
  const zipRows: (string | number)[][] = [];
  for (const [e, [name]] of encoders.entries()) {
    const batch = batches[e] as Buffer;
    for (const level of levels) {
      const zipped = gzipSync(batch, { level }).length;
      const ns: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const start = process.cpuUsage();
        const n = Math.max(1, Math.round(REPEAT / 10));
        for (let i = 0; i < n; i++) gzipSync(batch, { level });
        const used = process.cpuUsage(start);
        ns.push(((used.user + used.system) * 1000) / (n * spans.length));
      }
      zipRows.push([
        name,
        level === 1 ? '1 (the exporter’s)' : `${level} (zlib’s default)`,
        fmt(zipped / spans.length),
        `${fmt(zipped / batch.length, 3)}x`,
        fmt(median(ns)),
      ]);
    }
  }
  return [
    '## The trace log encodings (issue 19)',
    '',
    `${machine()}; ${fmt(spans.length)} span records of the governed client (bench rules, 100% sampled), encoded ` +
      `${fmt(REPEAT)} times a round into a batch as the batch queue builds it, ${fmt(ROUNDS)} rounds taking turns; CPU medians.`,
    '',
    table(['encoding', 'bytes/span', 'CPU ns/span', 'vs JSON'], rows),
    '',
    `The same batches gzipped (OTLP/HTTP \`compression: 'gzip'\`), ${fmt(ROUNDS)} rounds; CPU median per span:`,
    '',
    table(['encoding', 'gzip level', 'bytes/span', 'vs not gzipped', 'CPU ns/span'], zipRows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await traceEncode());
