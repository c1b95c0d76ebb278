// Hedged requests on a long-tail upstream (issue 23): the caller's p50/p99 and the extra
// requests hedging costs, without hedging, with a percentile delay and with a fixed one.
// The upstream (bench/tail-upstream.ts, its own process) answers in 2-6 ms except 2% of
// requests, which take 80-150 ms. Runs are interleaved; medians over HEDGE_RUNS rounds.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { fmt, median, quantile, sized, spread, stopUpstream, table } from './harness.js';

const CALLS = sized('HEDGE_CALLS', 3000, 800);
const RUNS = sized('HEDGE_RUNS', 3, 1);
const CONCURRENCY = 8;

interface Variant {
  readonly name: string;
  readonly hedge: unknown;
}

const variants: Variant[] = [
  { name: 'no hedging', hedge: undefined },
  { name: 'hedge at p97 of recent latencies', hedge: { percentile: 97, minDelayMs: 2 } },
  { name: 'hedge after a fixed 10 ms', hedge: { delayMs: 10 } },
];

function count(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m: { count: number }) => resolve(m.count));
    child.send({ cmd: 'count' });
  });
}

async function callMany(mesh: Mesh, calls: number): Promise<number[]> {
  const lat: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < calls) {
        const t0 = performance.now();
        const res = await mesh.request('http://tail/item');
        await res.body.dump();
        lat.push(performance.now() - t0);
      }
    }),
  );
  return lat.sort((a, b) => a - b);
}

interface RunResult {
  readonly p50: number;
  readonly p99: number;
  readonly extraPct: number;
}

export async function hedgeTail(): Promise<string> {
  const child = fork(fileURLToPath(new URL('./tail-upstream.js', import.meta.url)), { stdio: 'inherit' });
  const [msg] = (await once(child, 'message')) as [{ ports: number[] }];
  const registry = new InMemoryRegistry();
  for (const [i, port] of msg.ports.entries())
    await registry.register({ id: `tail-${i}`, service: 'tail', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
  const results = new Map<string, RunResult[]>(variants.map((v) => [v.name, []]));
  try {
    for (let round = 0; round < RUNS; round++) {
      for (const v of variants) {
        // A fresh caller per run: the percentile learns from this run's traffic only.
        const rules = new InMemoryKvStore();
        const mesh = createMesh({ service: 'caller', registry, rules, logger: new MemoryLogger() });
        try {
          if (v.hedge) await mesh.rules.apply(JSON.stringify({ service: 'tail', breaker: { hedge: v.hedge } }), { author: 'bench' });
          await callMany(mesh, 200); // warm-up, and the percentile's first samples
          await count(child);
          const lat = await callMany(mesh, CALLS);
          const received = await count(child);
          results.get(v.name)?.push({ p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), extraPct: ((received - CALLS) / CALLS) * 100 });
        } finally {
          await mesh.close();
        }
      }
    }
  } finally {
    await stopUpstream(child);
  }
  const base = median((results.get('no hedging') ?? []).map((r) => r.p99));
  const rows = variants.map((v) => {
    const rs = results.get(v.name) ?? [];
    const p99 = median(rs.map((r) => r.p99));
    return [
      v.name,
      fmt(median(rs.map((r) => r.p50)), 1),
      `${fmt(p99, 1)} (${spread(
        rs.map((r) => r.p99),
        1,
      )})`,
      v.hedge ? `${fmt(((base - p99) / base) * 100)}%` : '-',
      `${fmt(median(rs.map((r) => r.extraPct)), 2)}%`,
    ];
  });
  return [
    '## hedge-tail: hedged requests on a long-tail upstream',
    '',
    `3 instances answering in 2-6 ms, 2% of requests in 80-150 ms; mesh.request, ${CONCURRENCY} callers, ${fmt(CALLS)} calls a run, median of ${RUNS} interleaved runs (spread in brackets). Extra requests counted at the upstream.`,
    '',
    table(['caller', 'p50 ms', 'p99 ms', 'p99 cut', 'extra requests'], rows),
  ].join('\n');
}
