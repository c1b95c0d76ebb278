// What governance costs a gRPC call: a unary call through `mesh.grpc.client` (route rule
// in force, service + instance breakers, timeout, retry policy, two tags sent in metadata;
// tracing off, and at 100% into a trace log) against the same call on a raw grpc-js client
// to the same upstream, in a forked process, at concurrency 1 and 50. The governed calls
// run in a request context made once per run, as a handler's calls run in its request's
// context. The clients take turns within each round; ratios are medians of per-round
// ratios. CPU is this process's user + system time per 1 000 calls.
//   BENCH_GRPC_BASELINE=/path/to/checkout  adds that checkout's build (built with tsc -b), tracing off
import * as grpc from '@grpc/grpc-js';
import {
  GrpcBenchClient as Client,
  caller,
  callerWithMeshHeaders,
  governedGrpc as governed,
  meshletBuildAt,
  startGrpcUpstream,
} from './grpc-clients.js';
import { fmt, type LoadResult, load, machine, med, median, sized, spread, table } from './harness.js';

// Rounds: in each, every client runs the same number of calls, one after the other (the
// order rotating); a client's ratio is the median over rounds of its rate over the raw
// client's rate in the same round, so load from other processes that comes and goes
// between rounds cancels out instead of landing on one client's runs.
const ROUNDS = sized('BENCH_RUNS', 15, 2);
const PLAN = [
  { concurrency: 1, total: sized('BENCH_GRPC_C1_REQUESTS', 1000, 300) },
  { concurrency: 50, total: sized('BENCH_GRPC_C50_REQUESTS', 3000, 1000) },
];

export async function grpcOverhead(): Promise<string> {
  const upstream = await startGrpcUpstream();
  const port = upstream.port;
  const rawClient = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const off = await governed(port, false);
  const traced = await governed(port, true);
  // A governed client's calls run in a request context made once per run, as a handler's
  // calls run in the context its inbound request got (not in one made per call).
  type Run = (fn: () => Promise<LoadResult>) => Promise<LoadResult>;
  const direct: Run = (fn) => fn();
  const clients: [string, () => Promise<unknown>, Run][] = [
    ['raw grpc-js', caller(rawClient), direct],
    // A peer, not the baseline: the mesh's two headers set by hand on the raw client.
    ['raw grpc-js + the mesh headers by hand', callerWithMeshHeaders(rawClient), direct],
    ['governed, tracing off', off.bare, off.inContext],
    ['governed, tracing 100%', traced.bare, traced.inContext],
  ];
  // A before/after comparison in the same run: another checkout's build, tracing off.
  const baselineRoot = process.env.BENCH_GRPC_BASELINE;
  const baseline = baselineRoot ? await governed(port, false, await meshletBuildAt(baselineRoot)) : undefined;
  if (baseline) clients.push(['governed, tracing off, baseline build', baseline.bare, baseline.inContext]);
  const rows: (string | number)[][] = [];
  try {
    for (const { concurrency, total } of PLAN) {
      for (const [, call, run] of clients) await run(() => load(call, Math.min(2000, total), concurrency)); // warm-up
      const runs: LoadResult[][] = clients.map(() => []);
      // The upstream's CPU per call during each client's runs (µs): what the mesh's metadata costs the server.
      const upstreamCpu: number[][] = clients.map(() => []);
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < clients.length; k++) {
          const i = (k + r) % clients.length;
          const [, call, run] = clients[i] as (typeof clients)[number];
          const u0 = await upstream.cpu();
          runs[i]?.push(await run(() => load(call, total, concurrency)));
          upstreamCpu[i]?.push(((await upstream.cpu()) - u0) / total);
        }
      }
      const base = runs[0] ?? [];
      const p500 = med(base, (x) => x.p50);
      const p990 = med(base, (x) => x.p99);
      const cpu0 = med(base, (x) => x.cpuPerRequestUs);
      for (const [i, [name]] of clients.entries()) {
        const xs = runs[i] ?? [];
        const isBase = i === 0;
        const rps = med(xs, (x) => x.rps);
        const cpu = med(xs, (x) => x.cpuPerRequestUs);
        // Paired: this client's rate over the raw client's in the same round.
        const ratios = xs.map((x, r) => x.rps / (base[r]?.rps ?? Number.NaN));
        rows.push([
          concurrency,
          name,
          fmt(rps),
          spread(xs.map((x) => x.rps)),
          isBase ? '1' : fmt(median(ratios), 3),
          isBase ? '—' : spread(ratios, 2),
          fmt(
            med(xs, (x) => x.p50),
            1,
          ),
          isBase ? '—' : fmt(med(xs, (x) => x.p50) - p500, 1),
          fmt(
            med(xs, (x) => x.p99),
            1,
          ),
          isBase ? '—' : fmt(med(xs, (x) => x.p99) - p990, 1),
          fmt(cpu / 1000, 3),
          isBase ? '—' : fmt((cpu - cpu0) / 1000, 3),
          fmt(median(upstreamCpu[i] ?? []) / 1000, 3),
        ]);
      }
    }
  } finally {
    rawClient.close();
    await off.close();
    await traced.close();
    await baseline?.close();
    await upstream.stop();
  }
  return [
    '## Governed gRPC call vs raw grpc-js',
    '',
    `${machine()}; loopback, grpc-js upstream in a forked process; ${ROUNDS} rounds, each client in turn in each round ` +
      `(${fmt(PLAN[0]?.total ?? 0)} unary calls at concurrency 1, ${fmt(PLAN[1]?.total ?? 0)} at 50); ` +
      "ratio = median over rounds of the rate over the raw client's rate in the same round; other figures are medians over rounds; latencies in µs. " +
      "Like with like: every client sends over one HTTP/2 connection to the one upstream process, taking turns (grpc-js shares one subchannel between the raw client's channel and the mesh's pooled channel to the same address; " +
      'a baseline build, with its own grpc-js copy, has a connection of its own). ' +
      'Governed = `mesh.grpc.client`: route rule matching (20/80 split), service + instance breakers, 5 s timeout, retry policy, 2 tags in metadata; its calls run in one request context per run, as a handler runs, not one made per call. ' +
      "CPU = client process user+system per 1 000 calls = vCPU at 1 000 calls/s; upstream: the same for the server process during that client's runs. Target: ≥ 0.95x throughput.",
    '',
    table(
      [
        'conc.',
        'client',
        'calls/s',
        'spread',
        'ratio (median of rounds)',
        'ratio spread',
        'p50',
        'added p50',
        'p99',
        'added p99',
        'vCPU per 1 000/s',
        'added vCPU per 1 000/s',
        'upstream vCPU per 1 000/s',
      ],
      rows,
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcOverhead());
