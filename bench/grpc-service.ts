import type { ServiceDefinition } from '@grpc/grpc-js';

const same = (b: Buffer) => b;

/** One unary method whose messages are raw bytes: what the benchmark measures is the client path, not protobuf. */
export const benchGrpcService: ServiceDefinition = {
  Get: {
    path: '/bench.Upstream/Get',
    requestStream: false,
    responseStream: false,
    requestSerialize: same,
    requestDeserialize: same,
    responseSerialize: same,
    responseDeserialize: same,
  },
};
