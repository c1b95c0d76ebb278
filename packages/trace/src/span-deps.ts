import type { Clock } from '@meshlet/core';
import type { Histogram, Tracer } from '@opentelemetry/api';
import type { CallMetrics } from './call-metrics.js';
import type { RecordDeps } from './client-span-record.js';
import type { HeadSampler } from './head-sampling.js';
import type { TracePropagation } from './propagation.js';
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
