// Client CPU per gRPC call, raw grpc-js against mesh.grpc.client, in short alternating
// rounds (paired): the steadiest figure on a shared machine. A development aid for the
// gRPC overhead section: `node bench/dist/grpc-cpu.js [concurrency]`.
import * as grpc from '@grpc/grpc-js';
import { caller, callerWithMeshHeaders, GrpcBenchClient, governedGrpc, startGrpcUpstream } from './grpc-clients.js';
import { fmt, load, median, sized, table } from './harness.js';

const ROUNDS = sized('BENCH_RUNS', 15, 3);
const CALLS = sized('BENCH_GRPC_CPU_CALLS', 2000, 500);

/** Client CPU per call and the paired rate ratio, raw grpc-js against mesh.grpc.client, at `concurrency`. */
export async function grpcCpu(concurrency = 50): Promise<string> {
  const up = await startGrpcUpstream();
  const raw = new GrpcBenchClient(`127.0.0.1:${up.port}`, grpc.credentials.createInsecure());
  const gov = await governedGrpc(up.port, false);
  const rawCall = caller(raw);
  const clients: [string, () => Promise<unknown>][] = [
    ['raw grpc-js', rawCall],
    ['raw grpc-js, the mesh headers set by hand', callerWithMeshHeaders(raw)],
    ['governed, runWithContext per call', gov.call],
    ['governed, in one request context', gov.bare],
  ];
  for (const [, c] of clients) await load(c, 2000, concurrency);
  const cpu: number[][] = clients.map(() => []);
  const rps: number[][] = clients.map(() => []);
  for (let r = 0; r < ROUNDS; r++)
    for (let k = 0; k < clients.length; k++) {
      const i = (k + r) % clients.length;
      const [name, call] = clients[i] as [string, () => Promise<unknown>];
      const run = () => load(call, CALLS, concurrency);
      const res = await (name.endsWith('one request context') ? gov.inContext(run) : run());
      cpu[i]?.push(res.cpuPerRequestUs);
      rps[i]?.push(res.rps);
    }
  const report = `## gRPC client CPU per call, paired rounds (concurrency ${concurrency})\n\n${table(
    ['client', 'CPU µs/call', 'calls/s', 'rate ratio (paired median)'],
    clients.map(([name], i) => [
      name,
      fmt(median(cpu[i] ?? []), 1),
      fmt(median(rps[i] ?? [])),
      fmt(median((rps[i] ?? []).map((x, r) => x / (rps[0]?.[r] ?? Number.NaN))), 3),
    ]),
  )}`;
  raw.close();
  await gov.close();
  await up.stop();
  return report;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcCpu(Number(process.argv[2] ?? 50)));
