// An OTLP/gRPC receiver for the client-path benchmarks, in its own process: answers the
// collector's TraceService/Export with an empty response (a collector that takes every
// batch), as upstream.ts answers OTLP/HTTP. Tells its port over IPC; exits when the
// parent disconnects.
import * as grpc from '@grpc/grpc-js';

const server = new grpc.Server();
server.register<Buffer, Buffer>(
  '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
  (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0)),
  (b: Buffer) => b,
  (b: Buffer) => b,
  'unary',
);
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.send?.({ port });
});
process.on('disconnect', () => process.exit(0));
