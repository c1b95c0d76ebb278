import { type Attributes, type Span, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { activeContext, runInContext } from './active-context.js';
import { Attr, errorTypeOf } from './attributes.js';
import type { SpanDeps } from './span-deps.js';
import { SpanRecord, spanAttributes } from './span-record.js';

/**
 * Runs `fn` inside an INTERNAL span child of the active context (`Tracing.inSpan`, what
 * `@Traced` uses); the span ends when the returned promise settles, with `error.type` and
 * an error status when it rejects. Sampling is decided first (the head sampler): an unsampled
 * span is its span context alone, a sampled one Meshlet's own span record (kind INTERNAL),
 * as OpenTelemetry's tracer would make them (a test holds them equal). Without span
 * recording, or with tracing suppressed: OpenTelemetry's tracer.
 */
export async function inInternalSpan<T>(deps: SpanDeps, name: string, fn: () => Promise<T>, given: Attributes | undefined): Promise<T> {
  const parent = activeContext();
  const recording = deps.spanRecording;
  const decision = recording?.sampler.decide(parent, SpanKind.INTERNAL);
  let span: Span;
  if (recording === undefined || decision === undefined)
    span = deps.tracer.startSpan(name, { kind: SpanKind.INTERNAL, ...(given ? { attributes: given } : {}) }, parent);
  else if ((decision.context.traceFlags & TraceFlags.SAMPLED) === 0) span = trace.wrapSpanContext(decision.context);
  else {
    const { attributes, count, dropped } = spanAttributes(given, recording.limits);
    span = new SpanRecord(recording, SpanKind.INTERNAL, name, decision, attributes, count, dropped);
  }
  try {
    return await runInContext(trace.setSpan(parent, span), fn);
  } catch (error) {
    span.setAttribute(Attr.errorType, errorTypeOf(error));
    span.setStatus({ code: SpanStatusCode.ERROR, ...(error instanceof Error ? { message: error.message } : {}) });
    throw error;
  } finally {
    span.end();
  }
}
