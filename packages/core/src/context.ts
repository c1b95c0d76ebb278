import { AsyncLocalStorage } from 'node:async_hooks';
import { consoleLogger, type Logger } from './logger.js';
import { pathTagValue } from './request-path.js';
import { putTag, SystemTag, type TagDropReason, TagLimits } from './tags.js';
import { keptTraceContext } from './trace-headers.js';

/** Who is calling: read from the inbound caller header. */
export interface Caller {
  readonly service?: string;
  readonly version?: string;
  readonly namespace?: string;
  readonly instance?: string;
}

/** The inbound request's API, for system tags and rules. */
export interface RequestInfo {
  readonly method: string;
  readonly path: string;
}

/** W3C trace context as it arrived, when valid (keptTraceContext); the trace package turns it into spans. */
export interface TraceHeaders {
  readonly traceparent: string;
  readonly tracestate?: string;
}

/**
 * Everything Meshlet knows about the request being served. Lives in AsyncLocalStorage
 * for the duration of the handler, so outbound calls made anywhere inside it carry it on.
 */
export interface MeshContext {
  readonly caller: Caller;
  /** Custom tags: propagate to every downstream hop. Change them with setTag. */
  readonly tags: ReadonlyMap<string, string>;
  readonly request: RequestInfo | undefined;
  readonly trace: TraceHeaders | undefined;
  /** The mesh serving this request (opaque to core; the SDK's module-level fetch uses it). */
  readonly owner: unknown;
  readonly logger: Logger;
}

export interface ContextInit {
  readonly caller?: Caller | undefined;
  readonly tags?: Iterable<readonly [string, string]> | undefined;
  /**
   * A Map of tags that the context takes as its own, not copied (`tags` is then ignored):
   * the caller gives it up and must not use it again. Every tag in it must have passed
   * core's per-tag checks (`checkTag`, as `putTag` does); over `TagLimits.maxTags` it is
   * copied under the bounds as `tags` would be. The inbound path builds its Map this way.
   */
  readonly ownTags?: Map<string, string> | undefined;
  readonly request?: RequestInfo | undefined;
  readonly trace?: TraceHeaders | undefined;
  readonly owner?: unknown;
  readonly logger?: Logger | undefined;
}

// One store per process even if two copies of @meshlet/core get installed side by side:
// two stores would silently lose the context between packages.
const STORE_KEY = Symbol.for('meshlet.context.store');
const globals = globalThis as { [STORE_KEY]?: AsyncLocalStorage<MeshContext> };
const storage: AsyncLocalStorage<MeshContext> = globals[STORE_KEY] ?? new AsyncLocalStorage<MeshContext>();
globals[STORE_KEY] = storage;

const fallbackLogger = consoleLogger('warn');

const EMPTY: MeshContext = Object.freeze({
  caller: Object.freeze({}),
  tags: new Map<string, string>(),
  request: undefined,
  trace: undefined,
  owner: undefined,
  logger: fallbackLogger,
});

/** Builds a context; tags over a bound are dropped and logged, never thrown. */
export function createContext(init: ContextInit = {}): MeshContext {
  const logger = init.logger ?? fallbackLogger;
  const own = init.ownTags;
  let tags: Map<string, string>;
  if (own !== undefined && own.size <= TagLimits.maxTags) tags = own;
  else {
    tags = new Map<string, string>();
    const from = own ?? init.tags;
    if (from) for (const [k, v] of from) warnDropped(logger, k, putTag(tags, k, v));
  }
  // The trace context is kept only as W3C trace context (keptTraceContext): every context's
  // is then one any outbound call (HTTP or gRPC metadata) can carry.
  const given = init.trace;
  const trace =
    given === undefined
      ? undefined
      : keptTraceContext(given, (header, reason) =>
          logger.warn('trace header not kept', { code: 'MESHLET_HEADER_DROPPED', header, reason }),
        );
  return {
    caller: init.caller ?? EMPTY.caller,
    tags,
    request: init.request,
    trace,
    owner: init.owner,
    logger,
  };
}

/** The current request's context; outside any request, an empty one (never undefined). */
export function currentContext(): MeshContext {
  return storage.getStore() ?? EMPTY;
}

/** Runs `fn` with `context` as the current context, for it and everything it starts. */
export function runWithContext<T>(context: MeshContext, fn: () => T): T {
  return storage.run(context, fn);
}

/**
 * Sets a custom tag on the current request; it travels to every downstream hop.
 * Returns false (and logs why) when there is no request or the tag is over a bound.
 */
