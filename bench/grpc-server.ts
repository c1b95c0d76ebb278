// What the mesh costs a gRPC server: the same unary method on a raw grpc-js server, on one
// with an empty server interceptor (what grpc-js's interceptor machinery costs by itself), on one
// with `mesh.grpc.serverInterceptor()` and tracing off, and on one with tracing at 100% into
// the trace log (each in its own forked process, grpc-upstream.ts), called by a raw grpc-js
// client that sends what a governed caller sends (two tags, the caller, a sampled
// `traceparent`). Paired rounds: in each, every server takes the same calls in turn; the
// throughput ratio is the median over rounds of the server's rate over the raw server's in
// the same round. The figure that is the server's own is its CPU per call (the server
// process's user + system time over the run): the client is the same for every row.
import * as grpc from '@grpc/grpc-js';
import { GrpcBenchClient as Client, callerWithMeshHeaders, startGrpcUpstream } from './grpc-clients.js';
import { fmt, type LoadResult, load, machine, med, median, sized, spread, table } from './harness.js';

const ROUNDS = sized('BENCH_RUNS', 15, 2);
const PLAN = [
  { concurrency: 1, total: sized('BENCH_GRPC_C1_REQUESTS', 1000, 300) },
  { concurrency: 50, total: sized('BENCH_GRPC_C50_REQUESTS', 3000, 1000) },
];
const SERVERS = [
  ['raw grpc-js server', 'raw'],
  ["raw server with an empty interceptor (grpc-js's own cost of one)", 'interceptor'],
  ['mesh.grpc.serverInterceptor(), tracing off', 'governed'],
  ['mesh.grpc.serverInterceptor(), tracing 100% to the trace log', 'traced'],
] as const;
const SAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

export async function grpcServer(): Promise<string> {
  const upstreams = await Promise.all(SERVERS.map(([, kind]) => startGrpcUpstream(kind)));
  const clients = upstreams.map((u) => new Client(`127.0.0.1:${u.port}`, grpc.credentials.createInsecure()));
  // Each call as a governed caller sends it: tags, caller, and a sampled trace context in metadata.
  const calls = clients.map((c) => callerWithMeshHeaders(c, SAMPLED));
  const rows: (string | number)[][] = [];
  try {
    for (const { concurrency, total } of PLAN) {
      for (const call of calls) await load(call, Math.min(2000, total), concurrency); // warm-up
      const runs: LoadResult[][] = calls.map(() => []);
      const serverCpu: number[][] = calls.map(() => []);
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < calls.length; k++) {
          const i = (k + r) % calls.length;
          const upstream = upstreams[i] as (typeof upstreams)[number];
          const u0 = await upstream.cpu();
          runs[i]?.push(await load(calls[i] as () => Promise<void>, total, concurrency));
          serverCpu[i]?.push(((await upstream.cpu()) - u0) / total);
        }
      }
      const base = runs[0] ?? [];
      const cpu0 = median(serverCpu[0] ?? []);
      for (const [i, [name]] of SERVERS.entries()) {
        const xs = runs[i] ?? [];
        const isBase = i === 0;
        const ratios = xs.map((x, r) => x.rps / (base[r]?.rps ?? Number.NaN));
        const cpu = median(serverCpu[i] ?? []);
        rows.push([
          concurrency,
          name,
          fmt(med(xs, (x) => x.rps)),
          isBase ? '1' : fmt(median(ratios), 3),
          isBase ? '—' : spread(ratios, 2),
          fmt(
            med(xs, (x) => x.p99),
            1,
          ),
          fmt(cpu, 1),
          isBase ? '—' : fmt(cpu - cpu0, 1),
          isBase ? '—' : fmt(cpu / cpu0, 2),
        ]);
      }
    }
  } finally {
    for (const c of clients) c.close();
    await Promise.all(upstreams.map((u) => u.stop()));
  }
  return [
    '## What the mesh costs a gRPC server',
    '',
    `${machine()}; loopback; each server in its own forked process, one raw grpc-js client (one HTTP/2 connection) per server, ` +
      `sending two tags, the caller and a sampled traceparent in metadata; ${ROUNDS} rounds, each server in turn in each round ` +
      `(${fmt(PLAN[0]?.total ?? 0)} unary calls at concurrency 1, ${fmt(PLAN[1]?.total ?? 0)} at 50). ` +
      "Ratio = median over rounds of the rate over the raw server's rate in the same round; server CPU = the server process's user + system µs per call, median over rounds. " +
      'The governed servers have no rules in force (context, auth and rate-limit checks find none); the traced one writes a SERVER span per call into the trace log.',
    '',
    table(
      [
        'conc.',
        'server',
        'calls/s',
        'ratio (median of rounds)',
        'ratio spread',
        'p99 µs',
        'server CPU µs/call',
        'added µs/call',
        'CPU vs raw',
      ],
      rows,
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcServer());
