import { type CallOptions, Metadata, propagate as Propagate, status as Status } from '@grpc/grpc-js';
import {
  type AttemptChain,
  type AttemptFields,
  type AttemptTarget,
  composeAttempt,
  DeadlineExceededError,
  getTag,
  type Instance,
  type MeshContext,
  MeshletError,
  SystemTag,
  shadowOf,
  type TagLookup,
} from '@meshlet/core';
import { type Context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { ChannelPool } from './channel-pool.js';
import { routeGrpcLog } from './grpc-log.js';
import { deadlineMs, inboundDeadline } from './inbound-deadline.js';
import { type DroppedHeader, logDroppedHeader, setMetadata } from './outbound-metadata.js';
import type { GrpcClientPorts, GrpcClientSpan, GrpcPicker, GrpcTracing, RouteChoice } from './ports.js';
import { grpcPortOf } from './registration.js';
import { LIMITED_TRAILER, rpcNames } from './rpc-names.js';
import { rpcSpanObserver } from './rpc-span-observer.js';
import { grpcCodeOf, httpStatusOf, statusName } from './status-map.js';

/** Trailer on a status the mesh made up (an injected fault), naming the rule. */
export const FAULT_TRAILER = 'x-meshlet-fault';

/** What one attempt came back with. `status` is the HTTP equivalent the breakers classify. */
export interface GrpcAttemptResult {
  readonly status: number;
  readonly code: number;
  readonly details: string;
  readonly message: unknown;
  /** The response headers, when the server sent any. */
  readonly headers: Metadata | undefined;
  readonly trailers: Metadata;
  /** Made by the mesh (an injected fault), not by the instance: counts for no instance breaker. */
  readonly injected?: boolean;
}

/**
 * The result of an attempt a fault rule aborted (fault's `faultInterceptor` made `response`,
 * naming its rule in `x-meshlet-fault`): its HTTP status as gRPC maps it (503 →
 * UNAVAILABLE…), the rule in the `x-meshlet-fault` trailer, marked `injected` so it counts
 * for no instance. Unary attempts and stream starts alike.
 */
export function injectedResult(response: Response): GrpcAttemptResult {
  const code = grpcCodeOf(response.status);
  const rule = response.headers.get(FAULT_TRAILER) ?? 'fault';
  const trailers = new Metadata();
  trailers.set(FAULT_TRAILER, rule);
  return {
    status: httpStatusOf(code),
    code,
    details: `fault injected by rule ${rule}`,
    message: undefined,
    headers: undefined,
    trailers,
    injected: true,
  };
}

/** An attempt's target: routing's decision as it is when it names its instance's id, else one made from it. */
export function targetOf(choice: RouteChoice): AttemptTarget {
  if (choice.id !== undefined) return choice as AttemptTarget;
  const { instance, rule, lane, revision } = choice;
  return revision !== undefined ? { id: instance.id, instance, rule, lane, revision } : { id: instance.id, instance, rule, lane };
}

/**
 * An attempt that sent nothing: the instance refused the connection. Thrown (not returned)
 * with `syscall: 'connect'`, so the call executor treats it as it treats a refused HTTP
 * connection: an instance failure, retried on another instance for any method, with or
 * without a retry rule.
 */
export class NotSentError extends MeshletError {
  static readonly code = 'MESHLET_GRPC_NOT_SENT';
  readonly syscall = 'connect';
  readonly result: GrpcAttemptResult;
  constructor(result: GrpcAttemptResult) {
    super(NotSentError.code, result.details);
    this.result = result;
  }
}

/**
 * A stream the mesh could not open on its instance's channel: building it threw (a bug, or
 * input no check foresaw). The attempt, and so the stream, ends INTERNAL with this code
 * instead of the throw escaping grpc-js's connectivity callback (where it would end the
 * process); nothing was sent, and no breaker counts it against the instance.
 */
export class StreamOpenError extends MeshletError {
  static readonly code = 'MESHLET_GRPC_STREAM_OPEN_FAILED';
  constructor(cause: unknown) {
    // The cause's message cut short: it may quote what the stream was built from.
    const why = (cause instanceof Error ? cause.message : String(cause)).slice(0, 200);
    super(StreamOpenError.code, `the stream could not be opened: ${why}`, { cause });
  }
}

/**
 * Further instances a stream whose instance refused its connection tries, when the ports
 * name no other number: the unary calls' default (breaker's `CallDefaults.retries`, Istio's
 * default route retry policy: 2), so a stream gets as many tries as a unary call does.
 */
export const DEFAULT_STREAM_CONNECT_RETRIES = 2;

/** Cancelled by the caller (cancelWithStatus, `call.cancel()`), or its deadline passed. */
export class CallEnded extends MeshletError {
  readonly status: number;
  constructor(status: number, details: string) {
    super(status === Status.DEADLINE_EXCEEDED ? 'MESHLET_DEADLINE' : 'MESHLET_CANCELLED', details);
    this.status = status;
  }
}

/**
 * Whether a failed unary attempt may go to another instance: UNAVAILABLE, which gRPC
 * defines as transient and safe to retry (the server was not there, or refused before
 * doing anything: a draining server, a connection that never came up); and
 * RESOURCE_EXHAUSTED only when Meshlet's limiter refused it at the server's door — its
 * trailer says so, and the handler never ran. Any other RESOURCE_EXHAUSTED (an
 * application's quota, a message too large) would fail the same way again.
 */
export function retryable(result: Pick<GrpcAttemptResult, 'code' | 'trailers'>): boolean {
  if (result.code === Status.UNAVAILABLE) return true;
  return result.code === Status.RESOURCE_EXHAUSTED && result.trailers.get(LIMITED_TRAILER).length > 0;
}

/** A gRPC status for an error the governance raised. */
export function statusOfError(err: unknown): { code: number; details: string } {
  if (err instanceof NotSentError) return { code: err.result.code, details: err.result.details };
  if (err instanceof CallEnded) return { code: err.status, details: err.message };
  const message = err instanceof Error ? err.message : String(err);
  const code = err instanceof MeshletError ? err.code : undefined;
  switch (code) {
    case 'MESHLET_CIRCUIT_OPEN':
    case 'MESHLET_NO_INSTANCE':
    case 'MESHLET_UNKNOWN_SERVICE':
      return { code: Status.UNAVAILABLE, details: message };
    case 'MESHLET_TIMEOUT':
    case 'MESHLET_DEADLINE':
      return { code: Status.DEADLINE_EXCEEDED, details: message };
    case 'MESHLET_BULKHEAD_FULL':
    // The destination's outbound adaptive limit is full: a local resource (its concurrency
    // slots) is exhausted, as with a full bulkhead. Not UNAVAILABLE: gRPC clients and retry
    // policies retry UNAVAILABLE at once, and sending more calls at a destination whose
    // latency already rose is what the limit prevents; RESOURCE_EXHAUSTED is retried only
    // with backoff, if at all.
    case 'MESHLET_OUTBOUND_LIMITED':
    // The mesh follows its cap of destinations (`destinations.max`), each with a call in
    // flight: a local resource again, freed as those calls end; nothing was sent.
    case 'MESHLET_TOO_MANY_DESTINATIONS':
      return { code: Status.RESOURCE_EXHAUSTED, details: message };
    case 'MESHLET_CANCELLED':
      return { code: Status.CANCELLED, details: message };
    default:
      return { code: Status.INTERNAL, details: `meshlet: ${message}` };
  }
}

/** The call options a governed call reads: grpc-js's CallOptions and InterceptorOptions share them. */
export interface DeadlineOptions {
  readonly deadline?: Date | number | undefined;
  readonly parent?: CallOptions['parent'] | undefined;
  readonly propagate_flags?: number | undefined;
}

/**
 * The earliest of the call's own deadline, the deadline of the inbound gRPC call being
 * served (from the request context, as grpc-java's Context carries it) and its `parent`
 * server call's; the parent's cancellation passed on to `call.parentCancelled` — grpc-js's
 * `propagate_flags` (DEFAULTS: both). Nothing is allocated for a call without a parent.
 */
export function effectiveDeadline(
  options: DeadlineOptions,
  ctx: MeshContext | undefined,
  call: { parentCancelled(): void },
): number | undefined {
  let deadline = deadlineMs(options.deadline);
  // Inside a gRPC handler: the inbound call's deadline, unless this call's own is earlier.
  const inbound = ctx ? inboundDeadline(ctx) : undefined;
  if (inbound !== undefined && (deadline === undefined || inbound < deadline)) deadline = inbound;
  const parent = options.parent;
  if (!parent) return deadline;
  const flags = options.propagate_flags ?? Propagate.DEFAULTS;
  if (flags & Propagate.DEADLINE) {
    const inherited = deadlineMs(parent.getDeadline());
    if (inherited !== undefined) deadline = deadline === undefined ? inherited : Math.min(deadline, inherited);
  }
  if (flags & Propagate.CANCELLATION)
    (parent as unknown as { once(e: 'cancelled', f: () => void): void }).once('cancelled', () => call.parentCancelled());
  return deadline;
}

/**
 * The refusal of a call whose deadline (`effectiveDeadline`'s) had passed when it was made:
 * it is not sent, as a governed HTTP call is not. The inbound call's deadline (the request
 * context's, or its `parent`'s) is `MESHLET_DEADLINE`'s DeadlineExceededError, as HTTP's; the
 * call's own deadline, a CallEnded with DEADLINE_EXCEEDED. Undefined while time is left.
 */
export function pastDeadline(
  deadline: number | undefined,
  options: DeadlineOptions,
  service: string,
  path: string,
): MeshletError | undefined {
  if (deadline === undefined || deadline > Date.now()) return undefined;
  if (deadlineMs(options.deadline) === deadline)
    return new CallEnded(Status.DEADLINE_EXCEEDED, `deadline of ${path} exceeded before it was sent`);
  return new DeadlineExceededError(service, false);
}

const apis = new Map<string, string>();

/** `POST /pkg.Service/Method`, the API key breaker rules match; cached, as a process calls few methods. */
export function apiOf(path: string): string {
  let api = apis.get(path);
  if (api === undefined) {
    api = `POST ${path}`;
    // Bounded: paths come from method definitions.
    if (apis.size < 4096) apis.set(path, api);
  }
  return api;
}

/** Routing tags of a call: the request's, plus the destination and the gRPC method. */
export function routingTags(ctx: MeshContext, service: string, path: string): TagLookup {
  return (tag) => {
    if (tag === SystemTag.destinationService) return service;
    if (tag === 'destination.interface') return path;
    if (tag === 'request.http.method') return 'POST';
    return getTag(tag, ctx);
  };
}

/**
 * What every governed call to one destination shares, made once per client (or
 * interceptor): the ports, the channel pool, routing's picker for the service, and the
 * mesh headers of the last call as Metadata, kept while the SDK hands back the same
 * headers object (the same tags, caller and identity).
 */
export class Destination {
  readonly ports: GrpcClientPorts;
  readonly service: string;
  readonly pool: ChannelPool;
  /** The attempt chain of the unary calls (the ports', composed once per mesh; else the span observer alone). */
  readonly chain: AttemptChain;
  #headers: Readonly<Record<string, string>> | undefined;
  #headerMd: Metadata | undefined;
  #headerKeys: readonly string[] = [];
  #dropped: DroppedHeader | undefined;

  constructor(ports: GrpcClientPorts, service: string, pool: ChannelPool) {
    routeGrpcLog(ports.logger);
    this.ports = ports;
    this.service = service;
    this.pool = pool;
    this.chain = ports.attemptChain ?? defaultChain(ports);
  }

  /**
   * Routing's picker for the service: first instance, then untried ones. Asked of routing
   * per call, not kept for the client's life: a destination released while idle gets a new
   * picker when it is followed again.
   */
  get picker(): GrpcPicker {
    return this.ports.router.picker(this.service);
  }

  /** Notes the call (the directory releases a destination left idle) and waits for the directory to follow the service, the first time it is called. */
  ensure(): Promise<void> | undefined {
    const { directory } = this.ports;
    return directory.use(this.service) ? undefined : directory.ensure(this.service);
  }

  /**
   * The outbound metadata of a call: the caller's own, plus the mesh's headers (tags in the
   * configured dialects, pass-through headers, caller, identity), never replacing one the
   * caller set; and the caller's trace context as it came when no tracing is configured
   * (valid W3C trace context, as a context keeps it). A header gRPC metadata would refuse
   * (a value outside printable ASCII: an HTTP header may hold a TAB or a Latin-1 byte) is left
   * out, logged as `MESHLET_HEADER_DROPPED` (throttled, counted): the call goes without it.
   */
  outbound(ctx: MeshContext, own: Metadata): Metadata {
    const headers = this.ports.outboundHeaders(ctx, this.service);
    if (headers !== this.#headers || this.#headerMd === undefined) {
      const md = new Metadata();
      const keys: string[] = [];
      // Checked once per headers object (the SDK hands the same one back while they stay the same).
      for (const k in headers) if (setMetadata(md, k, headers[k] as string, this.dropped)) keys.push(k);
      this.#headerMd = md;
      this.#headerKeys = keys;
      this.#headers = headers;
    }
    let md: Metadata;
    if (isEmpty(own)) md = this.#headerMd.clone();
    else {
      md = own.clone();
      // Only the keys that passed the check above.
      for (const k of this.#headerKeys) if (md.get(k).length === 0) md.set(k, headers[k] as string);
    }
    if (!this.ports.tracing && ctx.trace && md.get('traceparent').length === 0) {
      // No tracing configured: pass the caller's trace context on as it came. A context keeps
      // it only as valid W3C trace context of printable ASCII (core's keptTraceContext), which
      // metadata takes.
      md.set('traceparent', ctx.trace.traceparent);
      if (ctx.trace.tracestate) md.set('tracestate', ctx.trace.tracestate);
    }
    return md;
  }

  /** Told of a header left out of a call's metadata: logged as `MESHLET_HEADER_DROPPED`, throttled by the mesh's logger. */
  get dropped(): DroppedHeader {
    this.#dropped ??= logDroppedHeader(this.ports.logger, this.service);
    return this.#dropped;
  }
}

const defaultChains = new WeakMap<GrpcClientPorts, AttemptChain>();

/** Ports without an attempt chain: the CLIENT span observer alone (with tracing), composed once per ports object. */
function defaultChain(ports: GrpcClientPorts): AttemptChain {
  let chain = defaultChains.get(ports);
  if (chain === undefined) {
    chain = composeAttempt(ports.tracing !== undefined ? [rpcSpanObserver(ports)] : []);
    defaultChains.set(ports, chain);
  }
  return chain;
}

function isEmpty(md: Metadata): boolean {
  for (const _ in md.getMap()) return false;
  return true;
}

/** A CLIENT span for one attempt, with OpenTelemetry's rpc.* semantic conventions. */
export interface RpcClientSpan {
  /** Writes the span's trace context into `md` (a stream's span: `capture` and `writeCaptured` in one). */
  inject(md: Metadata): void;
  /**
   * Takes the span's trace context (in the configured formats) now: the span observer's
   * `started` does, so a propagator that throws is the observer's throw (reported, the
   * call goes on), not the transport's.
   */
  capture(): void;
  /**
   * Writes the trace context `capture` took into `md`; nothing when it took none. An entry
   * gRPC metadata would refuse is left out and told to `dropped`.
   */
  writeCaptured(md: Metadata, dropped?: DroppedHeader): void;
  setAttribute(key: string, value: string | number): void;
  /**
   * Ends the span with the status; with the executor's record of the attempt, what the
   * layers below added while it ran, as HTTP's CLIENT span reads them: its attributes (the
   * instances whose breakers refused the pick, a shadow API breaker's key) and its shadow
   * notes (`io.meshlet.shadow`).
   */
  end(code: number, details: string, attempt?: AttemptMarks): void;
}

const ignoreDropped: DroppedHeader = () => {};

/** What the executor's record of an attempt adds to its span (see RpcClientSpan.end). */
// The record's own settle hook (a shadow deadline's note) ran before: the attempt chain's
// `settle` runs it ahead of the observers, this span's among them.
function addAttemptMarks(span: GrpcClientSpan, attempt: AttemptMarks): void {
  // Routing's own (instances of the pool it picked from skipped for open breakers), as HTTP's span reads them.
  const routed = attempt.target?.spanAttributes;
  if (routed !== undefined) for (const k in routed) span.setAttribute(k, routed[k] as string | number);
  const attributes = attempt.attributes;
  if (attributes !== undefined) {
    for (const k in attributes) span.setAttribute(k, attributes[k] as string | number);
    // An injected fault's rule under gRPC spans' own name too, beside fault's io.meshlet.fault.rule.
    const fault = attributes['io.meshlet.fault.rule'];
    if (fault !== undefined) span.setAttribute('io.meshlet.fault', fault);
  }
  const shadow = shadowOf({ target: attempt.target ?? NO_TARGET, notes: attempt.notes });
  if (shadow !== undefined) span.setAttribute('io.meshlet.shadow', shadow);
}

/** The executor's record of an attempt, and its target when the attempt ran on core's chain (routing's decision). */
type AttemptMarks = AttemptFields & { readonly target?: Pick<AttemptTarget, 'shadow' | 'spanAttributes'> };
const NO_TARGET: Pick<AttemptTarget, 'shadow'> = {};

/** What starting a CLIENT span reads from the ports. */
export type SpanPorts = Pick<GrpcClientPorts, 'tracing' | 'startClientSpan'>;

export function rpcSpan(
  ports: SpanPorts,
  parent: Context | undefined,
  path: string,
  service: string,
  choice: RouteChoice | undefined,
  attempt: number,
  instance: Instance | undefined = choice?.instance,
  extra?: Readonly<Record<string, string | number>>,
): RpcClientSpan | undefined {
  const tracing = ports.tracing;
  if (!tracing) return undefined;
  const names = rpcNames(path);
  const attributes: Record<string, string | number> = {
    'rpc.system': 'grpc',
    'rpc.service': names.service,
    'rpc.method': names.method,
    'service.peer.name': service,
  };
  if (instance) {
    attributes['server.address'] = instance.address;
    attributes['server.port'] = grpcPortOf(instance);
    attributes['io.meshlet.instance'] = instance.id;
  }
  if (choice?.rule) attributes['io.meshlet.route'] = choice.rule;
  if (choice?.lane) attributes['io.meshlet.lane'] = choice.lane;
  if (choice?.revision) attributes['io.meshlet.rules.revision'] = choice.revision;
  if (attempt > 0) attributes['io.meshlet.attempt'] = attempt;
  if (extra !== undefined) for (const k in extra) attributes[k] = extra[k] as string | number;
  const base = parent ?? tracing.active();
  const span =
    ports.startClientSpan !== undefined
      ? ports.startClientSpan(tracing, { name: names.spanName, attributes, parent: base })
      : otelSpan(tracing, names.spanName, attributes, base);
  let ended = false;
  let captured: Record<string, string> | undefined;
  return {
    inject(md) {
      this.capture();
      this.writeCaptured(md);
    },
    capture() {
      const carrier: Record<string, string> = {};
      span.inject(carrier);
      captured = carrier;
    },
    writeCaptured(md, dropped = ignoreDropped) {
      if (captured !== undefined) for (const k in captured) setMetadata(md, k, captured[k] as string, dropped);
    },
    setAttribute(key, value) {
      span.setAttribute(key, value);
    },
    end(code, details, rec) {
      if (ended) return;
      ended = true;
      if (rec !== undefined) addAttemptMarks(span, rec);
      span.setAttribute('rpc.grpc.status_code', code);
      // OpenTelemetry's rule for CLIENT spans: any non-OK status is an error.
      if (code !== Status.OK) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: `${statusName(code)}: ${details}` });
        span.setAttribute('error.type', statusName(code));
      }
      span.end();
    },
  };
}

/**
 * The span of a call refused before anything was sent (a breaker open, no instance, a full
 * bulkhead or the adaptive limit, a breaker's fallback): the logical call's CLIENT span,
 * with no instance, ended at once with the status the caller gets and `extra` naming what
 * refused (io.meshlet.circuit.*, io.meshlet.fallback). Unary calls and streams alike.
 */
export function refusalSpan(
  ports: SpanPorts,
  parent: Context | undefined,
  path: string,
  service: string,
  code: number,
  details: string,
  extra: Readonly<Record<string, string | number>> | undefined,
): void {
  rpcSpan(ports, parent, path, service, undefined, 0, undefined, extra)?.end(code, details);
}

/** A CLIENT span from OpenTelemetry's tracer, when the ports give no `startClientSpan`. */
function otelSpan(tracing: GrpcTracing, name: string, attributes: Record<string, string | number>, base: Context): GrpcClientSpan {
  const span = tracing.tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, base);
  const ctx = trace.setSpan(base, span);
  return {
    setAttribute: (key, value) => void span.setAttribute(key, value),
    setStatus: (status) => void span.setStatus(status),
    inject: (headers) => tracing.propagation.inject(ctx, headers),
    end: () => span.end(),
  };
}
