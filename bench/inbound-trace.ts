// Tracing's share of an inbound request, without I/O: the mesh's inbound pipeline (context,
// SERVER span, auth, rate limits, the app in the span's context) over a fake request and
// response, so that what is timed is the pipeline and the span, not sockets. Rows: tracing
// off; a caller that did not sample (traceparent flags 00); a sampled caller (flags 01);
// a new root at sampleRatio 1 and at 0.5; the sampled rows batched to the trace log; and
// tracing off with auth on, a caller's signed identity verified (what auth adds). CPU
// per request (process.cpuUsage), rows interleaved, medians; "added" is over tracing off.
// Then the same server for real: node:http with `mesh.httpHandler` in a child process per
// row, driven by an undici Pool at concurrency 50 from this one; the server's own CPU per
// request (its process.cpuUsage over the run) and the requests per second.
//   node bench/dist/inbound-trace.js                 the table
//   node bench/dist/inbound-trace.js --profile       also a CPU profile of the sampled row (top functions)
//   node bench/dist/inbound-trace.js --child <row>   one row alone, for the profiler
//   node bench/dist/inbound-trace.js --server <row>  the row's real server (IPC: port, then CPU on request)
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IDENTITY_HEADER, type MeshKey, signIdentity, verifiedCaller } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, silentLogger, systemClock } from '@meshlet/core';
import { createTracing, type Tracing, type TracingOptions } from '@meshlet/trace';
import { createMesh, type Mesh } from 'meshlet';
import { Pool } from 'undici';
import { fmt, load, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const REQUESTS = sized('BENCH_INBOUND_REQUESTS', 50_000, 5_000);
const SAMPLED_PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const UNSAMPLED_PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';

/** A request as node:http gives it, enough for the pipeline. */
class FakeRequest {
  readonly method = 'GET';
  readonly url = '/api/users/42?fields=name';
  readonly headers: Record<string, string>;
  constructor(traceparent: string | undefined) {
    this.headers = { host: 'orders.internal:8080', accept: 'application/json', 'user-agent': 'bench/1' };
    if (traceparent) this.headers.traceparent = traceparent;
  }
}

/** A response that closes as soon as it ends (node emits 'close' once the response is finished). */
export class FakeResponse extends EventEmitter {
  statusCode = 200;
  closed = false;
  headersSent = false;
  writeHead(status: number): this {
    this.statusCode = status;
    this.headersSent = true;
    return this;
  }
  end(): this {
    this.headersSent = true;
    this.closed = true;
    this.emit('close');
    return this;
  }
}

export const app: RequestListener = (_req, res) => {
  res.statusCode = 200;
  res.end('{"id":42}');
};

interface Row {
  readonly name: string;
  readonly traceparent: string | undefined;
  /** Tracing options; undefined: tracing off. */
  readonly tracing: Omit<TracingOptions, 'service'> | undefined;
  /** Auth on (the mesh given the key), the request signed by a caller that has it. */
  readonly auth?: boolean;
}

const AUTH_KEY: MeshKey = { id: 'k1', key: Buffer.alloc(32, 5) };

const rowsFor = (logDir: string): Row[] => [
  { name: 'tracing off', traceparent: SAMPLED_PARENT, tracing: undefined },
  { name: 'unsampled caller (flags 00)', traceparent: UNSAMPLED_PARENT, tracing: { sampleRatio: 1 } },
  { name: 'sampled caller, no exporter', traceparent: SAMPLED_PARENT, tracing: { sampleRatio: 1 } },
  {
    name: 'sampled caller, batched to the trace log',
    traceparent: SAMPLED_PARENT,
    tracing: { sampleRatio: 1, log: { path: join(logDir, 'child.jsonl'), maxBytes: 2 ** 30 } },
  },
  {
    name: 'new root at sampleRatio 1, trace log',
    traceparent: undefined,
    tracing: { sampleRatio: 1, log: { path: join(logDir, 'root.jsonl'), maxBytes: 2 ** 30 } },
  },
  { name: 'new root at sampleRatio 0.5, no exporter', traceparent: undefined, tracing: { sampleRatio: 0.5 } },
  { name: 'tracing off, auth on (a signed caller verified)', traceparent: SAMPLED_PARENT, tracing: undefined, auth: true },
];

async function meshFor(tracing: Tracing | undefined, auth: boolean): Promise<Mesh> {
  return createMesh({
    service: 'orders',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    logger: silentLogger,
    ...(tracing ? { tracing } : {}),
    ...(auth ? { auth: { keys: [AUTH_KEY] } } : {}),
  });
}

interface Prepared {
  readonly row: Row;
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  readonly tracing: Tracing | undefined;
  readonly mesh: Mesh;
}

async function prepare(row: Row): Promise<Prepared> {
  const tracing = row.tracing ? createTracing({ service: 'orders', ...row.tracing }) : undefined;
  const mesh = await meshFor(tracing, row.auth === true);
  return { row, handler: mesh.httpHandler(app) as Prepared['handler'], tracing, mesh };
}

/** CPU ns per request through the pipeline. */
async function cpuOf(p: Prepared, n: number): Promise<number> {
  const req = new FakeRequest(p.row.traceparent) as unknown as IncomingMessage;
  if (p.row.auth) {
    // Signed afresh each run (a token lives 30 s); the row measures a verified caller, not an anonymous one.
    req.headers[IDENTITY_HEADER] = signIdentity(
      { service: 'bench-client', namespace: 'default', instance: 'bench-client-1' },
      AUTH_KEY,
      systemClock,
      {
        audience: 'orders',
      },
    );
    if (verifiedCaller(p.mesh.contextOf(req)) === undefined) throw new Error('inbound-trace: the signed identity did not verify');
  }
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    p.handler(req, new FakeResponse() as unknown as ServerResponse);
    // Between requests the loop turns: batches go out, timers run.
    if (i % 20 === 19) await new Promise((r) => setImmediate(r));
  }
  await p.tracing?.forceFlush();
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / n;
}

