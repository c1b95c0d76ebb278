import { AsyncLocalStorage } from 'node:async_hooks';
import { type Context, context as otelContext } from '@opentelemetry/api';

// The span context of the code running now. Process-wide (one store even if two copies of
// this package are installed), as core does for MeshContext: two stores would lose parents.
const STORE_KEY = Symbol.for('meshlet.trace.active');
const globals = globalThis as { [STORE_KEY]?: AsyncLocalStorage<Context> };
const storage: AsyncLocalStorage<Context> = globals[STORE_KEY] ?? new AsyncLocalStorage<Context>();
globals[STORE_KEY] = storage;

/**
 * The active trace context: the one set by `runInContext` (a server span, a `@Traced`
 * method), else OpenTelemetry's active context, so that spans join an application's own
 * OpenTelemetry instrumentation when it registered a context manager.
 */
export function activeContext(): Context {
  return storage.getStore() ?? otelContext.active();
}

/** Runs `fn` with `ctx` as the active trace context, for it and everything it starts. */
export function runInContext<T>(ctx: Context, fn: () => T): T {
  return storage.run(ctx, fn);
}
