// The governed call's own CPU, nothing else: `mesh.fetch` with the bench rules in force
// (governed-client.ts: a 20/80 tag rule, service and instance breakers, a timeout and one
// retry), through a stub client that resolves at once with one shared Response (no body
// read, nothing built per call), and `mesh.request` through a stub undici dispatcher beside
// undici's own `request` over the same stub (the fast path as it really sends). CPU time
// (process.cpuUsage) per call, median of interleaved runs, so a loaded machine moves every
// row alike. The "added" column is the pipeline's cost per call: what issue #19 budgets at 5 µs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { type Dispatcher, request } from 'undici';
import { BENCH_URL, benchContext, benchDirectory, benchRules } from './governed-client.js';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const CALLS = sized('BENCH_DECISION_CALLS', 30_000, 4_000);
const shared = new Response(null, { status: 200 });
const stub: typeof globalThis.fetch = () => Promise.resolve(shared);
const LENGTH = [Buffer.from('content-length'), Buffer.from('2')];
const OK = Buffer.from('ok');
/**
 * undici's dispatcher, stubbed: answers every dispatch at once (headers, a 2-byte body, the
 * end) without a socket. `mesh.request` sends its attempts through it as through the mesh's
 * Agent (the `dispatcher` option), and undici's own `request` runs over it unchanged: the
 * fast path's cost with undici's ResponseData and body, without the network.
 */
export const stubDispatcher = {
  dispatch(_options: unknown, handler: Dispatcher.DispatchHandler): boolean {
    handler.onConnect?.(() => {});
    handler.onHeaders?.(200, LENGTH, () => {}, 'OK');
    handler.onData?.(OK);
    handler.onComplete?.([]);
    return true;
  },
} as unknown as Dispatcher;

export async function meshWith(tracing: 'off' | 'unsampled' | 'sampled', logPath: string): Promise<Mesh> {
  const { registry, kv } = await benchDirectory(9, benchRules);
  return createMesh({
    service: 'bench-client',
    registry,
    rules: kv,
    logger: silentLogger,
    fetch: stub,
    ...(tracing === 'off' ? {} : { tracing: { sampleRatio: tracing === 'sampled' ? 1 : 0, log: { path: logPath, maxBytes: 2 ** 30 } } }),
  });
}

export async function decisionCost(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-decision-'));
  const ctx = benchContext();
  const url = BENCH_URL;
  const meshes = [
    await meshWith('off', join(dir, 'a.jsonl')),
    await meshWith('unsampled', join(dir, 'b.jsonl')),
    await meshWith('sampled', join(dir, 'c.jsonl')),
  ];
  const via = (m: Mesh) => () => runWithContext(ctx, () => m.fetch(url));
  const viaRequest = (m: Mesh) => () =>
    runWithContext(ctx, () => m.request(url, { dispatcher: stubDispatcher }).then((r) => r.body.text()));
  // [name, call, index of the row its "added" column is over]
  const variants: [string, () => Promise<unknown>, number][] = [
    ['stub client alone', () => stub(url), 0],
    ['governed, tracing off', via(meshes[0] as Mesh), 0],
    ['governed, tracing on, unsampled', via(meshes[1] as Mesh), 0],
    ['governed, tracing 100%, batched to a file', via(meshes[2] as Mesh), 0],
    [
      'undici.request alone, stub dispatcher, body read',
      () => request('http://127.0.0.1:9/api/users/42', { dispatcher: stubDispatcher }).then((r) => r.body.text()),
      4,
    ],
    ['mesh.request, stub dispatcher, body read, tracing off', viaRequest(meshes[0] as Mesh), 4],
    ['mesh.request, stub dispatcher, body read, unsampled', viaRequest(meshes[1] as Mesh), 4],
    ['mesh.request, stub dispatcher, body read, tracing 100%', viaRequest(meshes[2] as Mesh), 4],
  ];
  const times: number[][] = variants.map(() => []);
  try {
    const cpuOf = async (fn: () => Promise<unknown>) => {
      const c0 = process.cpuUsage();
      for (let i = 0; i < CALLS; i++) await fn();
      const c = process.cpuUsage(c0);
      return (c.user + c.system) / CALLS;
    };
    for (const [, fn] of variants) await cpuOf(fn); // warm-up
    for (let r = 0; r < RUNS; r++) {
      for (let k = 0; k < variants.length; k++) {
        const i = (k + r) % variants.length;
        times[i]?.push(await cpuOf(variants[i]?.[1] as () => Promise<unknown>));
      }
    }
  } finally {
    for (const m of meshes) await m.close();
    await rm(dir, { recursive: true, force: true });
  }
  const rows = variants.map(([name, , b], i) => {
    const m = median(times[i] ?? []);
    return [name, fmt(m, 2), spread(times[i] ?? [], 2), i === b ? '—' : fmt(m - median(times[b] ?? []), 2)];
  });
  return [
    '## The governed call’s own CPU, without the network',
    '',
    `${machine()}; ${fmt(CALLS)} sequential calls with the bench rules in force: \`mesh.fetch\` through a stub client that answers at once, ` +
      `and \`mesh.request\` through a stub undici dispatcher (the mesh's real send path: one dispatch, undici's ResponseData, the body read) ` +
      `beside undici's own \`request\` over the same stub; CPU µs per call (process.cpuUsage), median of ${RUNS} interleaved runs; ` +
      '"added" is over the row\'s raw client alone.',
    '',
    table(['call', 'CPU µs per call', 'spread', 'added µs'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await decisionCost());
