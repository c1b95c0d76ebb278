// What the mesh allocates per inbound request: bytes allocated on the JS heap per request,
// objects that the next minor GC collects included (V8's sampling heap profiler, through the
// inspector, with includeObjectsCollectedByMinorGC/MajorGC: each sample stands for the bytes
// allocated around it, so the sum is the bytes allocated). Allocation is what the inbound
// path's GC time is made of, and unlike CPU time it does not move with the machine's load.
// Each row runs in its own child process, so that one row's heap does not colour another's.
//   HTTP: `mesh.httpHandler` (tracing off) over a fake request and response, as
//         inbound-trace.ts times it, with no mesh headers, with `x-meshlet-tags` (two tags),
//         with `x-meshlet-caller`, and with both and a `traceparent` (what a governed caller
//         sends), and with auth on, a signed identity and the same headers (what a governed caller
//         of a mesh with `auth` sends); the floor is the app called with the same fake request and response.
//   gRPC: the servers of grpc-server.ts (grpc-upstream.ts: raw grpc-js, an empty interceptor,
//         `mesh.grpc.serverInterceptor()` with tracing off, traced at 100%), called at
//         concurrency 50 by a raw client that sends two tags, the caller and a sampled traceparent.
//   node bench/dist/inbound-alloc.js [http|grpc]      the tables (both by default)
//   BENCH_ALLOC_PROFILE=<dir>   also writes each row's last heap profile there (<row>.heapprofile,
//                               for Chrome DevTools or a diff by frame)
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { IDENTITY_HEADER, type MeshKey, signIdentity, verifiedCaller } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, silentLogger, systemClock } from '@meshlet/core';
import { createMesh } from 'meshlet';
import { GrpcBenchClient } from './grpc-clients.js';
import { fmt, load, machine, median, sized, spread, table } from './harness.js';
import { heapSampler } from './heap-sampler.js';
import { app, FakeResponse } from './inbound-trace.js';

const RUNS = sized('BENCH_RUNS', 3, 2);
const HTTP_REQUESTS = sized('BENCH_ALLOC_HTTP_REQUESTS', 20_000, 3_000);
const GRPC_CALLS = sized('BENCH_ALLOC_GRPC_CALLS', 10_000, 2_000);
const GRPC_CONCURRENCY = 50;
// Bytes between samples: small enough for a figure steady to a few percent in these runs.
const HTTP_INTERVAL = 256;
const GRPC_INTERVAL = 1024;

const TAGS = 'user-tier=vip,ua.family=Chrome';
const CALLER = 'service=bench-client,version=0.0.0,namespace=default';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

interface HttpRow {
  readonly name: string;
  /** False: the app alone, the floor of the fake request and response. */
  readonly mesh: boolean;
  readonly headers: Readonly<Record<string, string>>;
  /** Auth on (the mesh given the key), the request signed by a caller that has it. */
  readonly auth?: boolean;
}

const AUTH_KEY: MeshKey = { id: 'k1', key: Buffer.alloc(32, 5) };
/** A caller's signed identity, for orders: signed afresh before each run (a token lives 30 s). */
const signedIdentity = () =>
  signIdentity({ service: 'bench-client', namespace: 'default', instance: 'bench-client-1' }, AUTH_KEY, systemClock, {
    audience: 'orders',
  });

const HTTP_ROWS: readonly HttpRow[] = [
  { name: 'the app alone, no mesh (the floor)', mesh: false, headers: {} },
  { name: 'mesh.httpHandler, no mesh headers', mesh: true, headers: {} },
  { name: 'mesh.httpHandler, x-meshlet-tags (2 tags)', mesh: true, headers: { 'x-meshlet-tags': TAGS } },
  { name: 'mesh.httpHandler, x-meshlet-caller', mesh: true, headers: { 'x-meshlet-caller': CALLER } },
  {
    name: 'mesh.httpHandler, tags + caller + traceparent',
    mesh: true,
    headers: { 'x-meshlet-tags': TAGS, 'x-meshlet-caller': CALLER, traceparent: TRACEPARENT },
  },
  {
    name: 'mesh.httpHandler with auth, signed identity + tags + caller + traceparent',
    mesh: true,
    headers: { 'x-meshlet-tags': TAGS, 'x-meshlet-caller': CALLER, traceparent: TRACEPARENT },
    auth: true,
  },
];

