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

/** The table: client CPU per call over the fake channel, raw grpc-js and the governed client (tracing off and 100%). */
export async function grpcLayers(): Promise<string> {
  // The mesh's pooled channels are made by grpc-js's Client: point them at the fake.
  const own = grpc.Client.prototype.getChannel;
  grpc.Client.prototype.getChannel = () => fake;
  try {
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
    const baselineOwn = baselineBuild?.grpc.Client.prototype.getChannel;
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
    const report = `## gRPC client layers (fake channel: the JS of each client, no network)\n\n${table(
      ['client (fake channel)', 'CPU µs/call, concurrency 1', 'CPU µs/call, concurrency 50'],
      clients.map(([name], i) => [name, fmt(out[i]?.[0] ?? 0, 2), fmt(out[i]?.[1] ?? 0, 2)]),
    )}\n\nMedian of ${ROUNDS} rounds of ${fmt(CALLS)} calls per client and concurrency.`;
    raw.close();
    await gov.close();
    await traced.close();
    await baseline?.close();
    if (baselineBuild && baselineOwn) baselineBuild.grpc.Client.prototype.getChannel = baselineOwn;
    return report;
  } finally {
    // Other sections of `npm run bench` share this process: grpc-js's Client as it was.
    grpc.Client.prototype.getChannel = own;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await grpcLayers());
