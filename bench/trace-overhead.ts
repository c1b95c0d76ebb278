// Tracing's share of a governed call, without I/O. Two tables:
// 1. One CLIENT span through `startClientSpan` (start, inject into headers, end with the
//    status, metrics, batched OTLP JSON export into the trace log): the API for callers
//    outside the mesh's call path.
// 2. One attempt through the CLIENT span observer, as the sdk's governed calls run it (the
//    outermost stage of the attempt chain, composed by core's composeAttempt: told when the
//    attempt starts, settled after the caller's await, as the executor does), against the
//    same attempt without it: sampled with the trace log, unsampled with and without call
//    metrics. CPU time per attempt (process.cpuUsage), rows interleaved, medians; this is
//    what tracing adds to each governed call's own CPU.
// The governed call with tracing off and on, end to end, is in the governed call section
// (fetch-overhead.ts), where all run against the same upstream.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Attempt, type AttemptChain, type AttemptHandler, composeAttempt, type Instance } from '@meshlet/core';
import { testAttempt, testCall } from '@meshlet/core/testing';
import { clientSpanObserver, createTracing, type Tracing } from '@meshlet/trace';
import { fmt, machine, median, sized, spread, table } from './harness.js';

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
    const c0 = process.cpuUsage();
    for (let i = 0; i < SPANS; i++) {
      const span = t.startClientSpan(withParent ? parent : undefined, { method: 'GET', url, service: 'bench-upstream', instance: 'up-1' });
      span.inject(new Headers());
      span.end(200);
      if (i % 256 === 255) await new Promise((r) => setImmediate(r)); // let batches go out, as between requests
    }
    await t.forceFlush();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / SPANS;
  };
  const sampled: number[] = [];
  const root: number[] = [];
  const off: number[] = [];
  const attempts = await attemptRows(dir);
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
    `${machine()}; median of ${RUNS} runs of ${fmt(SPANS)} spans through \`startClientSpan\`; start + inject + end + metrics + batched export to the trace log; CPU µs per span (process.cpuUsage).`,
    '',
    table(
      ['span', 'CPU µs per span'],
      [
        ['sampled, child of an inbound trace', fmt(median(sampled), 2)],
        ['sampled, new root trace', fmt(median(root), 2)],
        ['not sampled (sampleRatio 0, metrics off)', fmt(median(off), 2)],
      ],
    ),
    '',
    `Spans written: ${fmt(exported)}, dropped: ${fmt(dropped)}, ${fmt(bytes / Math.max(1, exported))} bytes per span in the trace log.`,
    '',
    attempts,
  ].join('\n');
}

const ATTEMPTS = sized('BENCH_TRACE_ATTEMPTS', 100_000, 10_000);
const instance: Instance = {
  id: 'up-v1',
  service: 'bench-upstream',
  address: '127.0.0.1',
  port: 34567,
  tags: [],
  metadata: { version: 'v1' },
  health: 'passing',
};
const answer = { status: 200 };
const transport: AttemptHandler = () => Promise.resolve(answer) as never;

/** A new attempt as the executor hands it down: its own call (and headers), the bench rule's target. */
function attemptOf(): Attempt {
  const call = testCall({ service: 'bench-upstream', path: '/api/users/42', transport, fromResponse: () => answer });
  return testAttempt(call, { id: instance.id, instance, rule: 'vip-gray', lane: undefined, revision: 3 }) as Attempt;
}

/** Table 2: CPU per attempt through the CLIENT span observer, as the sdk's chain runs it. */
async function attemptRows(dir: string): Promise<string> {
  const made: Tracing[] = [];
  const make = (options: Parameters<typeof createTracing>[0]): AttemptChain => {
    const t = createTracing(options);
    made.push(t);
    return composeAttempt([clientSpanObserver(t)], { last: transport });
  };
  const rows: [string, AttemptChain | undefined][] = [
    ['no tracing (the attempt alone)', undefined],
    ['unsampled (sampleRatio 0), call metrics on', make({ service: 'bench-client', sampleRatio: 0 })],
    ['unsampled, call metrics off', make({ service: 'bench-client', sampleRatio: 0, metrics: false })],
    ['sampled, no exporter', make({ service: 'bench-client', sampleRatio: 1 })],
    [
      'sampled, batched to the trace log',
      make({ service: 'bench-client', sampleRatio: 1, log: { path: join(dir, 'attempts.jsonl'), maxBytes: 2 ** 30 } }),
    ],
  ];
  const cpuOf = async (chain: AttemptChain | undefined): Promise<number> => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < ATTEMPTS; i++) {
      const attempt = attemptOf();
      if (chain === undefined) await transport(attempt);
      else chain.settle(attempt, await chain.send(attempt), undefined);
      // Between requests the loop turns: batches go out, timers run.
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) * 1000) / ATTEMPTS;
  };
  const times: number[][] = rows.map(() => []);
  try {
    for (const [, chain] of rows) await cpuOf(chain); // warm-up
    for (let r = 0; r < RUNS; r++)
      for (let k = 0; k < rows.length; k++) {
        const i = (k + r) % rows.length;
        times[i]?.push(await cpuOf(rows[i]?.[1]));
      }
  } finally {
    for (const t of made) await t.shutdown();
  }
  const base = median(times[0] ?? []);
  return [
    '## Tracing per governed attempt: the CLIENT span observer, no I/O',
    '',
    `${machine()}; ${fmt(ATTEMPTS)} attempts a run through the observer the sdk puts outermost in the attempt chain ` +
      '(started by the chain, settled after the await, as the executor does), ' +
      `to a transport that answers at once; CPU ns per attempt (process.cpuUsage), median of ${RUNS} interleaved runs; ` +
      '"added" is over the attempt without tracing. The traceparent is written in every row but the first.',
    '',
    table(
      ['attempt', 'CPU ns per attempt', 'spread', 'added ns'],
      rows.map(([name], i) => [
        name,
        fmt(median(times[i] ?? []), 0),
        spread(times[i] ?? [], 0),
        i === 0 ? '—' : fmt(median(times[i] ?? []) - base, 0),
      ]),
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await traceOverhead());
