// What a governed outbound call allocates: bytes allocated on the JS heap per call, objects
// the next minor GC collects included (V8's sampling heap profiler, as inbound-alloc.ts
// counts the inbound path), for `mesh.request` with the bench rules in force through a stub
// undici dispatcher (decision-cost.ts's: the real send path, no socket), beside undici's own
// `request` over the same stub (the floor). Allocation is what a traced call's GC time is
// made of, and unlike CPU time or throughput it does not move with the machine's load: a
// change on the sampled path shows here in one run, where `targets` needs an hour of sets to
// tell 2%. Each row runs in a child process of its own. The second table gives where 100%
// tracing's added bytes are allocated: the sampled profile's self bytes by function, the
// protobuf-log row over tracing off.
//   node bench/dist/outbound-alloc.js                 the tables
//   BENCH_ALLOC_PROFILE=<dir>   also writes each row's last heap profile there (outbound-<row>.heapprofile)
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type MeshOptions } from 'meshlet';
import { request } from 'undici';
import { stubDispatcher } from './decision-cost.js';
import { BENCH_URL, benchContext, benchDirectory, benchRules } from './governed-client.js';
import { fmt, machine, median, sized, spread, table } from './harness.js';
import { type HeapNode, heapSampler } from './heap-sampler.js';

const RUNS = sized('BENCH_RUNS', 3, 2);
const CALLS = sized('BENCH_ALLOC_CALLS', 20_000, 3_000);
// Bytes between samples: a figure steady to a few percent over these calls.
const INTERVAL = 256;
const TOP_SITES = 12;

type Tracing = 'off' | 'unsampled' | 'proto' | 'json';
const ROWS: readonly (readonly [name: string, tracing: Tracing | 'raw'])[] = [
  ['undici.request alone, stub dispatcher (the floor)', 'raw'],
  ['mesh.request, tracing off', 'off'],
  ['mesh.request, tracing on, unsampled', 'unsampled'],
  ["mesh.request, 100%, trace log, format: 'proto'", 'proto'],
  ['mesh.request, 100%, trace log (JSON, the default)', 'json'],
];

/** What one row's child reports: bytes per call for each run, and the last run's self bytes by function. */
interface RowResult {
  readonly perCall: number[];
  readonly sites: Record<string, number>;
}

/** Self bytes by function (`name file:line`) over the profile's tree. */
function sitesOf(node: HeapNode, into: Record<string, number> = {}): Record<string, number> {
  const f = node.callFrame;
  if (f !== undefined && node.selfSize > 0) {
    const file = f.url.replace(/^.*\/(node_modules|packages)\//, '').replace(/^file:\/\//, '');
    const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    into[key] = (into[key] ?? 0) + node.selfSize;
  }
  for (const c of node.children) sitesOf(c, into);
  return into;
}

async function child(index: number): Promise<void> {
  const row = ROWS[index];
  if (!row) throw new Error(`no row ${index}`);
  const [, tracing] = row;
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-outbound-alloc-'));
  const { registry, kv } = await benchDirectory(9, benchRules);
  const traced: MeshOptions['tracing'] =
    tracing === 'unsampled'
      ? { sampleRatio: 0, log: { path: join(dir, 'unsampled.jsonl') } }
      : tracing === 'proto'
        ? { sampleRatio: 1, log: { path: join(dir, 'spans.binpb'), format: 'proto', maxBytes: 2 ** 30 } }
        : tracing === 'json'
          ? { sampleRatio: 1, log: { path: join(dir, 'spans.jsonl'), maxBytes: 2 ** 30 } }
          : undefined;
  const mesh =
    tracing === 'raw'
      ? undefined
      : createMesh({ service: 'bench-client', registry, rules: kv, logger: silentLogger, ...(traced ? { tracing: traced } : {}) });
  const ctx = benchContext();
  const call = mesh
    ? () => runWithContext(ctx, () => mesh.request(BENCH_URL, { dispatcher: stubDispatcher }).then((r) => r.body.text()))
    : () => request('http://127.0.0.1:9/api/users/42', { dispatcher: stubDispatcher }).then((r) => r.body.text());
  // Fifty calls in flight, as at c=50: what waits on a call is held while others run.
  const calls = async (n: number) => {
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, call));
  };
  const sampler = await heapSampler(INTERVAL, `outbound-${index}`);
  await calls(CALLS * 2); // warm-up: compiled, caches filled, the trace log's file open
  const perCall: number[] = [];
  let sites: Record<string, number> = {};
  for (let r = 0; r < RUNS; r++) {
    await sampler.start();
    await calls(CALLS);
    const profile = await sampler.stop();
    perCall.push(profile.bytes / CALLS);
    sites = sitesOf(profile.head);
  }
  await mesh?.close();
  await rm(dir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify({ perCall, sites } satisfies RowResult)}\n`);
}

async function runChild(index: number): Promise<RowResult> {
  const c = fork(fileURLToPath(import.meta.url), ['--row', String(index)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], execArgv: [] });
  let out = '';
  c.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const [code] = (await once(c, 'exit')) as [number];
  if (code !== 0) throw new Error(`outbound-alloc child ${index} exited with ${code}`);
  return JSON.parse(out.trim()) as RowResult;
}

export async function outboundAlloc(): Promise<string> {
  const results: RowResult[] = [];
  for (const [i] of ROWS.entries()) results.push(await runChild(i));
  const med = results.map((r) => median(r.perCall));
  const rows = ROWS.map(([name], i) => [
    name,
    fmt(med[i] ?? 0),
    spread(results[i]?.perCall ?? []),
    i === 0 ? '—' : fmt((med[i] ?? 0) - (med[0] ?? 0)),
    i <= 1 ? '—' : fmt((med[i] ?? 0) - (med[1] ?? 0)),
  ]);
  // Where 100% tracing (protobuf log) allocates more than tracing off: self bytes per call by function.
  const off = results[1]?.sites ?? {};
  const traced = results[3]?.sites ?? {};
  const added = Object.keys({ ...off, ...traced })
    .map((k) => [k, ((traced[k] ?? 0) - (off[k] ?? 0)) / CALLS] as const)
    .filter(([, b]) => b > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP_SITES)
    .map(([k, b]) => [`\`${k}\``, fmt(b)]);
  return [
    '## Allocation per governed outbound call',
    '',
    `${machine()}; \`mesh.request\` with the bench rules in force through a stub undici dispatcher (no socket), 50 calls in ` +
      `flight; bytes allocated on the JS heap per call (sampling heap profiler, every ${INTERVAL} B, objects collected by GC ` +
      `included), ${fmt(CALLS)} calls a run after twice as many to warm up, median of ${RUNS} runs, one child process per row.`,
    '',
    table(['call', 'bytes per call', 'spread', 'added over undici alone', 'added over tracing off'], rows),
    '',
    `Where 100% tracing (protobuf log) allocates beyond tracing off: self bytes per call by function, the last run of each ` +
      `(sampled: a site under about ${INTERVAL} B a call is noise).`,
    '',
    table(['function', 'bytes per call'], added),
  ].join('\n');
}

if (process.argv[2] === '--row') await child(Number(process.argv[3]));
else if (import.meta.url === `file://${process.argv[1]}`) console.log(await outboundAlloc());