export function setTag(key: string, value: string): boolean {
  const ctx = storage.getStore();
  if (!ctx) {
    fallbackLogger.warn('setTag outside a request: ignored', { code: 'MESHLET_NO_CONTEXT', key });
    return false;
  }
  const reason = putTag(ctx.tags as Map<string, string>, key, value);
  warnDropped(ctx.logger, key, reason);
  return reason === undefined;
}

/**
 * Runs `fn` in a child context that has the current tags plus `tags`; the parent is not
 * changed. The child gets a fork of every extension attached to the parent.
 */
export function withTags<T>(tags: Readonly<Record<string, string>>, fn: () => T): T {
  const parent = currentContext();
  const child = createContext({ ...parent, tags: [...parent.tags, ...Object.entries(tags)] });
  const attached = attachedTo(parent);
  if (attached) (child as Slotted)[SLOT] = new Map([...attached].map(([key, ext]) => [key, ext.fork()]));
  return storage.run(child, fn);
}

/**
 * Per-request state that another package keeps beside a context (the propagation package
 * keeps tag scopes and pass-through headers this way). A child context made by withTags
 * gets `fork()` of it, so that changes in the child do not reach the parent.
 */
export interface ContextExtension {
  fork(): ContextExtension;
}

// A context's extensions are kept on the context object itself, under a global symbol (one
// for every copy of @meshlet/core in the process, as the store is), so they live exactly as
// long as the context. Not a WeakMap keyed by the context: a WeakMap entry per request cost
// ~0.5 µs of CPU (and GC work) on every inbound request.
const SLOT = Symbol.for('meshlet.context.extensions.slot');
type Slotted = { [SLOT]?: Map<symbol, ContextExtension> };

// Where copies of @meshlet/core before the slot kept them, and where a context that cannot
// take a property (frozen, sealed) keeps them: read as well, so that an extension attached
// by such a copy is found here.
const EXTENSIONS_KEY = Symbol.for('meshlet.context.extensions');
const extensionGlobals = globalThis as { [EXTENSIONS_KEY]?: WeakMap<MeshContext, Map<symbol, ContextExtension>> };
const extensions: WeakMap<MeshContext, Map<symbol, ContextExtension>> = extensionGlobals[EXTENSIONS_KEY] ?? new WeakMap();
extensionGlobals[EXTENSIONS_KEY] = extensions;

function attachedTo(ctx: MeshContext): Map<symbol, ContextExtension> | undefined {
  return (ctx as Slotted)[SLOT] ?? extensions.get(ctx);
}

/** Keeps `extension` beside `ctx` under `key` (a symbol of the attaching package's own). */
export function attachExtension(ctx: MeshContext, key: symbol, extension: ContextExtension): void {
  if (ctx === EMPTY) throw new TypeError('attachExtension: not on the empty context outside a request');
  const attached = attachedTo(ctx);
  if (attached) {
    attached.set(key, extension);
    return;
  }
  const own = new Map<symbol, ContextExtension>();
  own.set(key, extension);
  if (Object.isExtensible(ctx)) (ctx as Slotted)[SLOT] = own;
  else extensions.set(ctx, own);
}

/** The extension attached to `ctx` under `key`, if any. */
export function extensionOf<T extends ContextExtension>(ctx: MeshContext, key: symbol): T | undefined {
  return attachedTo(ctx)?.get(key) as T | undefined;
}

/** How each system tag is read from a context: the one list of system tags a request has. */
const SYSTEM_TAG_READERS: ReadonlyMap<string, (ctx: MeshContext) => string | undefined> = new Map([
  [SystemTag.sourceService, (ctx: MeshContext) => ctx.caller.service],
  [SystemTag.sourceVersion, (ctx: MeshContext) => ctx.caller.version],
  [SystemTag.sourceNamespace, (ctx: MeshContext) => ctx.caller.namespace],
  [SystemTag.sourceInstance, (ctx: MeshContext) => ctx.caller.instance],
  [SystemTag.requestMethod, (ctx: MeshContext) => ctx.request?.method],
  // As rules compare it: folded (pathTagValue); the context keeps the canonical path as it came.
  [SystemTag.requestPath, (ctx: MeshContext) => (ctx.request === undefined ? undefined : pathTagValue(ctx.request.path))],
]);

/** The system tags of a context, by SystemTag name; absent ones are left out. */
export function systemTags(ctx: MeshContext): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, read] of SYSTEM_TAG_READERS) {
    const value = read(ctx);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** A tag of the current request: a system tag by its SystemTag name, else a custom tag. */
export function getTag(key: string, ctx: MeshContext = currentContext()): string | undefined {
  const read = SYSTEM_TAG_READERS.get(key);
  return read ? read(ctx) : ctx.tags.get(key);
}

function warnDropped(logger: Logger, key: string, reason: TagDropReason | undefined): void {
  if (reason) logger.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', key: key.slice(0, 128), reason });
}
