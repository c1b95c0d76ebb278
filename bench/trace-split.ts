// Where a traced call's cost over the network goes (issue 19's "100% tracing ≤ 10%"): the
// same governed `mesh.request` at concurrency 50 with tracing off, unsampled, sampled with
// the spans discarded at once (the span record and the header), sampled with each span
// encoded into a trace-log line that is then dropped (the encoding, not the write), and
// the full trace log; raw undici `request` with and without a `traceparent` header beside
// them (the header's own cost, on both sides of the wire). Each client in a process of its
// own (client-process.ts), the clients taking turns in every round; ratios paired within
// the round (the median over rounds of the client's req/s over the other's in the same
// round). CPU is each client's own process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClientSpec, generationMedians, isolatedRounds, WARMUP_REQUESTS } from './client-process.js';
import { INBOUND_UNSAMPLED } from './governed-client.js';
import { fmt, type LoadResult, machine, med, median, sized, spread, startProcess, startUpstream, stopUpstream, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 40, 2);
/** Sets of fresh client processes the rounds are spread over. */
const GENERATIONS = sized('BENCH_GENERATIONS', 5, 1);
const TOTAL = sized('BENCH_C50_REQUESTS', 4000, 1000);
const CONCURRENCY = 50;

export async function traceSplit(): Promise<string> {
  const { port, child } = await startUpstream();
  const sink = await startUpstream();
  const sinkUrl = `http://127.0.0.1:${sink.port}`;
  const grpcSink = await startProcess('./otlp-grpc-sink.js');
  const grpcSinkUrl = `http://127.0.0.1:${grpcSink.port}`;
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-split-'));
  const log = (name: string, format?: 'proto') => ({ path: join(dir, name), maxBytes: 2 ** 30, ...(format ? { format } : {}) });
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const OFF = 2;
  const specs: [string, ClientSpec][] = [
    ['raw undici.request', { kind: 'raw-request' }],
    ['raw undici.request + a traceparent header', { kind: 'raw-request', headers: { traceparent } }],
    ['mesh.request, tracing off', { kind: 'mesh.request' }],
    ['mesh.request, unsampled', { kind: 'mesh.request', tracing: { sampleRatio: 0, log: log('unsampled.jsonl') } }],
    // The unsampled call's own parts: the header (the raw rows), the call metrics (this row), the rest.
    [
      'mesh.request, unsampled, metrics off',
      { kind: 'mesh.request', tracing: { sampleRatio: 0, metrics: false, log: log('no-metrics.jsonl') } },
    ],
    ['mesh.request, 100%, spans discarded', { kind: 'mesh.request', tracing: { sampleRatio: 1 }, exporter: 'discard-spans' }],
    [
      'mesh.request, 100%, encoded into lines not written',
      { kind: 'mesh.request', tracing: { sampleRatio: 1 }, exporter: 'discard-lines' },
    ],
    ['mesh.request, 100%, trace log', { kind: 'mesh.request', tracing: { sampleRatio: 1, log: log('spans.jsonl') } }],
    [
      'mesh.request, 100%, encoded as protobuf, not written',
      { kind: 'mesh.request', tracing: { sampleRatio: 1 }, exporter: 'discard-proto' },
    ],
    [
      "mesh.request, 100%, trace log, format: 'proto'",
      { kind: 'mesh.request', tracing: { sampleRatio: 1, log: log('spans.binpb', 'proto') } },
    ],
    // To an OTLP/HTTP receiver (a second upstream process answering 200, as a collector's
    // receiver on the same machine would): the exporter's encoding and POSTs, in both protocols.
    [
      'mesh.request, 100%, OTLP/HTTP protobuf to a local receiver',
      { kind: 'mesh.request', tracing: { sampleRatio: 1, otlp: { url: `${sinkUrl}/v1/traces` } } },
    ],
    [
      'mesh.request, 100%, OTLP/HTTP protobuf gzipped to a local receiver',
      { kind: 'mesh.request', tracing: { sampleRatio: 1, otlp: { url: `${sinkUrl}/v1/traces`, compression: 'gzip' } } },
    ],
    [
      'mesh.request, 100%, OTLP/HTTP JSON to a local receiver',
      { kind: 'mesh.request', tracing: { sampleRatio: 1, otlp: { url: `${sinkUrl}/v1/traces`, protocol: 'http/json' } } },
    ],
    // To an OTLP/gRPC receiver (a grpc-js server in a process of its own answering Export).
    [
      'mesh.request, 100%, OTLP/gRPC to a local receiver',
      { kind: 'mesh.request', tracing: { sampleRatio: 1, otlp: { url: grpcSinkUrl, protocol: 'grpc' } } },
    ],
    [
      'mesh.request, 100%, OTLP/gRPC gzipped to a local receiver',
      { kind: 'mesh.request', tracing: { sampleRatio: 1, otlp: { url: grpcSinkUrl, protocol: 'grpc', compression: 'gzip' } } },
    ],
    // The same calls made while serving a request that came with an unsampled traceparent:
    // a traceparent goes out on every row, so what is left between them is tracing's own.
    ['mesh.request, tracing off, the inbound traceparent passed on', { kind: 'mesh.request', inboundTraceparent: INBOUND_UNSAMPLED }],
    [
      'mesh.request, unsampled, under the inbound trace context',
      { kind: 'mesh.request', tracing: { sampleRatio: 0, log: log('inbound-unsampled.jsonl') }, inboundTraceparent: INBOUND_UNSAMPLED },
    ],
  ];
  const INBOUND_OFF = specs.length - 2;
  let runs: LoadResult[][];
  try {
    runs = await isolatedRounds(
      specs.map(([, spec]) => spec),
      port,
      { rounds: RUNS, generations: GENERATIONS, total: TOTAL, concurrency: CONCURRENCY },
    );
  } finally {
    await stopUpstream(child);
    await stopUpstream(sink.child);
    await stopUpstream(grpcSink.child);
    await rm(dir, { recursive: true, force: true });
  }
  const ratios = (i: number, b: number) => (runs[i] ?? []).map((x, r) => x.rps / (runs[b]?.[r]?.rps ?? Number.NaN));
  const paired = (i: number, b: number) => median(ratios(i, b));
  /** The paired ratio's median within each set of processes, as min–max: how far one set's luck moves it. */
  const bySet = (i: number, b: number) => spread(generationMedians(ratios(i, b), { rounds: RUNS, generations: GENERATIONS }), 3);
  const rows = specs.slice(0, INBOUND_OFF).map(([name], i) => [
    name,
    fmt(med(runs[i] ?? [], (x) => x.rps)),
    `${fmt(paired(i, 0), 3)}x`,
    i < OFF ? '—' : `${fmt(paired(i, OFF), 3)}x`,
    i < OFF ? '—' : bySet(i, OFF),
    fmt(
      med(runs[i] ?? [], (x) => x.cpuPerRequestUs),
      1,
    ),
    fmt(
      med(runs[i] ?? [], (x) => x.mainThreadCpuPerRequestUs),
      1,
    ),
  ]);
  return [
    '## Where a traced call goes over the network (issue 19)',
    '',
    `${machine()}; loopback, the governed client of governed-call (bench rules in force), concurrency ${CONCURRENCY}, ` +
      `${fmt(RUNS)} rounds of ${fmt(TOTAL)} requests, every client in turn in each round; ratios paired within the round. ` +
      `Each client runs in a process of its own, started afresh ${fmt(GENERATIONS)} times over the rounds and warmed with ${fmt(WARMUP_REQUESTS)} requests each time; CPU is its process's. ` +
      'Each step down the mesh rows adds one part of tracing: the header and span record, the encoding, the write; ' +
      "the protobuf rows encode as the protobuf trace log (`log.format: 'proto'`) instead of OTLP/JSON; the OTLP rows send each batch to a receiver on loopback instead of writing a log (OTLP/HTTP: a second upstream process answering 200; OTLP/gRPC: a grpc-js server answering Export).",
    '',
    table(
      [
        'client',
        'req/s',
        'vs raw undici (paired)',
        'vs mesh.request tracing off (paired)',
        'the same, per set of processes',
        'CPU µs/req',
        'main thread µs/req',
      ],
      rows,
    ),
    '',
    `"Per set of processes": the paired ratio's median within each of the ${fmt(GENERATIONS)} sets, lowest–highest. ` +
      'A process keeps its luck (its heap, what its code was compiled for) for all its rounds, so this, not the spread ' +
      'of rounds, is how far a figure moves between runs; with 5 sets it holds the median set’s figure with 94% confidence.',
    '',
    'The same calls made while serving a request that came with an unsampled `traceparent` (a caller that traces): ' +
      'with tracing off the mesh passes it on as it came, so a traceparent goes out on both rows, and the second ' +
      "row's cost is tracing's own (its span context, the header it writes, the call metrics).",
    '',
    table(
      [
        'client',
        'req/s',
        'vs raw undici (paired)',
        'vs the row above it (paired)',
        'the same, per set of processes',
        'CPU µs/req',
        'main thread µs/req',
      ],
      specs.slice(INBOUND_OFF).map(([name], k) => {
        const i = INBOUND_OFF + k;
        return [
          name,
          fmt(med(runs[i] ?? [], (x) => x.rps)),
          `${fmt(paired(i, 0), 3)}x`,
          k === 0 ? '—' : `${fmt(paired(i, i - 1), 3)}x`,
          k === 0 ? '—' : bySet(i, i - 1),
          fmt(
            med(runs[i] ?? [], (x) => x.cpuPerRequestUs),
            1,
          ),
          fmt(
            med(runs[i] ?? [], (x) => x.mainThreadCpuPerRequestUs),
            1,
          ),
        ];
      }),
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await traceSplit());
