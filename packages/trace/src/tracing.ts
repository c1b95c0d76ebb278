import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Clock, consoleLogger, type Logger, NewestLive, systemClock, throttledLogger } from '@meshlet/core';
import type { AttributeValue, Context, MeterProvider, Tracer } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  type IdGenerator,
  ParentBasedSampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { activeContext, runInContext, TRACING_KEY } from './active-context.js';
import { Attr } from './attributes.js';
import { type BatchOptions, BatchQueue, type BatchStats, EXPORT_LOG_CODES } from './batch-queue.js';
import {
  CallMetrics,
  type CallMetricsOptions,
  CLIENT_CALL_METRICS_HELP,
  DEFAULT_BUCKETS,
  METRICS_LOG_CODES,
  SERVER_CALL_METRICS_HELP,
  servePrometheus,
} from './call-metrics.js';
import { type ClientCall, type ClientSpan, startClientSpan } from './client-span.js';
import { WallAnchors } from './client-span-record.js';
import { HeadSampler, PooledIdGenerator } from './head-sampling.js';
import { inInternalSpan } from './internal-span.js';
import { DEFAULT_OTLP_TIMEOUT_MS, type OtlpHttpOptions } from './otlp-exporter-base.js';
import { OtlpGrpcExporter } from './otlp-grpc-exporter.js';
import { OtlpHttpExporter } from './otlp-http-exporter.js';
import { type InboundHeaders, type PropagationOptions, TracePropagation } from './propagation.js';
import type { ResourceAttributeValue } from './resource-attributes.js';
import { type ServerRequestInfo, type ServerSpan, startServerSpan } from './server-span.js';
import { SPAN_DEPS, type SpanDeps } from './span-deps.js';
import { withSpanRecording } from './span-record.js';
import { TraceLogExporter, type TraceLogOptions } from './trace-log-exporter.js';
import { checkTracingOptions } from './tracing-options.js';

export interface TracingOptions {
  /** This service's name (`service.name` of every span). */
  readonly service: string;
  readonly version?: string;
  readonly namespace?: string;
  readonly instanceId?: string;
  /** Share of new traces recorded, 0 to 1; a caller's sampling decision is always followed (parent-based). Default 1. */
  readonly sampleRatio?: number;
  readonly propagation?: PropagationOptions;
  /** The local trace log (OTLP JSON Lines). Off unless given. */
  readonly log?: TraceLogOptions;
  /** An OTLP/HTTP collector, instead of or beside the log. */
  readonly otlp?: OtlpHttpOptions;
  /** More exporters (e.g. OpenTelemetry's InMemorySpanExporter in tests); each gets its own batch queue. */
  readonly exporters?: readonly SpanExporter[];
  /** Batch queue settings, for every exporter. */
  readonly batch?: Omit<BatchOptions, 'clock' | 'shutdownTimeoutMs'>;
  /** Metrics: per destination service and API (client) and per calling service and route (server). `false` turns them off. */
  readonly metrics?: false | Omit<CallMetricsOptions, 'prefix' | 'logger'>;
  /** Also record `http.client.request.duration` / `http.server.request.duration` to this OpenTelemetry MeterProvider. */
  readonly meterProvider?: MeterProvider;
  readonly clock?: Clock;
  /**
   * Where an export that failed (a collector that refused a batch, a trace log that could
   * not be written) and a collector's partial success are told; at most once a minute per
   * code (core's throttledLogger). Default: warnings to stderr. createMesh gives its own.
   */
  readonly logger?: Logger;
  /** Trace and span ids; inject a seeded one for deterministic sampling in tests. */
  readonly idGenerator?: IdGenerator;
  /**
   * More attributes of this process's resource, on every span (`deployment.environment`,
   * `k8s.pod.name`…): at most 64, none of the service's own (`service.name`…, from the
   * options above). createMeshFromConfig gives OpenTelemetry's `OTEL_RESOURCE_ATTRIBUTES`.
   */
  readonly resourceAttributes?: Readonly<Record<string, ResourceAttributeValue>>;
}