async function close(p: Prepared): Promise<void> {
  await p.mesh.close();
  await p.tracing?.shutdown();
}

export async function inboundTrace(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-inbound-'));
  const rows = rowsFor(dir);
  const prepared: Prepared[] = [];
  const times: number[][] = rows.map(() => []);
  try {
    for (const row of rows) prepared.push(await prepare(row));
    for (const p of prepared) await cpuOf(p, REQUESTS); // warm-up
    for (let r = 0; r < RUNS; r++)
      for (let k = 0; k < prepared.length; k++) {
        const i = (k + r) % prepared.length;
        times[i]?.push(await cpuOf(prepared[i] as Prepared, REQUESTS));
      }
  } finally {
    for (const p of prepared) await close(p);
  }
  const logged = prepared[3]?.tracing?.stats;
  const bytes = (await stat(join(dir, 'child.jsonl'))).size;
  await rm(dir, { recursive: true, force: true });
  const base = median(times[0] ?? []);
  return [
    '## Tracing per inbound request: the SERVER span in the inbound pipeline, no I/O',
    '',
    `${machine()}; ${fmt(REQUESTS)} requests a run through \`mesh.httpHandler\` (context, SERVER span, auth, rate limits, ` +
      `the app in the span's context) over a fake request and response, an app that answers at once; CPU ns per request ` +
      `(process.cpuUsage), median of ${RUNS} interleaved runs; "added" is over tracing off.`,
    '',
    table(
      ['request', 'CPU ns per request', 'spread', 'added ns'],
      rows.map(({ name }, i) => [
        name,
        fmt(median(times[i] ?? []), 0),
        spread(times[i] ?? [], 0),
        i === 0 ? '—' : fmt(median(times[i] ?? []) - base, 0),
      ]),
    ),
    '',
    `Trace log of the sampled caller row: ${fmt(logged?.exported ?? 0)} spans, ${fmt(logged?.dropped ?? 0)} dropped, ` +
      `${fmt(bytes / Math.max(1, logged?.exported ?? 1))} bytes per span.`,
    '',
    await servedRows(),
  ].join('\n');
}

const SERVED = sized('BENCH_INBOUND_SERVED', 20_000, 3_000);
/** The rows served for real: tracing off, unsampled caller, sampled caller and new roots into the trace log. */
const SERVED_ROWS = [0, 1, 3, 4];

/** `--server <row>`: the row's mesh behind a real node:http server; sends its port, answers `cpu` with its CPU so far (µs). */
async function serve(index: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-inbound-'));
  const row = rowsFor(dir)[index];
  if (!row) throw new Error(`no row ${index}`);
  const p = await prepare(row);
  const server = createServer(p.handler);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.send?.({ port: (server.address() as AddressInfo).port });
  process.on('message', (msg: { cmd?: string }) => {
    if (msg.cmd !== 'cpu') return;
    const c = process.cpuUsage();
    process.send?.({ cpu: c.user + c.system });
  });
  process.on('disconnect', () => {
    server.close();
    server.closeAllConnections();
    void close(p).finally(() => rm(dir, { recursive: true, force: true }).finally(() => process.exit(0)));
  });
}

interface Served {
  readonly row: Row;
  readonly child: ChildProcess;
  readonly pool: Pool;
}

async function cpuOfChild(child: ChildProcess): Promise<number> {
  const reply = once(child, 'message') as Promise<[{ cpu: number }]>;
  child.send({ cmd: 'cpu' });
  return (await reply)[0].cpu;
}

