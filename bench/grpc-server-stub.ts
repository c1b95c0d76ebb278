// What `mesh.grpc.serverInterceptor()` costs a call, without sockets: the interceptor driven
// over a stub of grpc-js's server call (metadata with two tags, the caller and a sampled
// traceparent; one message; half-close; the status), the handler's listener reading a tag
// at half-close as a handler does. What is timed is grpc-js's interceptor machinery and
// the mesh's work per call, not HTTP/2: a steadier figure than grpc-server's server CPU on
// a shared machine, where the sockets' and the scheduler's share moves from run to run.
// Rows: an empty interceptor (grpc-js's own cost of one), governed with tracing off,
// governed with tracing at 100% (no exporter). CPU per call (process.cpuUsage), rows
// interleaved, medians; "added" is over the empty interceptor.
//   node bench/dist/grpc-server-stub.js
import * as grpc from '@grpc/grpc-js';
import { getTag, InMemoryKvStore, InMemoryRegistry, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh } from 'meshlet';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 9, 2);
const CALLS = sized('BENCH_GRPC_STUB_CALLS', 20_000, 3_000);
const method = { path: '/bench.Upstream/Get', requestStream: false, responseStream: false } as grpc.ServerMethodDefinition<
  unknown,
  unknown
>;

interface Row {
  readonly name: string;
  readonly interceptor: grpc.ServerInterceptor;
  readonly mesh?: Mesh;
}

/** The listener grpc-js's server call is started with (and the handler's, one level up). */
interface Inbound {
  onReceiveMetadata(metadata: grpc.Metadata): void;
  onReceiveMessage(message: unknown): void;
  onReceiveHalfClose(): void;
  onCancel(): void;
}

/** One call through `interceptor` over a stub call; returns whether the handler saw the tag. */
function callThrough(interceptor: grpc.ServerInterceptor): boolean {
  let listener: Inbound | undefined;
  const stub = {
    start(l: Inbound) {
      listener = l;
    },
    sendMetadata() {},
    sendMessage(_m: unknown, cb: () => void) {
      cb();
    },
    sendStatus() {},
    startRead() {},
    getPeer: () => '127.0.0.1:5000',
    getDeadline: () => Number.POSITIVE_INFINITY,
    getHost: () => 'bench',
    getAuthContext: () => ({}),
    getConnectionInfo: () => ({}),
    getMetricsRecorder: () => undefined,
  } as unknown as grpc.ServerInterceptingCallInterface;
  let seen = false;
  const call = interceptor(method, stub);
  const handler: Inbound = {
    onReceiveMetadata() {},
    onReceiveMessage() {},
    onReceiveHalfClose() {
      seen = getTag('user-tier') === 'vip';
    },
    onCancel() {},
  };
  call.start(handler);
  const md = new grpc.Metadata();
  md.set('content-type', 'application/grpc');
  md.set('te', 'trailers');
  md.set('user-agent', 'grpc-node-js/1.14');
  md.set('x-meshlet-tags', 'user-tier=vip,ua.family=Chrome');
  md.set('x-meshlet-caller', 'service=bench-client,version=0.0.0,namespace=default');
  md.set('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  listener?.onReceiveMetadata(md);
  listener?.onReceiveMessage(Buffer.from('42'));
  listener?.onReceiveHalfClose();
  call.sendStatus({ code: grpc.status.OK, details: 'OK', metadata: new grpc.Metadata() });
  return seen;
}

/** CPU ns per call. */
async function cpuOf(row: Row, n: number): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    callThrough(row.interceptor);
    // Between calls the loop turns, as it does between a server's calls.
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / n;
}

const meshFor = (traced: boolean) =>
  createMesh({
    service: 'bench-upstream',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    logger: silentLogger,
    ...(traced ? { tracing: { sampleRatio: 1 } } : {}),
  });

export async function grpcServerStub(): Promise<string> {
  const governed = meshFor(false);
  const traced = meshFor(true);
  const rows: Row[] = [
    { name: "an empty interceptor (grpc-js's own cost of one)", interceptor: (_m, call) => new grpc.ServerInterceptingCall(call) },
    { name: 'mesh.grpc.serverInterceptor(), tracing off', interceptor: governed.grpc.serverInterceptor(), mesh: governed },
    { name: 'mesh.grpc.serverInterceptor(), tracing 100%, no exporter', interceptor: traced.grpc.serverInterceptor(), mesh: traced },
  ];
  const times: number[][] = rows.map(() => []);
  try {
    for (const row of rows.slice(1))
      if (!callThrough(row.interceptor)) throw new Error(`${row.name}: the handler did not see the call's tag`);
    for (const row of rows) await cpuOf(row, CALLS); // warm-up
    for (let r = 0; r < RUNS; r++)
      for (let k = 0; k < rows.length; k++) {
        const i = (k + r) % rows.length;
        times[i]?.push(await cpuOf(rows[i] as Row, CALLS));
      }
  } finally {
    await governed.close();
    await traced.close();
  }
  const base = median(times[0] ?? []);
  return [
    '## gRPC server interceptor per call, over a stub call (no sockets)',
    '',
    `${machine()}; ${fmt(CALLS)} unary calls a run driven through the interceptor over a stub of grpc-js's server call ` +
      '(metadata with two tags, the caller and a sampled traceparent, one message, half-close, the status; the handler reads a ' +
      `tag), no rules in force; CPU ns per call (process.cpuUsage), median of ${RUNS} interleaved runs; "added" is over the ` +
      'empty interceptor.',
    '',
    table(
      ['interceptor', 'CPU ns per call', 'spread', 'added ns'],
      rows.map(({ name }, i) => [
        name,
        fmt(median(times[i] ?? [])),
        spread(times[i] ?? []),
        i === 0 ? '—' : fmt(median(times[i] ?? []) - base),
      ]),
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcServerStub());