/** Options of a span around a piece of in-process work (see `@Traced`). */
export interface InternalSpanOptions {
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

/** Tracing for one service: span handles for the SDK to call, metrics, and the exporters' lifecycle. */
export interface Tracing {
  readonly service: string;
  readonly tracer: Tracer;
  readonly propagation: TracePropagation;
  /** Per destination service and API; undefined when metrics are off. */
  readonly clientMetrics: CallMetrics | undefined;
  /** Per calling service and route. */
  readonly serverMetrics: CallMetrics | undefined;
  /** The SERVER span of an inbound request, continuing the caller's trace from `headers` (W3C, then B3). */
  startServerSpan(headers: InboundHeaders, method: string, route?: string, info?: ServerRequestInfo): ServerSpan;
  /** A CLIENT span for one attempt, child of `parent` (default: the active context). */
  startClientSpan(parent: Context | undefined, call: ClientCall): ClientSpan;
  /** Runs `fn` inside an INTERNAL span child of the active context; the span ends when the returned promise settles. */
  inSpan<T>(name: string, fn: () => Promise<T>, options?: InternalSpanOptions): Promise<T>;
  /** The active trace context (a server span's, a `@Traced` method's). */
  active(): Context;
  /** Runs `fn` with `ctx` active, as this Tracing's (what `@Traced()` inside records through). */
  run<T>(ctx: Context, fn: () => T): T;
  /** A node:http handler serving the metrics in Prometheus text format; it never throws (a failed render is a 500, logged once a minute). */
  metricsHandler(): (req: IncomingMessage, res: ServerResponse) => void;
  /** Export counters, summed over the exporters' queues. */
  readonly stats: BatchStats;
  /** Exports every ended span now. */
  forceFlush(): Promise<void>;
  /**
   * Flushes and closes the exporters; spans ended before it are not lost, unless the
   * collector does not take them within its `timeoutMs` (in all, not per batch: the trace
   * log and other exporters 10 s), or fails a batch meanwhile: then the rest are dropped,
   * counted in `stats.dropped` and logged once (`MESHLET_TRACE_SHUTDOWN_DROPPED`).
   * Call it from the service's graceful shutdown.
   */
  shutdown(): Promise<void>;
}

/** Every Tracing created and not shut down, newest last (at most NEWEST_LIVE_MAX). */
const liveTracings = new NewestLive<Tracing>();

/**
 * What `@Traced()` records through when not given a Tracing: the one serving the current
 * request (its SERVER span's context, or `Tracing.run`'s, says which), else the one most
 * recently created in this process (and not shut down).
 */
export function defaultTracing(): Tracing | undefined {
  return (activeContext().getValue(TRACING_KEY) as Tracing | undefined) ?? liveTracings.newest();
}

/** Creates tracing for a service. Invalid options throw MeshletError `MESHLET_BAD_OPTION`. */
export function createTracing(options: TracingOptions): Tracing {
  checkTracingOptions(options);
  const ratio = options.sampleRatio ?? 1;
  const clock = options.clock ?? systemClock;
  const exporters: SpanExporter[] = [...(options.exporters ?? [])];
  // A failing collector fails every batch: told once a minute per code, with the count.
  // The call metrics' overflow and a failed scrape too, which can come once per request.
  const logger = throttledLogger(options.logger ?? consoleLogger('warn', options.service), {
    clock,
    codes: [...EXPORT_LOG_CODES, ...METRICS_LOG_CODES],
  });
  if (options.log) exporters.push(new TraceLogExporter(options.log));
  const otlp =
    options.otlp === undefined
      ? undefined
      : options.otlp.protocol === 'grpc'
        ? new OtlpGrpcExporter(options.otlp, { clock, logger })
        : new OtlpHttpExporter(options.otlp, { clock, logger });
  if (otlp) exporters.push(otlp);
  // Shutdown waits for the collector one batch's timeout in all, not one per batch queued.
  const queues = exporters.map(
    (e) =>
      new BatchQueue(e, {
        ...options.batch,
        clock,
        logger,
        ...(e === otlp ? { shutdownTimeoutMs: options.otlp?.timeoutMs ?? DEFAULT_OTLP_TIMEOUT_MS } : {}),
      }),
  );

  const resourceAttrs: Record<string, ResourceAttributeValue> = { ...options.resourceAttributes, [Attr.serviceName]: options.service };
  if (options.version) resourceAttrs[Attr.serviceVersion] = options.version;
  if (options.namespace) resourceAttrs[Attr.serviceNamespace] = options.namespace;
  if (options.instanceId) resourceAttrs[Attr.serviceInstanceId] = options.instanceId;
  const root = ratio === 1 ? new AlwaysOnSampler() : new TraceIdRatioBasedSampler(ratio);
  const ids = options.idGenerator ?? new PooledIdGenerator();
  const resource = resourceFromAttributes(resourceAttrs);
  const provider = new TracerProvider({
    resource,
    sampler: new ParentBasedSampler({ root }),
    spanProcessors: queues,
    idGenerator: ids,
  });
  const tracer = provider.getTracer('@meshlet/trace', '0.1.0');
  const propagation = new TracePropagation(options.propagation);
  const metricsOptions = options.metrics === false ? undefined : (options.metrics ?? {});
  const clientMetrics = metricsOptions
    ? new CallMetrics({ ...metricsOptions, prefix: 'meshlet_client', logger, help: CLIENT_CALL_METRICS_HELP })
    : undefined;
  const serverMetrics = metricsOptions
    ? new CallMetrics({ ...metricsOptions, prefix: 'meshlet_server', logger, help: SERVER_CALL_METRICS_HELP })
    : undefined;
  const meter = options.meterProvider?.getMeter('@meshlet/trace', '0.1.0');
  const advice = { explicitBucketBoundaries: [...(metricsOptions?.buckets ?? DEFAULT_BUCKETS)] };
  const deps: SpanDeps = withSpanRecording({
    tracer,
    propagation,
    sampler: new HeadSampler(ratio, root, ids),
    records: {
      resource,
      // The scope OpenTelemetry's tracer gives its spans, so both group under one scope in a log line.
      scope: (tracer as { instrumentationScope?: InstrumentationScope }).instrumentationScope ?? {
        name: '@meshlet/trace',
        version: '0.1.0',
      },
      ended: (span) => {
        for (const q of queues) q.onEnd(span);
      },
      wall: new WallAnchors(clock),
    },
    clock,
    clientMetrics,
    serverMetrics,
    clientDuration: meter?.createHistogram('http.client.request.duration', {
      unit: 's',
      description: 'Duration of HTTP client requests.',
      advice,
    }),
    serverDuration: meter?.createHistogram('http.server.request.duration', {
      unit: 's',
      description: 'Duration of HTTP server requests.',
      advice,
    }),
  });

  let closing: Promise<void> | undefined;
  const tracing: Tracing & { readonly [SPAN_DEPS]: SpanDeps } = {
    [SPAN_DEPS]: deps,
    service: options.service,
    tracer,
    propagation,
    clientMetrics,
    serverMetrics,
    startServerSpan: (headers, method, route, info) => startServerSpan(deps, headers, method, route, info, tracing),
    startClientSpan: (parent, call) => startClientSpan(deps, parent ?? activeContext(), call),
    inSpan: (name, fn, spanOptions) => inInternalSpan(deps, name, fn, spanOptions?.attributes),
    active: activeContext,
    run: (ctx, fn) => runInContext(ctx.getValue(TRACING_KEY) === tracing ? ctx : ctx.setValue(TRACING_KEY, tracing), fn),
    metricsHandler: () =>
      servePrometheus(
        [clientMetrics, serverMetrics].filter((m) => m !== undefined),
        logger,
      ),
    get stats() {
      const sum = { exported: 0, dropped: 0, failed: 0, queued: 0 };
      for (const q of queues) {
        const s = q.stats;
        sum.exported += s.exported;
        sum.dropped += s.dropped;
        sum.failed += s.failed;
        sum.queued += s.queued;
      }
      return sum;
    },
    forceFlush: () => provider.forceFlush(),
    shutdown() {
      closing ??= provider.shutdown().finally(() => {
        // The one created before it takes over, if still live.
        liveTracings.remove(tracing);
      });
      return closing;
    },
  };
  liveTracings.add(tracing);
  return tracing;
}
