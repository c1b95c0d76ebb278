// The gRPC upstream of the gRPC benchmarks, in its own process: one unary method
// (`/bench.Upstream/Get`, bytes in, a small JSON body out) on grpc-js, plaintext on
// 127.0.0.1. Tells its port over IPC, and its CPU time when asked (`cpu`); exits when the
// parent disconnects. Its first argument picks the server:
//   raw       a plain grpc-js server (the default)
//   interceptor  the plain server with an empty server interceptor (grpc-js's own cost of
//             any interceptor: the floor under the governed server)
//   governed  the same server with `mesh.grpc.serverInterceptor()` (context, auth and rate
//             limit checks, no rules in force), tracing off
//   traced    governed, tracing at 100% into a trace log in a temporary directory
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { InMemoryKvStore, InMemoryRegistry, silentLogger } from '@meshlet/core';
import { createMesh } from 'meshlet';
import { benchGrpcService } from './grpc-service.js';

const mode = process.argv[2] ?? 'raw';
if (!['raw', 'interceptor', 'governed', 'traced'].includes(mode)) throw new Error(`grpc-upstream: unknown mode ${mode}`);
const dir = mode === 'traced' ? mkdtempSync(join(tmpdir(), 'meshlet-bench-grpc-server-')) : undefined;
const mesh =
  mode === 'raw' || mode === 'interceptor'
    ? undefined
    : createMesh({
        service: 'bench-upstream',
        registry: new InMemoryRegistry(),
        rules: new InMemoryKvStore(),
        logger: silentLogger,
        ...(dir ? { tracing: { sampleRatio: 1, log: { path: join(dir, 'spans.jsonl') } } } : {}),
      });

const body = Buffer.from('{"ok":true}');
const empty: grpc.ServerInterceptor = (_method, call) => new grpc.ServerInterceptingCall(call);
const interceptor = mesh ? mesh.grpc.serverInterceptor() : mode === 'interceptor' ? empty : undefined;
const server = new grpc.Server(interceptor ? { interceptors: [interceptor] } : {});
server.addService(benchGrpcService, {
  Get(_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
    cb(null, body);
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.send?.({ port });
});
// `cpu`: this process's CPU time so far (user + system, µs), for CPU per call on the server side.
process.on('message', (m: unknown) => {
  if (m === 'cpu') {
    const u = process.cpuUsage();
    process.send?.({ cpu: u.user + u.system });
  }
});
process.on('disconnect', () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});
