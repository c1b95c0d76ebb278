// Issue 19's throughput targets, each with the uncertainty of its verdict: `mesh.request` ≥
// 0.95x raw undici `request`, `mesh.fetch` ≥ 1.5x raw fetch at concurrency 50 (≥ 1.2x at 1),
// tracing unsampled ≤ 2% and at 100% ≤ 10% of `mesh.request`'s throughput (the governed
// client, bench rules in force). governed-call and trace-split show the figures and where
// the cost goes; this section asks only whether each target holds, and how sure that answer
// is. A figure moves more between sets of processes than between rounds (a process keeps
// its JIT's choices and its heap for all its rounds), so the rounds are spread over many
// sets of fresh processes, each set's paired ratio is its median over its rounds, and the
// verdict rests on the median over sets and its distribution-free 95% interval (order
// statistics: no assumption of a normal spread).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClientSpec, generationMedians, isolatedRounds, WARMUP_REQUESTS } from './client-process.js';
import { fmt, type LoadResult, machine, median, medianInterval, sized, startUpstream, stopUpstream, table } from './harness.js';

/** Sets of fresh client processes: 12 give the median's 95% interval as the 3rd lowest and 3rd highest. */
const GENERATIONS = sized('BENCH_GENERATIONS', 12, 6);
const ROUNDS_PER_SET = sized('BENCH_ROUNDS_PER_SET', 4, 1);
const PLAN = [
  { concurrency: 1, total: sized('BENCH_C1_REQUESTS', 1500, 300) },
  { concurrency: 50, total: sized('BENCH_C50_REQUESTS', 4000, 1000) },
];

/** One target: the client's throughput over its baseline's (by index in CLIENTS), at least `atLeast`. */
interface Target {
  readonly client: number;
  readonly baseline: number;
  readonly atLeast: number;
  readonly what: string;
  /** At this concurrency only; both when absent. */
  readonly concurrency?: number;
}

export async function targets(): Promise<string> {
  const { port, child } = await startUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-targets-'));
  const log = (name: string, format?: 'proto') => ({ path: join(dir, name), maxBytes: 2 ** 30, ...(format ? { format } : {}) });
  const clients: [string, ClientSpec][] = [
    ['raw undici.request', { kind: 'raw-request' }],
    ['raw fetch', { kind: 'raw-fetch' }],
    ['mesh.request, tracing off', { kind: 'mesh.request' }],
    ['mesh.fetch, tracing off', { kind: 'mesh.fetch' }],
    ['mesh.request, unsampled', { kind: 'mesh.request', tracing: { sampleRatio: 0, log: log('unsampled.jsonl') } }],
    [
      "mesh.request, 100%, trace log, format: 'proto'",
      { kind: 'mesh.request', tracing: { sampleRatio: 1, log: log('spans.binpb', 'proto') } },
    ],
    ['mesh.request, 100%, trace log (JSON, the default)', { kind: 'mesh.request', tracing: { sampleRatio: 1, log: log('spans.jsonl') } }],
  ];
  const goals: Target[] = [
    { client: 2, baseline: 0, atLeast: 0.95, what: 'mesh.request ≥ 0.95x raw undici.request' },
    { client: 3, baseline: 1, atLeast: 1.2, what: 'mesh.fetch ≥ 1.2x raw fetch', concurrency: 1 },
    { client: 3, baseline: 1, atLeast: 1.5, what: 'mesh.fetch ≥ 1.5x raw fetch', concurrency: 50 },
    { client: 4, baseline: 2, atLeast: 0.98, what: 'unsampled ≤ 2%: ≥ 0.98x of mesh.request, tracing off' },
    { client: 5, baseline: 2, atLeast: 0.9, what: '100% ≤ 10%, protobuf log: ≥ 0.90x of tracing off' },
    { client: 6, baseline: 2, atLeast: 0.9, what: '100% ≤ 10%, JSON log: ≥ 0.90x of tracing off' },
  ];
  const rounds = GENERATIONS * ROUNDS_PER_SET;
  const lines: (string | number)[][] = [];
  let coverage = 0;
  try {
    for (const { concurrency, total } of PLAN) {
      const runs: LoadResult[][] = await isolatedRounds(
        clients.map(([, spec]) => spec),
        port,
        { rounds, generations: GENERATIONS, total, concurrency },
      );
      for (const goal of goals) {
        if (goal.concurrency !== undefined && goal.concurrency !== concurrency) continue;
        const base = runs[goal.baseline] ?? [];
        const ratios = (runs[goal.client] ?? []).map((x, r) => x.rps / (base[r]?.rps ?? Number.NaN));
        const sets = generationMedians(ratios, { rounds, generations: GENERATIONS });
        const interval = medianInterval(sets);
        coverage = interval?.coverage ?? 0;
        const verdict = !interval
          ? 'too few sets'
          : interval.low >= goal.atLeast
            ? '**met**'
            : interval.high < goal.atLeast
              ? '**not met**'
              : 'not decided: the interval holds the bound';
        lines.push([
          concurrency,
          goal.what,
          `${fmt(median(sets), 3)}x`,
          interval ? `${fmt(interval.low, 3)}–${fmt(interval.high, 3)}x` : '—',
          verdict,
        ]);
      }
    }
  } finally {
    await stopUpstream(child);
    await rm(dir, { recursive: true, force: true });
  }
  return [
    '## Issue 19’s throughput targets, with their uncertainty',
    '',
    `${machine()}; loopback, the governed client (bench rules in force) against the same upstream. ${fmt(GENERATIONS)} sets of ` +
      `fresh processes (one per client, each warmed with ${fmt(WARMUP_REQUESTS)} requests), ${fmt(ROUNDS_PER_SET)} rounds each ` +
      `(${PLAN.map((p) => `${fmt(p.total)} requests at concurrency ${p.concurrency}`).join(', ')}), the clients taking turns. ` +
      "A set's ratio is the median over its rounds of the client's req/s over its baseline's in the same round; the table " +
      `gives the median over sets and a distribution-free ${fmt(100 * coverage, 1)}% interval for it (order statistics over ` +
      'the sets). A target is met when the whole interval is within it, not met when the whole interval is outside.',
    '',
    table(['conc.', 'target', 'ratio (median over sets)', 'interval', 'verdict'], lines),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await targets());
