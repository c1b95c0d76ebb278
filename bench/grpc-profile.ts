// Where a governed gRPC call's client CPU goes: a raw grpc-js client and `mesh.grpc.client`
// (grpc-clients.ts, tracing off) each run at concurrency 50 in a child started with
// `node --cpu-prof`; the table is self time per call by part of the stack and the functions
// that add the most over the raw client.
//   node bench/dist/grpc-profile.js       both profiles, tables on stdout (npm run bench -- grpc-profile)
//   PROFILE_KEEP=1 ...                    keeps the .cpuprofile files
//   GRPC_PROFILE_TRACING=1 ...            the governed child with tracing at 100%
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { caller, GrpcBenchClient, governedGrpc, startGrpcUpstream } from './grpc-clients.js';
import { fmt, load, machine, sized, table } from './harness.js';

// profile-governed.ts runs its own child when its argv says `--child`: loaded in the parent only.
const { profileChild } = process.argv[2] === '--child' ? ({} as never) : await import('./profile-governed.js');

const REQUESTS = sized('BENCH_PROFILE_REQUESTS', 30_000, 4_000);
const WARMUP = 3000;
const TOP = 25;

async function child(kind: string): Promise<void> {
  const upstream = await startGrpcUpstream();
  const tracing = process.env.GRPC_PROFILE_TRACING === '1';
  const gov = kind === 'raw' ? undefined : await governedGrpc(upstream.port, tracing);
  const raw = gov ? undefined : new GrpcBenchClient(`127.0.0.1:${upstream.port}`, grpc.credentials.createInsecure());
  // Governed calls in one request context, as a handler's (grpc-overhead.ts does the same).
  const call = gov?.bare ?? caller(raw as grpc.Client);
  const run = gov ? gov.inContext.bind(gov) : <T>(fn: () => T) => fn();
  await run(() => load(call, WARMUP, 50));
  const r = await run(() => load(call, REQUESTS, 50));
  process.stderr.write(`${kind}: ${fmt(r.rps)} calls/s, ${fmt(r.cpuPerRequestUs, 1)} µs CPU per call\n`);
  raw?.close();
  await gov?.close();
  await upstream.stop();
}

const profileOf = (kind: string) => profileChild(fileURLToPath(import.meta.url), kind, 'call');

export async function grpcProfile(): Promise<string> {
  const raw = profileOf('raw');
  const gov = profileOf('governed');
  // The profile covers the whole child (set-up and warm-up too): compare columns, not absolutes.
  const perCall = (us: number) => fmt(us / (REQUESTS + WARMUP), 2);
  const rawOwners = new Map(raw.result.byOwner);
  const owners = gov.result.byOwner
    .slice(0, 16)
    .map(([o, t]) => [o, perCall(rawOwners.get(o) ?? 0), perCall(t), perCall(t - (rawOwners.get(o) ?? 0))]);
  const rawFns = new Map(raw.result.byFn);
  const fns = gov.result.byFn
    .map(([f, t]) => [f, t, t - (rawFns.get(f) ?? 0)] as const)
    .sort((a, b) => b[2] - a[2])
    .slice(0, TOP)
    .map(([f, t, added]) => [`\`${f}\``, perCall(rawFns.get(f) ?? 0), perCall(t), perCall(added)]);
  const tracing = process.env.GRPC_PROFILE_TRACING === '1' ? 'tracing 100%' : 'tracing off';
  return [
    `## Profile of the governed gRPC call (node --cpu-prof, concurrency 50, ${tracing})`,
    '',
    `${machine()}; ${fmt(REQUESTS)} unary calls after ${fmt(WARMUP)} of warm-up; sampling every 200 µs. ` +
      `Measured client CPU per call: raw grpc-js ${fmt(raw.cpuUs, 1)} µs, governed ${fmt(gov.cpuUs, 1)} µs. Self time in µs per call.`,
    '',
    table(['part of the stack', 'raw grpc-js', 'governed', 'added'], owners),
    '',
    `Top ${TOP} functions by self time added (governed minus raw):`,
    '',
    table(['function', 'raw grpc-js', 'governed', 'added'], fns),
  ].join('\n');
}

if (process.argv[2] === '--child') await child(process.argv[3] ?? 'governed');
else if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcProfile());
