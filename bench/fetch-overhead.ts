// What governance costs a call (BENCH.md question 1, issue 19's table), in ONE run: the
// raw clients (global fetch, undici's request on a keep-alive Agent), the governed
// clients (`mesh.fetch`, `mesh.request`) with tracing off, at 100% (spans batched into a
// trace log) and unsampled (tracing configured with sampleRatio 0), the peers a Node team
// would use instead (cockatiel + fetch, opossum + fetch, round robin and tag header by
// hand: bench/peers.ts), and `mesh.fetch` over global fetch (the path before issue 19:
// `options.fetch`), all to the same upstream in a forked process, at concurrency 1 and 50.
// Governed = a 20/80 tag route rule in force, service and instance breakers, 5 s timeout,
// one retry, two tags sent on (bench/governed-client.ts).
// The clients take turns within each run (who goes first rotates), so drift on a noisy
// machine hits them all; figures are medians over runs. Ratios are paired: each run's
// req/s over its raw client's in the same run, then the median of those (a slow minute
// of the machine moves both sides of a pair, not one median against another).
// Each client runs in a process of its own (client-process.ts), as a service runs one
// mesh: in one process every client's code was compiled for every configuration at once.
// CPU is the client's process's user + system time over a run, per request (the
// upstream's CPU is not in it).

import { type ClientSpec, isolatedClient, isolatedRounds, WARMUP_REQUESTS } from './client-process.js';
import { UPSTREAM_SERVICE } from './governed-client.js';
import { fmt, machine, med, median, sized, spread, startUpstream, stopUpstream, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 7, 2);
/** Sets of fresh client processes the runs are spread over (see client-process.ts). */
const GENERATIONS = Math.min(RUNS, sized('BENCH_GENERATIONS', 3, 1));
const PLAN = [
  { concurrency: 1, total: sized('BENCH_C1_REQUESTS', 1500, 300) },
  { concurrency: 50, total: sized('BENCH_C50_REQUESTS', 4000, 1000) },
];

/** Row indexes of the two raw clients: each other row is compared with one of them. */
const FETCH = 0;
const REQUEST = 1;

