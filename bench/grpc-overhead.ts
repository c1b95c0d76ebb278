// What governance costs a gRPC call: a unary call through `mesh.grpc.client` (the mesh's
// interceptor: route rule in force, service + instance breakers, timeout, retry policy,
// two tags sent in metadata; tracing off, and at 100% into a trace log) against the same
// call on a raw grpc-js client to the same upstream, in a forked process, at concurrency 1
// and 50. The clients take turns within each run; figures are medians over runs, ratios of
// those medians. CPU is this process's user + system time per 1 000 calls.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { createContext, InMemoryKvStore, InMemoryRegistry, runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { benchRules, UPSTREAM_SERVICE } from './governed-client.js';
import { benchGrpcService } from './grpc-service.js';
import { fmt, type LoadResult, load, machine, med, sized, spread, stopUpstream, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const PLAN = [
  { concurrency: 1, total: sized('BENCH_GRPC_C1_REQUESTS', 3000, 400) },
  { concurrency: 50, total: sized('BENCH_GRPC_C50_REQUESTS', 10000, 1500) },
];

const Client = grpc.makeGenericClientConstructor(benchGrpcService, 'Upstream');
type Get = (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void;
const request = Buffer.from('42');

function caller(client: grpc.Client): () => Promise<void> {
  const get = (client as unknown as { Get: Get }).Get.bind(client);
  return () => new Promise<void>((res, rej) => get(request, new grpc.Metadata(), {}, (err) => (err ? rej(err) : res())));
}

async function governed(port: number, tracing: boolean): Promise<{ mesh: Mesh; call: () => Promise<void>; close(): Promise<void> }> {
  const registry = new InMemoryRegistry();
  for (const version of ['v1', 'v2'])
    await registry.register({
      id: `up-${version}`,
      service: UPSTREAM_SERVICE,
      address: '127.0.0.1',
      port,
      tags: [],
      metadata: { version },
      health: 'passing',
    });
  const kv = new InMemoryKvStore();
  await kv.put(`meshlet/rules/${UPSTREAM_SERVICE}`, JSON.stringify(benchRules));
  const dir = tracing ? await mkdtemp(join(tmpdir(), 'meshlet-bench-grpc-')) : undefined;
  const mesh = createMesh({
    service: 'bench-client',
    registry,
    rules: kv,
    logger: silentLogger,
    ...(dir ? { tracing: { sampleRatio: 1, log: { path: join(dir, 'spans.jsonl') } } } : {}),
  });
  const client = mesh.grpc.client(Client, UPSTREAM_SERVICE);
  const ctx = createContext({
    tags: [
      ['user-tier', 'vip'],
      ['ua.family', 'Chrome'],
    ],
    caller: { service: 'edge' },
  });
  const raw = caller(client);
  const call = () => runWithContext(ctx, raw);
  await call(); // follows the service and loads its rules before any timing
  return {
    mesh,
    call,
    async close() {
      client.close();
      await mesh.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function grpcOverhead(): Promise<string> {
  const child = fork(fileURLToPath(new URL('./grpc-upstream.js', import.meta.url)), { stdio: 'inherit' });
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const rawClient = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const off = await governed(port, false);
  const traced = await governed(port, true);
  const clients: [string, () => Promise<unknown>][] = [
    ['raw grpc-js', caller(rawClient)],
    ['governed, tracing off', off.call],
    ['governed, tracing 100%', traced.call],
  ];
  const rows: (string | number)[][] = [];
  try {
    for (const { concurrency, total } of PLAN) {
      for (const [, call] of clients) await load(call, Math.min(2000, total), concurrency); // warm-up
      const runs: LoadResult[][] = clients.map(() => []);
      for (let r = 0; r < RUNS; r++) {
        for (let k = 0; k < clients.length; k++) {
          const i = (k + r) % clients.length;
          runs[i]?.push(await load(clients[i]?.[1] as () => Promise<unknown>, total, concurrency));
        }
      }
      const base = runs[0] ?? [];
      const rps0 = med(base, (x) => x.rps);
      const p500 = med(base, (x) => x.p50);
      const p990 = med(base, (x) => x.p99);
      const cpu0 = med(base, (x) => x.cpuPerRequestUs);
      for (const [i, [name]] of clients.entries()) {
        const xs = runs[i] ?? [];
        const isBase = i === 0;
        const rps = med(xs, (x) => x.rps);
        const cpu = med(xs, (x) => x.cpuPerRequestUs);
        rows.push([
          concurrency,
          name,
          fmt(rps),
          spread(xs.map((x) => x.rps)),
          isBase ? '1' : fmt(rps / rps0, 3),
          fmt(
            med(xs, (x) => x.p50),
            1,
          ),
          isBase ? '—' : fmt(med(xs, (x) => x.p50) - p500, 1),
          fmt(
            med(xs, (x) => x.p99),
            1,
          ),
          isBase ? '—' : fmt(med(xs, (x) => x.p99) - p990, 1),
          fmt(cpu / 1000, 3),
          isBase ? '—' : fmt((cpu - cpu0) / 1000, 3),
        ]);
      }
    }
  } finally {
    rawClient.close();
    await off.close();
    await traced.close();
    await stopUpstream(child);
  }
  return [
    '## Governed gRPC call vs raw grpc-js',
    '',
    `${machine()}; loopback, grpc-js upstream in a forked process; median of ${RUNS} interleaved runs ` +
      `(${fmt(PLAN[0]?.total ?? 0)} unary calls at concurrency 1, ${fmt(PLAN[1]?.total ?? 0)} at 50); latencies in µs. ` +
      'Governed = `mesh.grpc.client`: route rule matching (20/80 split), service + instance breakers, 5 s timeout, retry policy, 2 tags in metadata. ' +
      'CPU = client process user+system per 1 000 calls = vCPU at 1 000 calls/s. Target: ≥ 0.95x throughput.',
    '',
    table(
      [
        'conc.',
        'client',
        'calls/s',
        'spread',
        'ratio',
        'p50',
        'added p50',
        'p99',
        'added p99',
        'vCPU per 1 000/s',
        'added vCPU per 1 000/s',
      ],
      rows,
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcOverhead());
