/** The codes `error.type` takes for a network failure (core's list, shared with the breaker's SendFailure). */
export { NETWORK_ERROR_CODES } from '@meshlet/core';
export { activeContext, appSpanActive, runInContext, withoutAppTracing } from './active-context.js';
export {
  Attr,
  errorAttributesOf,
  errorTypeOf,
  GovernanceErrorType,
  MAX_REQUEST_VALUE_CHARS,
  normalizeMethod,
  OTHER_ERROR,
} from './attributes.js';
export { BaggageLimits, baggageWithinLimits } from './baggage-limits.js';
export { type BatchOptions, BatchQueue, type BatchStats, type LineExporter, type SpanLine } from './batch-queue.js';
export {
  apiOfPath,
  CALL_METRICS_DEFAULTS,
  CallMetrics,
  type CallMetricsHelp,
  type CallMetricsOptions,
  type CallRecord,
  CLIENT_CALL_METRICS_HELP,
  DEFAULT_BUCKETS,
  escapeLabel,
  MAX_ERROR_TYPES_PER_SERIES,
  prometheusHandler,
  SERVER_CALL_METRICS_HELP,
  type SeriesSnapshot,
  writePrometheus,
} from './call-metrics.js';
export type { ClientCall, ClientOutcome, ClientSpan, MeshletDecisions, SplitUrl } from './client-span.js';
export { clientSpanInterceptor, clientSpanObserver } from './client-span-interceptor.js';
export {
  type AttemptAnswer,
  OTLP_COMPRESSIONS,
  OTLP_PROTOCOLS,
  type OtlpCompression,
  OtlpExportError,
  OtlpExporterBase,
  type OtlpExporterDeps,
  type OtlpHttpOptions,
  type OtlpProtocol,
} from './otlp-exporter-base.js';
export { OtlpGrpcExporter } from './otlp-grpc-exporter.js';
export {
  isReservedOtlpHeader,
  OTLP_HEADER_BOUNDS,
  type OtlpHeaders,
  type OtlpProblem,
  otlpGrpcHeaderProblem,
  otlpHeadersProblem,
  otlpUrlProblem,
} from './otlp-headers.js';
export { type OtlpHttpDeps, OtlpHttpExporter } from './otlp-http-exporter.js';
export {
  encodeTraceLine,
  encodeTraceLineBytes,
  encodeTraceRequest,
  type OtlpSpan,
  OtlpSpanKind,
  type OtlpTraceRequest,
  TraceLineBuilder,
} from './otlp-json.js';
export {
  decodeTraceProto,
  decodeTraceResponseProto,
  encodeTraceProto,
  MAX_PROTO_REQUEST_BYTES,
  ProtoDecodeError,
  retryDelayOfStatusDetails,
  TraceProtoBuilder,
} from './otlp-proto.js';
export { isHttpsUrl, type OtlpTls, type OtlpTlsProblem, otlpTlsProblem } from './otlp-tls.js';
export {
  type InboundHeaders,
  type OutboundHeaders,
  type PropagationFormat,
  type PropagationOptions,
  TracePropagation,
} from './propagation.js';
export { redactUrl } from './redact-url.js';
export {
  OWN_RESOURCE_KEYS,
  RESOURCE_ATTRIBUTE_BOUNDS,
  type ResourceAttributeValue,
  resourceAttributesProblem,
} from './resource-attributes.js';
export {
  type RpcClientSpanHandle,
  type RpcClientSpanOptions,
  type RpcServerSpanOptions,
  type RpcSpanTracing,
  startRpcClientSpan,
  startRpcServerSpan,
} from './rpc-client-span.js';
export type { ServerRequestInfo, ServerSpan } from './server-span.js';
export { buildTopology, renderTopologyMermaid, renderTopologySvg, renderTopologyTable, type TopologyEdge } from './topology.js';
export { topologyCommand } from './topology-cli.js';
export {
  TRACE_LOG_FORMATS,
  type TraceLogDeps,
  TraceLogExporter,
  type TraceLogFormat,
  type TraceLogOptions,
} from './trace-log-exporter.js';
export { decodeTraceRequest, type LoggedAttributeValue, type LoggedSpan, readTraceLog } from './trace-log-reader.js';
export { Traced, type TracedDecorator, type TracedOptions } from './traced.js';
export { createTracing, defaultTracing, type InternalSpanOptions, type Tracing, type TracingOptions } from './tracing.js';
export { checkTracingOptions, TRACING_BOUNDS } from './tracing-options.js';
