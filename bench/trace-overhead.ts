// Tracing cost on a governed call (BENCH.md question 1, the trace part): the same governed
// fetch to a forked upstream with tracing off and on — a CLIENT span per call, 100%
// sampling, headers injected, metrics recorded, spans batched into the local trace log.
// Off and on runs alternate so that drift on a noisy machine hits both; figures are medians.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemoryRegistry } from '@meshlet/core';
import { createTracing } from '@meshlet/trace';
import { createMesh } from 'meshlet';
import { fmt, type LoadResult, load, machine, median, startUpstream, table } from './harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const PLAN = [
  { concurrency: 1, total: Number(process.env.BENCH_C1_REQUESTS ?? 3000) },
  { concurrency: 50, total: Number(process.env.BENCH_C50_REQUESTS ?? 10000) },
];
const SPAN_LOOP = 20_000;

export async function traceOverhead(): Promise<string> {
  const { port, child } = await startUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-trace-'));
  const logPath = join(dir, 'spans.jsonl');
  const registry = new InMemoryRegistry();
  await registry.register({ id: 'up-1', service: 'bench-upstream', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
  const mesh = createMesh({ service: 'bench-client', version: '1.0.0', registry });
  const tracing = createTracing({ service: 'bench-client', sampleRatio: 1, log: { path: logPath } });
  // The parent a handler would have: the inbound request's trace.
  const parent = tracing.propagation.extract({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  const url = 'http://bench-upstream/api/users/42';

  const off = () => mesh.fetch(url).then((r) => r.arrayBuffer());
  // What governed fetch does per attempt once wired: span, inject, send, end with the status.
  const on = async () => {
    const span = tracing.startClientSpan(parent, {
      method: 'GET',
      url: `http://127.0.0.1:${port}/api/users/42`,
      service: 'bench-upstream',
    });
    const headers = new Headers();
    span.inject(headers);
    const res = await mesh.fetch(url, { headers });
    await res.arrayBuffer();
    span.end(res.status);
  };

  const rows: (string | number)[][] = [];
  let spanMicros = 0;
  try {
    for (const { concurrency, total } of PLAN) {
      await load(off, 2000, concurrency); // warm-up: JIT, keep-alive pool
      await load(on, 2000, concurrency);
      const a: LoadResult[] = [];
      const b: LoadResult[] = [];
      for (let i = 0; i < RUNS; i++) {
        a.push(await load(off, total, concurrency));
        b.push(await load(on, total, concurrency));
      }
      const m = (xs: LoadResult[], k: keyof LoadResult) => median(xs.map((x) => x[k]));
      rows.push([
        concurrency,
        fmt(m(a, 'rps')),
        fmt(m(b, 'rps')),
        fmt(m(b, 'rps') / m(a, 'rps'), 3),
        `${fmt((1 - m(b, 'rps') / m(a, 'rps')) * 100, 1)}%`,
        fmt(m(a, 'p50'), 1),
        fmt(m(b, 'p50'), 1),
        fmt(m(a, 'p99'), 1),
        fmt(m(b, 'p99'), 1),
      ]);
    }
    // The span machinery alone, no I/O: start, inject, end (export included, amortized by the batches).
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < SPAN_LOOP; i++) {
      const span = tracing.startClientSpan(parent, { method: 'GET', url: 'http://10.0.0.1:8080/api/users/42', service: 'bench-upstream' });
      span.inject(new Headers());
      span.end(200);
      if (i % 256 === 255) await new Promise((r) => setImmediate(r)); // let batches go out, as between requests
    }
    await tracing.forceFlush();
    spanMicros = Number(process.hrtime.bigint() - t0) / 1000 / SPAN_LOOP;
  } finally {
    await tracing.shutdown();
    await mesh.close();
    child.disconnect();
  }
  const { exported, dropped } = tracing.stats;
  const bytes = (await stat(logPath)).size;
  await rm(dir, { recursive: true, force: true });
  return [
    '### Tracing overhead: governed fetch with tracing off vs on (100% sampling, batched OTLP JSON trace log)',
    `${machine()}; median of ${RUNS} alternating runs; latencies in µs. Target: cost under 10% of throughput.`,
    '',
    table(['concurrency', 'off req/s', 'on req/s', 'ratio', 'cost', 'off p50', 'on p50', 'off p99', 'on p99'], rows),
    '',
    `One client span (start + inject + end + metrics + batched export), no I/O: ${fmt(spanMicros, 2)} µs. ` +
      `Spans written: ${fmt(exported)}, dropped: ${fmt(dropped)}, trace log ${fmt(bytes / 1024 / 1024, 1)} MiB ` +
      `(${fmt(bytes / Math.max(1, exported))} bytes/span).`,
  ].join('\n');
}

if (process.argv[1]?.endsWith('trace-overhead.js')) console.log(await traceOverhead());