export async function fetchOverhead(): Promise<string> {
  const { port, child } = await startUpstream();
  // [name, client, index of the raw client its ratio and added columns are against]
  const clients: [string, ClientSpec, number][] = [
    ['raw fetch', { kind: 'raw-fetch' }, FETCH],
    // The fast path's baseline: undici's request on its own keep-alive Agent, as the mesh's.
    ['raw undici.request', { kind: 'raw-request' }, REQUEST],
    ['mesh.fetch, tracing off', { kind: 'mesh.fetch' }, FETCH],
    ['mesh.fetch, tracing 100%', { kind: 'mesh.fetch', traced: true }, FETCH],
    ['mesh.fetch, tracing unsampled', { kind: 'mesh.fetch', traced: 'unsampled' }, FETCH],
    ['mesh.request, tracing off', { kind: 'mesh.request' }, REQUEST],
    ['mesh.request, tracing 100%', { kind: 'mesh.request', traced: true }, REQUEST],
    ['mesh.request, tracing unsampled', { kind: 'mesh.request', traced: 'unsampled' }, REQUEST],
    ['cockatiel + fetch', { kind: 'cockatiel' }, FETCH],
    ['opossum + fetch', { kind: 'opossum' }, FETCH],
    ['mesh.fetch over global fetch (before #19), tracing off', { kind: 'mesh.fetch', overGlobalFetch: true }, FETCH],
  ];
  const specs = clients.map(([, spec]) => spec);

  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  let traced = { exported: 0, dropped: 0, bytes: 0 };
  try {
    for (const { concurrency, total } of PLAN) {
      const runs = await isolatedRounds(specs, port, {
        rounds: RUNS,
        generations: GENERATIONS,
        total,
        concurrency,
      });
      const rps = (i: number) => med(runs[i] ?? [], (x) => x.rps);
      // The median over runs of client i's req/s over client b's in the same run.
      const paired = (i: number, b: number) => {
        const base = runs[b] ?? [];
        return median((runs[i] ?? []).map((x, r) => x.rps / (base[r]?.rps ?? Number.NaN)));
      };
      const p99 = (i: number) => med(runs[i] ?? [], (x) => x.p99);
      const cpu = (i: number) => med(runs[i] ?? [], (x) => x.cpuPerRequestUs);
      for (const [i, [name, , b]] of clients.entries()) {
        const isBase = i === b;
        rows.push([
          concurrency,
          name,
          fmt(rps(i)),
          spread((runs[i] ?? []).map((x) => x.rps)),
          isBase ? '1' : `${fmt(paired(i, b), 2)}x`,
          fmt(
            med(runs[i] ?? [], (x) => x.p50),
            0,
          ),
          fmt(p99(i), 0),
          isBase ? '—' : fmt(p99(i) - p99(b), 0),
          fmt(cpu(i), 1),
          isBase ? '—' : fmt(cpu(i) - cpu(b), 1),
        ]);
      }
      const cost = (traced: number, untraced: number) => `${fmt((1 - paired(traced, untraced)) * 100, 1)}%`;
      notes.push(
        `Concurrency ${concurrency}: tracing 100% costs mesh.fetch ${cost(3, 2)} and mesh.request ${cost(6, 5)} of throughput; ` +
          `unsampled ${cost(4, 2)} and ${cost(7, 5)}. mesh.fetch / cockatiel + fetch **${fmt(paired(2, 8), 2)}x**, ` +
          `/ opossum + fetch **${fmt(paired(2, 9), 2)}x**; mesh.fetch now / before #19 **${fmt(paired(2, 10), 2)}x**. ` +
          `By CPU per request (steadier than req/s on a shared machine): raw fetch / mesh.fetch **${fmt(cpu(0) / cpu(2), 2)}x** ` +
          `(tracing 100% **${fmt(cpu(0) / cpu(3), 2)}x**), undici.request / mesh.request **${fmt(cpu(1) / cpu(5), 2)}x**.`,
      );
    }
    // What a traced client writes: one more run of the 100% mesh.fetch client, in its own process.
    const full = await isolatedClient({ kind: 'mesh.fetch', traced: true }, port);
    try {
      await full.load(PLAN[1]?.total ?? 1000, 50);
      traced = await full.traceStats();
    } finally {
      await full.close();
    }
  } finally {
    await stopUpstream(child);
  }
  return [
    '## Governed call vs raw client and peers (BENCH.md Q1, issue 19)',
    '',
    `${machine()}; loopback, upstream (node:http, a static 11-byte JSON answer) in a forked process; median of ${RUNS} interleaved runs ` +
      `(each client in a process of its own, started afresh ${GENERATIONS} times over the runs and warmed with ${fmt(WARMUP_REQUESTS)} requests each time) ` +
      `(${fmt(PLAN[0]?.total ?? 0)} requests a run at concurrency 1, ${fmt(PLAN[1]?.total ?? 0)} at 50); latencies in µs. ` +
      `Governed (\`http://${UPSTREAM_SERVICE}/…\`) = a 20/80 tag route rule, service + instance breakers, 5 s timeout, one retry, 2 tags sent on; bulkheads off. ` +
      'Rows on fetch (mesh.fetch, the peers) are against raw fetch, mesh.request rows against raw undici.request; ' +
      '"vs raw client" and the costs below are paired: the median over runs of the ratio within each run. ' +
      "CPU = the client's process, user + system, µs per request. Targets: mesh.fetch ≥ 1.5x raw fetch at c=50 (≥ 1.2x at c=1); " +
      'mesh.request ≥ 0.95x undici.request and ≤ 5 µs added CPU; added p99 at c=1 ≤ 50 µs; tracing 100% ≤ 10% of throughput, unsampled ≤ 2%.',
    '',
    table(['conc.', 'client', 'req/s', 'req/s spread', 'vs raw client', 'p50', 'p99', 'added p99', 'CPU µs/req', 'added CPU µs/req'], rows),
    '',
    ...notes,
    '',
    `Tracing: ${fmt(traced.exported)} spans written, ${fmt(traced.dropped)} dropped, ` +
      `${fmt(traced.bytes / Math.max(1, traced.exported))} bytes/span in the trace log.`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await fetchOverhead());