/** Table 2: real servers at concurrency 50; µs of server CPU per request and requests per second, medians. */
async function servedRows(): Promise<string> {
  const rows = rowsFor(tmpdir());
  const served: Served[] = [];
  const cpu: number[][] = SERVED_ROWS.map(() => []);
  const rps: number[][] = SERVED_ROWS.map(() => []);
  try {
    for (const i of SERVED_ROWS) {
      const child = fork(fileURLToPath(import.meta.url), ['--server', String(i)], { stdio: 'inherit' });
      const [msg] = (await once(child, 'message')) as [{ port: number }];
      served.push({ row: rows[i] as Row, child, pool: new Pool(`http://127.0.0.1:${msg.port}`, { connections: 50 }) });
    }
    const run = async (s: Served, n: number) => {
      const headers = s.row.traceparent ? { traceparent: s.row.traceparent } : {};
      const call = async () => {
        const res = await s.pool.request({ path: '/api/users/42?fields=name', method: 'GET', headers });
        await res.body.dump();
      };
      const c0 = await cpuOfChild(s.child);
      const r = await load(call, n, 50);
      return { cpuUs: ((await cpuOfChild(s.child)) - c0) / n, rps: r.rps };
    };
    for (const s of served) await run(s, 10_000); // warm-up
    for (let r = 0; r < RUNS; r++)
      for (let k = 0; k < served.length; k++) {
        const i = (k + r) % served.length;
        const m = await run(served[i] as Served, SERVED);
        cpu[i]?.push(m.cpuUs);
        rps[i]?.push(m.rps);
      }
  } finally {
    for (const s of served) {
      await s.pool.close();
      s.child.disconnect();
    }
  }
  const baseCpu = median(cpu[0] ?? []);
  const baseRps = median(rps[0] ?? []);
  return [
    '## Tracing per inbound request: a real node:http server at concurrency 50',
    '',
    `${machine()}; \`mesh.httpHandler\` in a node:http server (one child process per row), ${fmt(SERVED)} GETs a run from an ` +
      `undici Pool (50 connections) in the bench process; the server's own CPU per request (its process.cpuUsage), ` +
      `median of ${RUNS} interleaved runs; "throughput cost" is the drop in requests per second against tracing off.`,
    '',
    table(
      ['request', 'server CPU µs per request', 'spread', 'added µs', 'req/s', 'throughput cost'],
      SERVED_ROWS.map((_, i) => [
        served[i]?.row.name ?? '',
        fmt(median(cpu[i] ?? []), 1),
        spread(cpu[i] ?? [], 1),
        i === 0 ? '—' : fmt(median(cpu[i] ?? []) - baseCpu, 1),
        fmt(median(rps[i] ?? [])),
        i === 0 ? '—' : `${fmt((1 - median(rps[i] ?? []) / baseRps) * 100, 1)}%`,
      ]),
    ),
  ].join('\n');
}

/** One row alone (`--child <index>`), for the profiler: prints `<n> µs CPU per request`. */
async function child(index: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-inbound-'));
  const row = rowsFor(dir)[index];
  if (!row) throw new Error(`no row ${index}`);
  const p = await prepare(row);
  await cpuOf(p, 20_000);
  const ns = await cpuOf(p, REQUESTS * 4);
  process.stderr.write(`${row.name}: ${fmt(ns / 1000, 2)} µs CPU per request\n`);
  await close(p);
  await rm(dir, { recursive: true, force: true });
}

async function profile(): Promise<string> {
  const { profileChild } = await import('./profile-governed.js');
  const script = fileURLToPath(import.meta.url);
  const off = profileChild(script, '0', 'request');
  const on = profileChild(script, process.env.INBOUND_PROFILE_ROW ?? '3', 'request');
  const offFns = new Map(off.result.byFn);
  const per = (us: number) => fmt(us / (REQUESTS * 4 + 20_000), 3);
  const fns = on.result.byFn
    .map(([f, t]) => [f, t - (offFns.get(f) ?? 0)] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)
    .map(([f, added]) => [`\`${f}\``, per(added)]);
  const owners = on.result.byOwner.slice(0, 12).map(([o, t]) => [o, per(t)]);
  return [
    `Profile: tracing off ${fmt(off.cpuUs, 2)} µs, sampled caller to the trace log ${fmt(on.cpuUs, 2)} µs CPU per request.`,
    '',
    table(['part of the stack (sampled)', 'µs per request'], owners),
    '',
    table(['function (self time added over tracing off)', 'µs per request'], fns),
  ].join('\n');
}

if (process.argv[2] === '--child') await child(Number(process.argv[3] ?? '3'));
else if (process.argv[2] === '--server') await serve(Number(process.argv[3] ?? '0'));
else if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await inboundTrace());
  if (process.argv[2] === '--profile') console.log(`\n${await profile()}`);
}
