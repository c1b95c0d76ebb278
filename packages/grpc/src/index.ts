export { ChannelPool, type ChannelPoolOptions, type PooledChannel } from './channel-pool.js';
export {
  CallEnded,
  FAULT_TRAILER,
  type GrpcAttemptResult,
  interceptorFor,
  type MeshInterceptorOptions,
  meshInterceptor,
  NotSentError,
  retryable,
  StreamOpenError,
  statusOfError,
} from './client.js';
export { DEFAULT_STREAM_CONNECT_RETRIES, Destination, type SpanPorts } from './governance.js';
export { type GracefulStopOptions, stopGracefully } from './graceful-stop.js';
export { grpcLogLine, routeGrpcLog, unrouteGrpcLog } from './grpc-log.js';
export { addHealthService, HEALTH_SERVICE, healthServiceDefinition, ServingStatus } from './health.js';
export { deadlineMs, inboundDeadline, keepInboundDeadline } from './inbound-deadline.js';
export { type DroppedHeader, HEADER_DROPPED } from './outbound-metadata.js';
export type {
  Admitted,
  ExecutorCall,
  GrpcClientPorts,
  GrpcDirectory,
  GrpcExecutor,
  GrpcRouter,
  GrpcServerPorts,
  GrpcStreamAttempt,
  GrpcStreamGovernance,
  GrpcTracing,
  Refusal,
  RouteChoice,
} from './ports.js';
export { GRPC_PORT_META, grpcMetadata, grpcPortOf, LEGACY_GRPC_PORT_META } from './registration.js';
export { LIMITED_TRAILER, type RpcNames, rpcNames } from './rpc-names.js';
export { rpcSpanObserver } from './rpc-span-observer.js';
export { headersOf, meshServerInterceptor } from './server.js';
export { grpcCodeOf, httpStatusOf, statusName } from './status-map.js';
export { governMethods, UnaryCall, type UnaryMethod, type UnarySink } from './unary-call.js';
