// The governed call's own CPU, nothing else: `mesh.fetch` with the bench rules in force
// (governed-client.ts: a 20/80 tag rule, service and instance breakers, a timeout and one
// retry), through a stub client that resolves at once with one shared Response (no body
// read, nothing built per call). CPU time (process.cpuUsage) per call, median of
// interleaved runs, so a loaded machine moves every row alike. The "added" column is the
// pipeline's cost per call: what issue #19 budgets at 5 µs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext, InMemoryKvStore, InMemoryRegistry, runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { benchRules, UPSTREAM_SERVICE } from './governed-client.js';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const CALLS = sized('BENCH_DECISION_CALLS', 30_000, 4_000);
const shared = new Response(null, { status: 200 });
const stub: typeof globalThis.fetch = () => Promise.resolve(shared);

async function meshWith(tracing: 'off' | 'unsampled' | 'sampled', logPath: string): Promise<Mesh> {
  const registry = new InMemoryRegistry();
  for (const version of ['v1', 'v2']) {
    await registry.register({
      id: `up-${version}`,
      service: UPSTREAM_SERVICE,
      address: '127.0.0.1',
      port: 9,
      tags: [],
      metadata: { version },
      health: 'passing',
    });
  }
  const kv = new InMemoryKvStore();
  await kv.put(`meshlet/rules/${UPSTREAM_SERVICE}`, JSON.stringify(benchRules));
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
  const ctx = createContext({
    tags: [
      ['user-tier', 'vip'],
      ['ua.family', 'Chrome'],
    ],
    caller: { service: 'edge' },
  });
  const url = `http://${UPSTREAM_SERVICE}/api/users/42`;
  const meshes = [
    await meshWith('off', join(dir, 'a.jsonl')),
    await meshWith('unsampled', join(dir, 'b.jsonl')),
    await meshWith('sampled', join(dir, 'c.jsonl')),
  ];
  const via = (m: Mesh) => () => runWithContext(ctx, () => m.fetch(url));
  const variants: [string, () => Promise<unknown>][] = [
    ['stub client alone', () => stub(url)],
    ['governed, tracing off', via(meshes[0] as Mesh)],
    ['governed, tracing on, unsampled', via(meshes[1] as Mesh)],
    ['governed, tracing 100%, batched to a file', via(meshes[2] as Mesh)],
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
  const base = median(times[0] ?? []);
  const rows = variants.map(([name], i) => {
    const m = median(times[i] ?? []);
    return [name, fmt(m, 2), spread(times[i] ?? [], 2), i === 0 ? '—' : fmt(m - base, 2)];
  });
  return [
    '## The governed call’s own CPU, without the network',
    '',
    `${machine()}; ${fmt(CALLS)} sequential \`mesh.fetch\` calls with the bench rules in force, through a stub client that answers at once; ` +
      `CPU µs per call (process.cpuUsage), median of ${RUNS} interleaved runs; "added" is over the stub alone.`,
    '',
    table(['call', 'CPU µs per call', 'spread', 'added µs'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await decisionCost());
