// Where a traced call's cost over the network goes (issue 19's "100% tracing ≤ 10%"): the
// same governed `mesh.request` at concurrency 50 with tracing off, unsampled, sampled with
// the spans discarded at once (the span record and the header), sampled with each span
// encoded into a trace-log line that is then dropped (the encoding, not the write), and
// the full trace log; raw undici `request` with and without a `traceparent` header beside
// them (the header's own cost, on both sides of the wire). One process, the clients taking
// turns in every round; ratios paired within the round (the median over rounds of the
// client's req/s over the other's in the same round).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceLineBuilder, TraceProtoBuilder } from '@meshlet/trace';
import type { ExportResult } from '@opentelemetry/core';
import type { MeshOptions } from 'meshlet';
import { Agent, request } from 'undici';
import { type GovernedClient, governedClient } from './governed-client.js';
import { fmt, type LoadResult, load, machine, med, median, sized, startUpstream, stopUpstream, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 41, 3);
const TOTAL = sized('BENCH_C50_REQUESTS', 4000, 1000);
const CONCURRENCY = 50;
const OK: ExportResult = { code: 0 };

/** Takes every span and drops it: the span record and its context are made, nothing is encoded. */
const discardSpans = { export: (_s: unknown, done: (r: ExportResult) => void) => done(OK), shutdown: async () => {} };
/** Encodes every span into a trace-log line as the trace log does, then drops the line: the encoding without the write. */
const discardLines = {
  ...discardSpans,
  lineBuilder: () => new TraceLineBuilder(64 * 1024),
  exportLine: (_line: Buffer, done: (r: ExportResult) => void) => done(OK),
};
/** The same, encoded as the protobuf trace log's batches (`log.format: 'proto'`). */
const discardProto = { ...discardLines, lineBuilder: () => new TraceProtoBuilder(16 * 1024) };

export async function traceSplit(): Promise<string> {
  const { port, child } = await startUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-split-'));
  const governedClients: GovernedClient[] = [];
  // governed-call's client (the bench rules in force), with the row's tracing.
  const governed = async (tracing: MeshOptions['tracing']) => {
    const client = await governedClient({ port, tracing: false, ...(tracing ? { tracingOptions: tracing } : {}) });
    governedClients.push(client);
    return client.request;
  };
  const agent = new Agent();
  const url = `http://127.0.0.1:${port}/api/users/42`;
  const traceparent = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
  const OFF = 2;
  const clients: [string, () => Promise<unknown>][] = [
    ['raw undici.request', () => request(url, { dispatcher: agent }).then((r) => r.body.arrayBuffer())],
    [
      'raw undici.request + a traceparent header',
      () => request(url, { dispatcher: agent, headers: traceparent }).then((r) => r.body.arrayBuffer()),
    ],
    ['mesh.request, tracing off', await governed(undefined)],
    ['mesh.request, unsampled', await governed({ sampleRatio: 0, log: { path: join(dir, 'unsampled.jsonl') } })],
    // The unsampled call's own parts: the header (the raw rows), the call metrics (this row), the rest.
    [
      'mesh.request, unsampled, metrics off',
      await governed({ sampleRatio: 0, metrics: false, log: { path: join(dir, 'no-metrics.jsonl') } }),
    ],
    ['mesh.request, 100%, spans discarded', await governed({ sampleRatio: 1, exporters: [discardSpans] })],
    ['mesh.request, 100%, encoded into lines not written', await governed({ sampleRatio: 1, exporters: [discardLines] })],
    ['mesh.request, 100%, trace log', await governed({ sampleRatio: 1, log: { path: join(dir, 'spans.jsonl'), maxBytes: 2 ** 30 } })],
    ['mesh.request, 100%, encoded as protobuf, not written', await governed({ sampleRatio: 1, exporters: [discardProto] })],
    [
      "mesh.request, 100%, trace log, format: 'proto'",
      await governed({ sampleRatio: 1, log: { path: join(dir, 'spans.binpb'), maxBytes: 2 ** 30, format: 'proto' } }),
    ],
  ];
  const runs: LoadResult[][] = clients.map(() => []);
  try {
    for (const [, call] of clients) await load(call, 1500, CONCURRENCY);
    for (let r = 0; r < RUNS; r++)
      for (let k = 0; k < clients.length; k++) {
        const i = (k + r) % clients.length;
        runs[i]?.push(await load((clients[i] as [string, () => Promise<unknown>])[1], TOTAL, CONCURRENCY));
      }
  } finally {
    for (const client of governedClients) await client.close();
    await agent.close();
    await stopUpstream(child);
    await rm(dir, { recursive: true, force: true });
  }
  const paired = (i: number, b: number) => median((runs[i] ?? []).map((x, r) => x.rps / (runs[b]?.[r]?.rps ?? Number.NaN)));
  const rows = clients.map(([name], i) => [
    name,
    fmt(med(runs[i] ?? [], (x) => x.rps)),
    `${fmt(paired(i, 0), 3)}x`,
    i < OFF ? '—' : `${fmt(paired(i, OFF), 3)}x`,
    fmt(
      med(runs[i] ?? [], (x) => x.cpuPerRequestUs),
      1,
    ),
  ]);
  return [
    '## Where a traced call goes over the network (issue 19)',
    '',
    `${machine()}; loopback, the governed client of governed-call (bench rules in force), concurrency ${CONCURRENCY}, ` +
      `${fmt(RUNS)} rounds of ${fmt(TOTAL)} requests, every client in turn in each round; ratios paired within the round. ` +
      'Each step down the mesh rows adds one part of tracing: the header and span record, the encoding, the write; ' +
      "the last two rows encode as the protobuf trace log (`log.format: 'proto'`) instead of OTLP/JSON.",
    '',
    table(['client', 'req/s', 'vs raw undici (paired)', 'vs mesh.request tracing off (paired)', 'CPU µs/req'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await traceSplit());
