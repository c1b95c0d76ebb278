// Tracing's share of a governed call, without I/O: what one CLIENT span costs (start,
// inject into headers, end with the status, metrics, batched OTLP JSON export into the
// trace log). The governed call with tracing off and on, end to end, is in the governed
// call section (fetch-overhead.ts), where both run against the same upstream.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTracing } from '@meshlet/trace';
import { fmt, machine, median, sized, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const SPANS = sized('BENCH_TRACE_SPANS', 20_000, 4_000);

export async function traceOverhead(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-trace-'));
  const logPath = join(dir, 'spans.jsonl');
  const tracing = createTracing({ service: 'bench-client', sampleRatio: 1, log: { path: logPath, maxBytes: 2 ** 30 } });
  const unsampled = createTracing({ service: 'bench-client', sampleRatio: 0, metrics: false });
  // The parent a handler would have: the inbound request's trace.
  const parent = tracing.propagation.extract({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  const url = new URL('http://10.0.0.1:8080/api/users/42');
  const loop = async (t: typeof tracing, withParent: boolean) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < SPANS; i++) {
      const span = t.startClientSpan(withParent ? parent : undefined, { method: 'GET', url, service: 'bench-upstream', instance: 'up-1' });
      span.inject(new Headers());
      span.end(200);
      if (i % 256 === 255) await new Promise((r) => setImmediate(r)); // let batches go out, as between requests
    }
    await t.forceFlush();
    return Number(process.hrtime.bigint() - t0) / 1000 / SPANS;
  };
  const sampled: number[] = [];
  const root: number[] = [];
  const off: number[] = [];
  try {
    await loop(tracing, true); // warm-up
    await loop(unsampled, false);
    for (let r = 0; r < RUNS; r++) {
      sampled.push(await loop(tracing, true));
      root.push(await loop(tracing, false));
      off.push(await loop(unsampled, false));
    }
  } finally {
    await tracing.shutdown();
    await unsampled.shutdown();
  }
  const { exported, dropped } = tracing.stats;
  const bytes = (await stat(logPath)).size;
  await rm(dir, { recursive: true, force: true });
  return [
    '## Tracing: one client span, no I/O',
    '',
    `${machine()}; median of ${RUNS} runs of ${fmt(SPANS)} spans; start + inject + end + metrics + batched export to the trace log.`,
    '',
    table(
      ['span', 'µs per span'],
      [
        ['sampled, child of an inbound trace', fmt(median(sampled), 2)],
        ['sampled, new root trace', fmt(median(root), 2)],
        ['not sampled (sampleRatio 0, metrics off)', fmt(median(off), 2)],
      ],
    ),
    '',
    `Spans written: ${fmt(exported)}, dropped: ${fmt(dropped)}, ${fmt(bytes / Math.max(1, exported))} bytes per span in the trace log.`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await traceOverhead());
