// The governed call without the network: the mesh's `fetch` option is a stub that answers
// at once, so what is timed is governance and nothing else, feature by feature. Steadier
// than the loopback figures (no sockets, no second process), so this is the section to
// compare a change to the hot path against.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { BENCH_URL, benchContext, benchDirectory, benchRules } from './governed-client.js';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const CALLS = sized('BENCH_GOVERNANCE_CALLS', 20_000, 4_000);
const body = new Uint8Array(11);
const stub: typeof globalThis.fetch = async () => new Response(body, { status: 200 });

async function meshWith(rules: object | undefined, logPath: string | undefined): Promise<Mesh> {
  const { registry, kv } = await benchDirectory(9, rules);
  return createMesh({
    service: 'bench-client',
    registry,
    rules: kv,
    logger: silentLogger,
    fetch: stub,
    ...(logPath ? { tracing: { sampleRatio: 1, log: { path: logPath, maxBytes: 2 ** 30 } } } : {}),
  });
}

export async function governanceCost(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-cost-'));
  const ctx = benchContext();
  const url = BENCH_URL;
  const bare = await meshWith(undefined, undefined);
  const { breaker: _b, ...routeOnly } = benchRules;
  const routed = await meshWith(routeOnly, undefined);
  const governed = await meshWith(benchRules, undefined);
  const traced = await meshWith(benchRules, join(dir, 'spans.jsonl'));
  const via = (m: Mesh) => () => runWithContext(ctx, () => m.fetch(url).then((r) => r.arrayBuffer()));
  const variants: [string, () => Promise<unknown>][] = [
    ['stub send alone (baseline)', () => stub(url).then((r) => r.arrayBuffer())],
    ['mesh, no rules, tracing off', via(bare)],
    ['+ route rule (20/80 by tag)', via(routed)],
    ['+ breakers, timeout, retry policy', via(governed)],
    ['+ tracing 100%, batched to a file', via(traced)],
  ];
  const times: number[][] = variants.map(() => []);
  try {
    const timeIt = async (fn: () => Promise<unknown>) => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < CALLS; i++) await fn();
      return Number(process.hrtime.bigint() - t0) / 1000 / CALLS;
    };
    for (const [, fn] of variants) await timeIt(fn); // warm-up
    for (let r = 0; r < RUNS; r++) {
      for (let k = 0; k < variants.length; k++) {
        const i = (k + r) % variants.length;
        times[i]?.push(await timeIt(variants[i]?.[1] as () => Promise<unknown>));
      }
    }
  } finally {
    for (const m of [bare, routed, governed, traced]) await m.close();
    await rm(dir, { recursive: true, force: true });
  }
  const base = median(times[0] ?? []);
  const rows = variants.map(([name], i) => {
    const m = median(times[i] ?? []);
    return [name, fmt(m, 2), spread(times[i] ?? [], 2), i === 0 ? '—' : fmt(m - base, 2)];
  });
  return [
    '## Governance per call, without the network',
    '',
    `${machine()}; ${fmt(CALLS)} sequential calls through a stub client that answers at once; median of ${RUNS} interleaved runs; µs per call. ` +
      'Each row adds to the one above; "added" is over the stub alone.',
    '',
    table(['governed call', 'µs per call', 'spread', 'added µs'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await governanceCost());