const GRPC_ROWS = [
  ['raw grpc-js server', 'raw'],
  ['raw server with an empty interceptor', 'interceptor'],
  ['mesh.grpc.serverInterceptor(), tracing off', 'governed'],
  ['mesh.grpc.serverInterceptor(), tracing 100% to the trace log', 'traced'],
] as const;

/** A request as node:http gives it, enough for the pipeline. */
class FakeRequest {
  readonly method = 'GET';
  readonly url = '/api/users/42?fields=name';
  readonly headers: Record<string, string>;
  constructor(extra: Readonly<Record<string, string>>) {
    this.headers = { host: 'orders.internal:8080', accept: 'application/json', 'user-agent': 'bench/1', ...extra };
  }
}

/** `--http <row>`: the row's bytes per request, one figure per run, as JSON on stdout. */
async function httpChild(index: number): Promise<void> {
  const row = HTTP_ROWS[index];
  if (!row) throw new Error(`no row ${index}`);
  const mesh = row.mesh
    ? createMesh({
        service: 'orders',
        registry: new InMemoryRegistry(),
        rules: new InMemoryKvStore(),
        logger: silentLogger,
        ...(row.auth ? { auth: { keys: [AUTH_KEY] } } : {}),
      })
    : undefined;
  const handler = (mesh ? mesh.httpHandler(app) : app) as (req: IncomingMessage, res: ServerResponse) => void;
  const req = new FakeRequest(row.headers) as unknown as IncomingMessage;
  const serve = async (n: number) => {
    if (row.auth && mesh) {
      req.headers[IDENTITY_HEADER] = signedIdentity();
      // The row measures a verified caller, not an anonymous one.
      if (verifiedCaller(mesh.contextOf(req)) === undefined) throw new Error('inbound-alloc: the signed identity did not verify');
    }
    for (let i = 0; i < n; i++) {
      handler(req, new FakeResponse() as unknown as ServerResponse);
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
  };
  const sampler = await heapSampler(HTTP_INTERVAL, `http-${index}`);
  await serve(HTTP_REQUESTS); // warm-up: compiled, caches filled
  const perRequest: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    await sampler.start();
    await serve(HTTP_REQUESTS);
    perRequest.push((await sampler.stop()).bytes / HTTP_REQUESTS);
  }
  await mesh?.close();
  process.stdout.write(`${JSON.stringify(perRequest)}\n`);
}

/** `<mode> --grpc-heap`: grpc-upstream.ts's server with a sampler that IPC starts and stops. */
async function grpcChild(): Promise<void> {
  const sampler = await heapSampler(GRPC_INTERVAL, `grpc-${process.argv[2]}`);
  process.on('message', (m: unknown) => {
    if (m === 'heap-start') void sampler.start().then(() => process.send?.({ started: true }));
    if (m === 'heap-stop') void sampler.stop().then(({ bytes }) => process.send?.({ bytes }));
  });
  await import('./grpc-upstream.js');
}

async function runChild(args: string[]): Promise<number[]> {
  const child = fork(fileURLToPath(import.meta.url), args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], execArgv: [] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`inbound-alloc child ${args.join(' ')} exited with ${code}`);
  return JSON.parse(out.trim()) as number[];
}

