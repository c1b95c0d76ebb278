// What governance costs a call (BENCH.md question 1): the full governed fetch (route rule
// in force, service and instance breakers, timeout, retry policy, tags sent on, and
// tracing at 100% with batched export to a trace log file) against the same raw fetch to
// the same upstream, in a forked process, at concurrency 1 and 50; and the governed fetch
// with tracing off. The three clients take turns within each run, so drift on a noisy
// machine hits them all; figures are medians over runs, ratios are of those medians.
// CPU is this process's user + system time over a run, per 1 000 requests: the vCPU a
// client needs to sustain 1 000 req/s (the upstream's CPU is not in it).

import { Agent, request } from 'undici';
import { governedClient } from './governed-client.js';
import { fmt, type LoadResult, load, machine, med, sized, spread, startUpstream, stopUpstream, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const PLAN = [
  { concurrency: 1, total: sized('BENCH_C1_REQUESTS', 3000, 400) },
  { concurrency: 50, total: sized('BENCH_C50_REQUESTS', 10000, 1500) },
];

export async function fetchOverhead(): Promise<string> {
  const { port, child } = await startUpstream();
  const full = await governedClient({ port, tracing: true });
  const untraced = await governedClient({ port, tracing: false });
  const raw = () => globalThis.fetch(`http://127.0.0.1:${port}/api/users/42`).then((r) => r.arrayBuffer());
  // The fast path's baseline: undici's request on its own keep-alive Agent, as the mesh's.
  const agent = new Agent();
  const rawRequest = () => request(`http://127.0.0.1:${port}/api/users/42`, { dispatcher: agent }).then((r) => r.body.arrayBuffer());
  // [name, call, index of the raw client its ratio and added columns are against]
  const clients: [string, () => Promise<unknown>, number][] = [
    ['raw fetch', raw, 0],
    ['governed, tracing off', untraced.call, 0],
    ['governed, tracing 100%', full.call, 0],
    ['raw undici request', rawRequest, 3],
    ['governed request, tracing off', untraced.request, 3],
    ['governed request, tracing 100%', full.request, 3],
  ];

  const rows: (string | number)[][] = [];
  let traced = { exported: 0, dropped: 0, bytes: 0 };
  try {
    for (const { concurrency, total } of PLAN) {
      for (const [, call] of clients) await load(call, Math.min(2000, total), concurrency); // warm-up: JIT, keep-alive pool
      const runs: LoadResult[][] = clients.map(() => []);
      for (let r = 0; r < RUNS; r++) {
        // Rotate who goes first, so no client always follows the same one.
        for (let k = 0; k < clients.length; k++) {
          const i = (k + r) % clients.length;
          runs[i]?.push(await load(clients[i]?.[1] as () => Promise<unknown>, total, concurrency));
        }
      }
      for (const [i, [name, , b]] of clients.entries()) {
        const base = runs[b] ?? [];
        const rps0 = med(base, (x) => x.rps);
        const p500 = med(base, (x) => x.p50);
        const p990 = med(base, (x) => x.p99);
        const cpu0 = med(base, (x) => x.cpuPerRequestUs);
        const isBase = i === b;
        const xs = runs[i] ?? [];
        const rps = med(xs, (x) => x.rps);
        const cpu = med(xs, (x) => x.cpuPerRequestUs);
        rows.push([
          concurrency,
          name,
          fmt(rps),
          spread(xs.map((x) => x.rps)),
          isBase ? '1' : fmt(rps / rps0, 3),
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
        ]);
      }
    }
    traced = await full.traceStats();
  } finally {
    await full.close();
    await untraced.close();
    await agent.close();
    await stopUpstream(child);
  }
  return [
    '## Governed call vs raw client (BENCH.md Q1)',
    '',
    `${machine()}; loopback, upstream in a forked process; median of ${RUNS} interleaved runs ` +
      `(${fmt(PLAN[0]?.total ?? 0)} requests at concurrency 1, ${fmt(PLAN[1]?.total ?? 0)} at 50); latencies in µs. ` +
      'Governed = route rule matching (20/80 split), service + instance breakers, 5 s timeout, retry policy, 2 tags sent on; bulkheads off. ' +
      'The governed fetch rows are against raw fetch, the governed request rows (`mesh.request`, the undici fast path) against raw undici request. ' +
      'CPU = client process user+system per 1 000 requests = vCPU at 1 000 req/s. Targets: ≥ 0.95x throughput, added p99 < 50 µs, added CPU < 0.02 vCPU per 1 000 req/s.',
    '',
    table(
      [
        'conc.',
        'client',
        'req/s',
        'req/s spread',
        'ratio',
        'p50',
        'added p50',
        'p99',
        'added p99',
        'vCPU per 1 000 req/s',
        'added vCPU per 1 000 req/s',
      ],
      rows,
    ),
    '',
    `Tracing: ${fmt(traced.exported)} spans written, ${fmt(traced.dropped)} dropped, ` +
      `${fmt(traced.bytes / Math.max(1, traced.exported))} bytes/span in the trace log.`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await fetchOverhead());
