import {
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanStatus,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { ClientSpanRecord } from './client-span-record.js';
import { injectDecided, SPAN_DEPS, type SpanDeps } from './span-deps.js';
import { SpanRecord } from './span-record.js';

/** What an RPC CLIENT span starts with (see `startRpcClientSpan`). */
export interface RpcClientSpanOptions {
  /** The span name (for gRPC, `package.Service/Method`). */
  readonly name: string;
  /** Its attributes, in order. Taken as they are: the span may keep (and add to) this object. */
  readonly attributes: Record<string, string | number>;
  /** The parent context; the active one when undefined. */
  readonly parent?: Context | undefined;
}

/** What `startRpcClientSpan` reads of a Tracing (a Tracing made by `createTracing` carries its own parts too). */
export interface RpcSpanTracing {
  readonly tracer: Tracer;
  readonly propagation: { inject(context: Context, headers: Record<string, string>): void };
  active(): Context;
}

/** One RPC CLIENT span: its attributes, status and end, and its trace context for the request's metadata. */
export interface RpcClientSpanHandle {
  setAttribute(key: string, value: string | number): void;
  setStatus(status: SpanStatus): void;
  /** Writes the span's trace context (and the parent's baggage) into `headers`, in the configured formats. */
  inject(headers: Record<string, string>): void;
  end(): void;
}

/**
 * A CLIENT span for an RPC (a gRPC attempt), by the mechanism HTTP's attempt spans use
 * (`clientSpanInterceptor`): with a Tracing made by `createTracing`, sampling is decided
 * first by its head sampler; an unsampled call builds no span (only its trace context, for
 * `inject`), a sampled one is Meshlet's own ClientSpanRecord, exported through the
 * Tracing's span processors as OpenTelemetry's span would be. The same name, kind,
 * attributes, status, trace and parent ids and headers as `tracer.startSpan(name, { kind:
 * CLIENT, attributes }, parent)` (a test holds them equal). Any other Tracing, or tracing
 * suppressed under the parent: OpenTelemetry's tracer.
 */
export function startRpcClientSpan(tracing: RpcSpanTracing, options: RpcClientSpanOptions): RpcClientSpanHandle {
  const parent = options.parent ?? tracing.active();
  const deps = (tracing as { readonly [SPAN_DEPS]?: SpanDeps })[SPAN_DEPS];
  const decision = deps?.sampler.decide(parent);
  if (deps === undefined || decision === undefined) {
    const span = tracing.tracer.startSpan(options.name, { kind: SpanKind.CLIENT, attributes: options.attributes }, parent);
    return new OtelRpcSpan(tracing.propagation, span, trace.setSpan(parent, span));
  }
  if ((decision.context.traceFlags & TraceFlags.SAMPLED) === 0) return new UnsampledRpcSpan(deps, parent, decision.context);
  const record = new ClientSpanRecord(
    deps.records,
    options.name,
    decision.context,
    decision.parent,
    options.attributes as Attributes,
    undefined,
    deps.sampler.validIds,
  );
  return new RecordedRpcSpan(deps, parent, record);
}

/** A span over OpenTelemetry's tracer (a Tracing not made by `createTracing`, or suppressed tracing). */
class OtelRpcSpan implements RpcClientSpanHandle {
  readonly #propagation: RpcSpanTracing['propagation'];
  readonly #span: Span;
  readonly #context: Context;

  constructor(propagation: RpcSpanTracing['propagation'], span: Span, context: Context) {
    this.#propagation = propagation;
    this.#span = span;
    this.#context = context;
  }

  setAttribute(key: string, value: string | number): void {
    this.#span.setAttribute(key, value);
  }

  setStatus(status: SpanStatus): void {
    this.#span.setStatus(status);
  }

  inject(headers: Record<string, string>): void {
    this.#propagation.inject(this.#context, headers);
  }

  end(): void {
    this.#span.end();
  }
}

/** An unsampled call: no span, only the decision's span context for the metadata. */
class UnsampledRpcSpan implements RpcClientSpanHandle {
  readonly #deps: SpanDeps;
  readonly #parent: Context;
  readonly #context: SpanContext;

  constructor(deps: SpanDeps, parent: Context, context: SpanContext) {
    this.#deps = deps;
    this.#parent = parent;
    this.#context = context;
  }

  setAttribute(): void {}
  setStatus(): void {}
  end(): void {}

  inject(headers: Record<string, string>): void {
    injectDecided(this.#deps, this.#parent, this.#context, undefined, headers);
  }
}

/** A sampled call: Meshlet's span record. */
class RecordedRpcSpan implements RpcClientSpanHandle {
  readonly #deps: SpanDeps;
  readonly #parent: Context;
  readonly #span: ClientSpanRecord;

  constructor(deps: SpanDeps, parent: Context, span: ClientSpanRecord) {
    this.#deps = deps;
    this.#parent = parent;
    this.#span = span;
  }

  setAttribute(key: string, value: string | number): void {
    this.#span.setAttribute(key, value);
  }

  setStatus(status: SpanStatus): void {
    this.#span.setStatus(status);
  }

  inject(headers: Record<string, string>): void {
    injectDecided(this.#deps, this.#parent, this.#span.spanContext(), this.#span, headers);
  }

  end(): void {
    this.#span.end();
  }
}

/** What an RPC SERVER span starts with (see `startRpcServerSpan`). */
export interface RpcServerSpanOptions {
  /** The span name (for gRPC, `package.Service/Method`). */
  readonly name: string;
  /** Its attributes, in order. Taken as they are: the span may keep (and add to) this object. */
  readonly attributes: Record<string, string | number>;
  /** The caller's context, extracted from the request's metadata. */
  readonly parent: Context;
}

/**
 * A SERVER span for an inbound RPC (a gRPC call), by the mechanism HTTP's SERVER spans use
 * (`startServerSpan`): with a Tracing made by `createTracing`, sampling is decided first by
 * its head sampler; an unsampled call gets its span context alone (a non-recording span), a
 * sampled one is Meshlet's own span record (kind SERVER), exported through the Tracing's
 * span processors as OpenTelemetry's span would be. The same name, kind, attributes, ids,
 * parent and status rules as `tracer.startSpan(name, { kind: SERVER, attributes }, parent)`
 * (a test holds them equal). Any other Tracing, or tracing suppressed under the parent:
 * OpenTelemetry's tracer.
 */
export function startRpcServerSpan(tracing: Pick<RpcSpanTracing, 'tracer'>, options: RpcServerSpanOptions): Span {
  const { name, attributes, parent } = options;
  const recording = (tracing as { readonly [SPAN_DEPS]?: SpanDeps })[SPAN_DEPS]?.spanRecording;
  const decision = recording?.sampler.decide(parent, SpanKind.SERVER);
  if (recording === undefined || decision === undefined)
    return tracing.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  if ((decision.context.traceFlags & TraceFlags.SAMPLED) === 0) return trace.wrapSpanContext(decision.context);
  return new SpanRecord(recording, SpanKind.SERVER, name, decision, attributes as Attributes, Object.keys(attributes).length);
}
