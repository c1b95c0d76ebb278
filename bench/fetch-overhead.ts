// Governed fetch against raw fetch to the same local upstream (BENCH.md question 1).
// Raw and governed runs alternate so that drift on a noisy machine hits both; figures are
// medians over the runs, and the ratio is of those medians.
import { createContext, InMemoryRegistry, runWithContext } from '@meshlet/core';
import { createMesh } from 'meshlet';
import { fmt, type LoadResult, load, machine, median, startUpstream, table } from './harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const PLAN = [
  { concurrency: 1, total: Number(process.env.BENCH_C1_REQUESTS ?? 3000) },
  { concurrency: 50, total: Number(process.env.BENCH_C50_REQUESTS ?? 10000) },
];

export async function fetchOverhead(): Promise<string> {
  const { port, child } = await startUpstream();
  const registry = new InMemoryRegistry();
  await registry.register({ id: 'up-1', service: 'bench-upstream', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
  const mesh = createMesh({ service: 'bench-client', version: '1.0.0', registry });
  // A request context with tags, as a handler would have: the governed path encodes them.
  const ctx = createContext({
    tags: [
      ['user-tier', 'vip'],
      ['ua.family', 'Chrome'],
    ],
    caller: { service: 'edge' },
  });

  const raw = () => globalThis.fetch(`http://127.0.0.1:${port}/api/users/42`).then((r) => r.arrayBuffer());
  const governed = () => runWithContext(ctx, () => mesh.fetch('http://bench-upstream/api/users/42').then((r) => r.arrayBuffer()));

  const rows: (string | number)[][] = [];
  try {
    for (const { concurrency, total } of PLAN) {
      await load(raw, 2000, concurrency); // warm-up: JIT, keep-alive pool
      await load(governed, 2000, concurrency);
      const r: LoadResult[] = [];
      const g: LoadResult[] = [];
      for (let i = 0; i < RUNS; i++) {
        r.push(await load(raw, total, concurrency));
        g.push(await load(governed, total, concurrency));
      }
      const m = (xs: LoadResult[], k: keyof LoadResult) => median(xs.map((x) => x[k]));
      rows.push([
        concurrency,
        fmt(m(r, 'rps')),
        fmt(m(g, 'rps')),
        fmt(m(g, 'rps') / m(r, 'rps'), 3),
        fmt(m(r, 'p50'), 1),
        fmt(m(g, 'p50'), 1),
        fmt(m(g, 'p50') - m(r, 'p50'), 1),
        fmt(m(r, 'p99'), 1),
        fmt(m(g, 'p99'), 1),
        fmt(m(g, 'p99') - m(r, 'p99'), 1),
      ]);
    }
  } finally {
    await mesh.close();
    child.disconnect();
  }
  return [
    `### Governed fetch vs raw fetch (undici via global fetch), loopback, upstream in a forked process`,
    `${machine()}; median of ${RUNS} alternating runs; latencies in µs.`,
    '',
    table(
      ['concurrency', 'raw req/s', 'governed req/s', 'ratio', 'raw p50', 'gov p50', 'added p50', 'raw p99', 'gov p99', 'added p99'],
      rows,
    ),
  ].join('\n');
}
