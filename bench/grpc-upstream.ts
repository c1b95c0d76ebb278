// The gRPC upstream of the gRPC benchmark, in its own process: one unary method
// (`/bench.Upstream/Get`, bytes in, a small JSON body out) on grpc-js, plaintext on
// 127.0.0.1. Tells its port over IPC, and its CPU time when asked (`cpu`); exits when the
// parent disconnects.
import * as grpc from '@grpc/grpc-js';
import { benchGrpcService } from './grpc-service.js';

const body = Buffer.from('{"ok":true}');
const server = new grpc.Server();
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
process.on('disconnect', () => process.exit(0));
