import type { Clock } from '@meshlet/core';
import { type Context, type Histogram, type Span, type SpanContext, type Tracer, trace } from '@opentelemetry/api';
import type { CallMetrics } from './call-metrics.js';
import type { RecordDeps } from './client-span-record.js';
import type { HeadSampler } from './head-sampling.js';
import type { OutboundHeaders, TracePropagation } from './propagation.js';
import type { SpanRecording } from './span-record.js';

/** What the span handles share with the Tracing that made them. */
export interface SpanDeps {
  readonly tracer: Tracer;
  readonly propagation: TracePropagation;
  /** The CLIENT span's sampling decision, before a span is built. */
  readonly sampler: HeadSampler;
  /** What a sampled CLIENT span (a ClientSpanRecord) needs. */
  readonly records: RecordDeps;
  /** SERVER and INTERNAL spans as Meshlet's own records (their sampler and limits); undefined: OpenTelemetry's tracer makes them. */
  readonly spanRecording: SpanRecording | undefined;
  readonly clock: Clock;
  readonly clientMetrics: CallMetrics | undefined;
  readonly serverMetrics: CallMetrics | undefined;
  /** OpenTelemetry histograms, only when a MeterProvider was given. */
  readonly clientDuration: Histogram | undefined;
  readonly serverDuration: Histogram | undefined;
}

/** Where a Tracing made by `createTracing` keeps its SpanDeps, for the attempt interceptor's head-sampled path. */
export const SPAN_DEPS: unique symbol = Symbol('@meshlet/trace span deps');

/**
 * Writes a head-sampled span's trace context (and the parent's baggage) into the headers,
 * as its span's `inject` would: W3C straight from the span context; other formats through
 * a context with the span (a non-recording one over the context when none is given). The
 * HTTP and gRPC client spans' one way.
 */
export function injectDecided(deps: SpanDeps, parent: Context, sc: SpanContext, span: Span | undefined, headers: OutboundHeaders): void {
  const { propagation } = deps;
  const written = deps.sampler.validIds ? propagation.injectValid(sc, parent, headers) : propagation.injectSpan(sc, parent, headers);
  if (!written) propagation.inject(span === undefined ? trace.setSpanContext(parent, sc) : trace.setSpan(parent, span), headers);
}
