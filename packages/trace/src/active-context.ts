import { AsyncLocalStorage } from 'node:async_hooks';
import { type Context, createContextKey, isSpanContextValid, context as otelContext, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';

// The span context of the code running now. Process-wide (one store even if two copies of
// this package are installed), as core does for MeshContext: two stores would lose parents.
// Kept beside OpenTelemetry's context because without a context manager registered (no
// OpenTelemetry SDK in the app) OpenTelemetry's context does not follow async code at all.
const STORE_KEY = Symbol.for('meshlet.trace.active');
const globals = globalThis as { [STORE_KEY]?: AsyncLocalStorage<Context> };
const storage: AsyncLocalStorage<Context> = globals[STORE_KEY] ?? new AsyncLocalStorage<Context>();
globals[STORE_KEY] = storage;

/**
 * Where OpenTelemetry's API (this major version's) keeps what is registered globally,
 * the context manager under `context`: its `context.active()` and `context.with()` use the
 * Noop manager (the root context; `fn` run as it is) when nothing is there. Read directly,
 * one property instead of the API's lookups, on every traced attempt.
 */
const OTEL_API: unique symbol = Symbol.for('opentelemetry.js.api.1') as never;
const otelGlobals = globalThis as { [OTEL_API]?: { readonly context?: unknown } };

/** No context manager registered at all: OpenTelemetry's active context is the root, and `with` makes none active. */
const noContextManager = (): boolean => otelGlobals[OTEL_API]?.context === undefined;

/**
 * The active trace context. `runInContext` sets both Meshlet's store and OpenTelemetry's
 * active context; when an application registered an OpenTelemetry context manager, the
 * spans it starts inside (`startActiveSpan`) are in OpenTelemetry's context only. So:
 * OpenTelemetry's active context when it holds a span (the store's, or one started inside
 * it), else the store (no context manager: OpenTelemetry's context is always the root).
 */
export function activeContext(): Context {
  if (noContextManager()) return storage.getStore() ?? ROOT_CONTEXT;
  const otel = otelContext.active();
  if (otel === ROOT_CONTEXT) return storage.getStore() ?? otel;
  return trace.getSpan(otel) === undefined ? (storage.getStore() ?? otel) : otel;
}

/**
 * Where a request's context keeps the Tracing serving it (set with its SERVER span, and by
 * `Tracing.run`): what `@Traced()` records through, rather than the last Tracing created.
 */
export const TRACING_KEY: symbol = createContextKey('meshlet.trace.tracing');

function enterOtel<T>(ctx: Context, fn: () => T): T {
  return otelContext.with(ctx, fn);
}

/**
 * Runs `fn` with `ctx` as the active trace context, for it and everything it starts: in
 * Meshlet's store and in OpenTelemetry's context (a no-op without a context manager), so
 * an application's own OpenTelemetry spans made inside are children of `ctx`'s span.
 */
export function runInContext<T>(ctx: Context, fn: () => T): T {
  return storage.run(ctx, enterOtel<T>, ctx, fn);
}

// Whether OpenTelemetry has a context manager: the Noop one (none registered, or one of an
// incompatible API version) runs a function without making any context active.
const PROBE = ROOT_CONTEXT.setValue(createContextKey('meshlet.trace.probe'), true);
const probeActive = (): boolean => otelContext.active() === PROBE;

/**
 * Runs `fn(arg)` with OpenTelemetry's tracing suppressed (`suppressTracing` of the active
 * context), so that an application's client instrumentation (undici's, http's, gRPC's)
 * neither records a span nor writes a second `traceparent` for a call Meshlet traces.
 * Without a context manager registered nothing could read the suppression: `fn` runs as
 * it is, and a context is not made (the governed call's hot path). A non-root active
 * context means a manager is registered; only at the root is it probed.
 */
export function withoutAppTracing<A, R>(fn: (arg: A) => R, arg: A): R {
  if (noContextManager()) return fn(arg);
  const active = otelContext.active();
  if (active === ROOT_CONTEXT && !otelContext.with(PROBE, probeActive)) return fn(arg);
  return otelContext.with(suppressTracing(active), fn, undefined, arg);
}

/**
 * Whether OpenTelemetry's active context holds a valid span: an application's own
 * OpenTelemetry traces the code running now, and its client instrumentation writes the
 * trace context of a call made here (as a child of that span).
 */
export function appSpanActive(): boolean {
  const sc = trace.getSpanContext(otelContext.active());
  return sc !== undefined && isSpanContextValid(sc);
}