async function httpTable(): Promise<string> {
  const runs: number[][] = [];
  for (const [i] of HTTP_ROWS.entries()) runs.push(await runChild(['--http', String(i)]));
  const floor = median(runs[0] ?? []);
  return [
    '## Allocation per inbound HTTP request: the inbound pipeline over a fake request',
    '',
    `${machine()}; \`mesh.httpHandler\` (tracing off, no rules) over a fake request and response, an app that answers at once; ` +
      `bytes allocated on the JS heap per request (sampling heap profiler, every ${HTTP_INTERVAL} B, objects collected by GC ` +
      `included), ${fmt(HTTP_REQUESTS)} requests a run after as many to warm up, median of ${RUNS} runs, one child process per row; ` +
      `"added" is over the app alone.`,
    '',
    table(
      ['request', 'bytes per request', 'spread', 'added bytes', 'ratio to the app alone'],
      HTTP_ROWS.map(({ name }, i) => {
        const m = median(runs[i] ?? []);
        return [name, fmt(m), spread(runs[i] ?? [], 0), i === 0 ? '—' : fmt(m - floor), i === 0 ? '1' : fmt(m / floor, 2)];
      }),
    ),
  ].join('\n');
}

type Get = (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void;

async function grpcRow(mode: string): Promise<number[]> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [mode, '--grpc-heap'], { stdio: 'inherit', execArgv: [] });
  const ask = async (m: string) => {
    const reply = once(child, 'message') as Promise<[{ bytes?: number }]>;
    child.send(m);
    return (await reply)[0];
  };
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const client = new GrpcBenchClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const get = (client as unknown as { Get: Get }).Get.bind(client);
  const request = Buffer.from('42');
  const call = () =>
    new Promise<void>((res, rej) => {
      const md = new grpc.Metadata();
      md.set('x-meshlet-tags', TAGS);
      md.set('x-meshlet-caller', CALLER);
      md.set('traceparent', TRACEPARENT);
      get(request, md, {}, (err) => (err ? rej(err) : res()));
    });
  try {
    await load(call, GRPC_CALLS, GRPC_CONCURRENCY); // warm-up
    const perCall: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      await ask('heap-start');
      await load(call, GRPC_CALLS, GRPC_CONCURRENCY);
      perCall.push(((await ask('heap-stop')).bytes ?? Number.NaN) / GRPC_CALLS);
    }
    return perCall;
  } finally {
    client.close();
    child.disconnect();
  }
}

async function grpcTable(): Promise<string> {
  const runs: number[][] = [];
  for (const [, mode] of GRPC_ROWS) runs.push(await grpcRow(mode));
  const raw = median(runs[0] ?? []);
  return [
    '## Allocation per inbound gRPC call: the server side',
    '',
    `${machine()}; the servers of grpc-server (grpc-upstream.ts, one child process each), ${fmt(GRPC_CALLS)} unary calls a run at ` +
      `concurrency ${GRPC_CONCURRENCY} from a raw client sending two tags, the caller and a sampled traceparent, after as many to ` +
      `warm up; bytes allocated on the server's JS heap per call (sampling heap profiler, every ${GRPC_INTERVAL} B, objects ` +
      `collected by GC included; grpc-js's own allocation is in every row), median of ${RUNS} runs; "added" is over the raw server.`,
    '',
    table(
      ['server', 'bytes per call', 'spread', 'added bytes', 'ratio to raw'],
      GRPC_ROWS.map(([name], i) => {
        const m = median(runs[i] ?? []);
        return [name, fmt(m), spread(runs[i] ?? [], 0), i === 0 ? '—' : fmt(m - raw), i === 0 ? '1' : fmt(m / raw, 2)];
      }),
    ),
  ].join('\n');
}

export async function inboundAlloc(which: 'http' | 'grpc' | 'both' = 'both'): Promise<string> {
  const parts: string[] = [];
  if (which !== 'grpc') parts.push(await httpTable());
  if (which !== 'http') parts.push(await grpcTable());
  return parts.join('\n\n');
}

if (process.argv[2] === '--http') await httpChild(Number(process.argv[3] ?? '0'));
else if (process.argv[3] === '--grpc-heap') await grpcChild();
else if (import.meta.url === `file://${process.argv[1]}`) {
  const which = process.argv[2];
  console.log(await inboundAlloc(which === 'http' || which === 'grpc' ? which : 'both'));
}
