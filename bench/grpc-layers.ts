// The client path of a gRPC unary call without the network: raw grpc-js and mesh.grpc.client
// over a fake channel whose calls answer at once (a microtask later), so that what is
// measured is the JS of each client's layers, steadily even on a busy machine.
//   node bench/dist/grpc-layers.js
//   BENCH_GRPC_BASELINE=/path/to/checkout ...   adds that checkout's build (built with tsc -b)
import * as grpc from '@grpc/grpc-js';
import { caller, GrpcBenchClient, governedGrpc, meshletBuildAt } from './grpc-clients.js';
import { fmt, load, median, sized, table } from './harness.js';

const CALLS = sized('BENCH_GRPC_LAYER_CALLS', 50_000, 5_000);
const ROUNDS = sized('BENCH_RUNS', 7, 2);
const reply = Buffer.from('{"ok":true}');

class FakeCall {
  #listener: grpc.InterceptingListener | undefined;
  start(_md: grpc.Metadata, listener: grpc.InterceptingListener): void {
    this.#listener = listener;
  }
  sendMessageWithContext(context: { callback?: () => void }): void {
    context.callback?.();
  }
  halfClose(): void {
    queueMicrotask(() => {
      const l = this.#listener as grpc.InterceptingListener;
      l.onReceiveMetadata(new grpc.Metadata());
      l.onReceiveMessage(reply);
      l.onReceiveStatus({ code: grpc.status.OK, details: 'OK', metadata: new grpc.Metadata() });
    });
  }
  startRead(): void {}
  cancelWithStatus(): void {}
  getPeer(): string {
    return 'fake';
  }
  getCallNumber(): number {
    return 0;
  }
  setCredentials(): void {}
  getAuthContext(): null {
    return null;
  }
}

const fake = {
  createCall: () => new FakeCall(),
  close() {},
  getTarget: () => 'fake',
  getConnectivityState: () => grpc.connectivityState.READY,
  watchConnectivityState() {},
  getChannelzRef: () => ({ kind: 'channel', id: 0, name: 'fake' }),
} as unknown as grpc.Channel;

// The mesh's pooled channels are made by grpc-js's Client: point them at the fake.
grpc.Client.prototype.getChannel = () => fake;

const raw = new GrpcBenchClient('fake', grpc.credentials.createInsecure(), { channelOverride: fake });
const gov = await governedGrpc(1, false);
const traced = await governedGrpc(1, true);
const clients: [string, () => Promise<unknown>, <T>(fn: () => T) => T][] = [
  ['raw grpc-js', caller(raw), (fn) => fn()],
  ['governed, tracing off', gov.bare, gov.inContext],
  ['governed, tracing 100%', traced.bare, traced.inContext],
];
const baselineRoot = process.env.BENCH_GRPC_BASELINE;
const baselineBuild = baselineRoot ? await meshletBuildAt(baselineRoot) : undefined;
if (baselineBuild) baselineBuild.grpc.Client.prototype.getChannel = () => fake;
const baseline = baselineBuild ? await governedGrpc(1, false, baselineBuild) : undefined;
if (baseline) clients.push(['governed, tracing off, baseline build', baseline.bare, baseline.inContext]);
const out: number[][] = clients.map(() => []);
for (const concurrency of [1, 50]) {
  for (const [, call, run] of clients) await run(() => load(call, CALLS / 5, concurrency));
  const cpu: number[][] = clients.map(() => []);
  for (let r = 0; r < ROUNDS; r++)
    for (const [i, [, call, run]] of clients.entries()) cpu[i]?.push((await run(() => load(call, CALLS, concurrency))).cpuPerRequestUs);
  for (const [i] of clients.entries()) out[i]?.push(median(cpu[i] ?? []));
}
console.log(
  table(
    ['client (fake channel)', 'CPU µs/call, concurrency 1', 'CPU µs/call, concurrency 50'],
    clients.map(([name], i) => [name, fmt(out[i]?.[0] ?? 0, 2), fmt(out[i]?.[1] ?? 0, 2)]),
  ),
);
raw.close();
await gov.close();
await traced.close();
await baseline?.close();
