// The governed call's own CPU, nothing else: `mesh.fetch` with the bench rules in force
// (governed-client.ts: a 20/80 tag rule, service and instance breakers, a timeout and one
// retry), through a stub client that resolves at once with one shared Response (no body
// read, nothing built per call), and `mesh.request` through a stub undici dispatcher (the
// fast path as it really sends). CPU time (process.cpuUsage) per call, each row in a
// process of its own, median of runs that take the rows in turn, so a loaded machine moves
// every row alike. The "added" column is the pipeline's cost per call: what issue #19
// budgets at 5 µs. Each governed row is over a baseline that sends the same way without the
// governance: `mesh.fetch`'s over the stub client, `mesh.request`'s over the mesh's own send
// (request-dispatch.ts's dispatchRequest: its handler and body, lighter than undici's
// `request`, which made the "added" column negative when it was the baseline). undici's
// `request` over the stub stays, for reference.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { type Dispatcher, request } from 'undici';
import { BENCH_URL, benchContext, benchDirectory, benchRules } from './governed-client.js';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const CALLS = sized('BENCH_DECISION_CALLS', 30_000, 4_000);
/**
 * Calls before the timed ones, in each row's process: undici's `request` alone read 11 µs
 * a call after 30,000 (its steady 5–7 µs only after 60,000 or more); 100,000 settles every row.
 */
const WARMUP = sized('BENCH_DECISION_WARMUP', 100_000, 4_000);
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

/** The sdk module `mesh.request` sends its attempts with: not exported by the package, so loaded from its build. */
type RequestDispatch = typeof import('../packages/sdk/src/request-dispatch.js');
const requestDispatch = (): Promise<RequestDispatch> =>
  import(fileURLToPath(new URL('../../packages/sdk/dist/src/request-dispatch.js', import.meta.url))) as Promise<RequestDispatch>;

/** One row: its name, what makes its call (in the process that measures it), and the row its "added" column is over. */
interface Row {
  readonly name: string;
  readonly make: (logPath: string) => Promise<{ call: () => Promise<unknown>; close?: () => Promise<void> }>;
  readonly base: number;
}

const governed =
  (mode: 'off' | 'unsampled' | 'sampled', send: (m: Mesh) => Promise<unknown>): Row['make'] =>
  async (logPath) => {
    const mesh = await meshWith(mode, logPath);
    const ctx = benchContext();
    return { call: () => runWithContext(ctx, () => send(mesh)), close: () => mesh.close() };
  };
const viaFetch = (m: Mesh) => m.fetch(BENCH_URL);
const viaRequest = (m: Mesh) => m.request(BENCH_URL, { dispatcher: stubDispatcher }).then((r) => r.body.text());

const ROWS: readonly Row[] = [
  { name: 'stub client alone', make: async () => ({ call: () => stub(BENCH_URL) }), base: 0 },
  { name: 'governed, tracing off', make: governed('off', viaFetch), base: 0 },
  { name: 'governed, tracing on, unsampled', make: governed('unsampled', viaFetch), base: 0 },
  { name: 'governed, tracing 100%, batched to a file', make: governed('sampled', viaFetch), base: 0 },
  {
    // One attempt as mesh.request sends it once governance has picked the instance: the
    // same dispatch handler, body and read, nothing decided.
    name: "mesh.request's send alone (its dispatch handler), stub dispatcher, body read",
    make: async () => {
      const { dispatchRequest } = await requestDispatch();
      const options = { origin: 'http://127.0.0.1:9', path: '/api/users/42', method: 'GET' as const, headers: {}, body: null };
      return { call: () => dispatchRequest(stubDispatcher, options, undefined).then((r) => r.body.text()) };
    },
    base: 4,
  },
  { name: 'mesh.request, stub dispatcher, body read, tracing off', make: governed('off', viaRequest), base: 4 },
  { name: 'mesh.request, stub dispatcher, body read, unsampled', make: governed('unsampled', viaRequest), base: 4 },
  { name: 'mesh.request, stub dispatcher, body read, tracing 100%', make: governed('sampled', viaRequest), base: 4 },
  {
    // For reference: what an application calls without the mesh; its handler and body cost more than the mesh's send.
    name: 'undici.request alone, stub dispatcher, body read',
    make: async () => ({
      call: () => request('http://127.0.0.1:9/api/users/42', { dispatcher: stubDispatcher }).then((r) => r.body.text()),
    }),
    base: 8,
  },
];

/** In a process of its own: one row's call warmed with WARMUP calls, then CALLS more timed; CPU µs per call. */
async function measureRow(index: number): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-decision-'));
  const { call, close } = await (ROWS[index] as Row).make(join(dir, 'spans.jsonl'));
  try {
    for (let i = 0; i < WARMUP; i++) await call();
    const c0 = process.cpuUsage();
    for (let i = 0; i < CALLS; i++) await call();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / CALLS;
  } finally {
    await close?.();
    await rm(dir, { recursive: true, force: true });
  }
}

const ROW_FLAG = '--decision-row';
const runRow = (index: number): Promise<number> =>
  new Promise((resolve, reject) =>
    execFile(process.execPath, [fileURLToPath(import.meta.url), ROW_FLAG, String(index)], (err, stdout) => {
      const us = Number(stdout.trim());
      if (err || !Number.isFinite(us)) reject(err ?? new Error(`row ${index}: no figure in ${JSON.stringify(stdout.slice(0, 200))}`));
      else resolve(us);
    }),
  );

/**
 * Each run measures every row in a fresh process, the rows in turn (rotated each run, so a
 * loaded machine moves every row alike). One process for all rows made a row's cost depend
 * on the rows run before it in that process: the tracing-off rows read above the traced
 * ones, 3–10 µs in some runs against 2.3 alone.
 */
export async function decisionCost(): Promise<string> {
  const times: number[][] = ROWS.map(() => []);
  for (let r = 0; r < RUNS; r++)
    for (let k = 0; k < ROWS.length; k++) {
      const i = (k + r) % ROWS.length;
      times[i]?.push(await runRow(i));
    }
  const rows = ROWS.map(({ name, base }, i) => {
    const m = median(times[i] ?? []);
    return [name, fmt(m, 2), spread(times[i] ?? [], 2), i === base ? '—' : fmt(m - median(times[base] ?? []), 2)];
  });
  return [
    '## The governed call’s own CPU, without the network',
    '',
    `${machine()}; ${fmt(CALLS)} sequential calls with the bench rules in force, after ${fmt(WARMUP)} to warm up, each row in a process of its own: ` +
      `\`mesh.fetch\` through a stub client that answers at once, ` +
      `and \`mesh.request\` through a stub undici dispatcher (the mesh's real send path: one dispatch with its own handler, undici's ResponseData shape, the body read); ` +
      `CPU µs per call (process.cpuUsage), median of ${RUNS} runs, the rows in turn; ` +
      '"added" is over the same send without governance: the stub client alone for `mesh.fetch`, one dispatch with `mesh.request`\'s handler for `mesh.request`. ' +
      "undici's own `request` over the same stub is for reference (its handler and body cost more than the mesh's send).",
    '',
    table(['call', 'CPU µs per call', 'spread', 'added µs'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const row = process.argv.indexOf(ROW_FLAG);
  console.log(row > 0 ? String(await measureRow(Number(process.argv[row + 1]))) : await decisionCost());
}
