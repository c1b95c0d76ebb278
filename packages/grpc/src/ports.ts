import type { AttemptChain, AttemptFields, AttemptTarget, Clock, Instance, Logger, MeshContext, TagLookup } from '@meshlet/core';
import type { Context, Span, SpanStatus, Tracer } from '@opentelemetry/api';

/**
 * What @meshlet/grpc needs from the rest of the mesh, as interfaces: the package imports
 * @meshlet/core and no sibling, and `meshlet` (the SDK) passes its router, call executor,
 * directory, tracing and inbound admission in (`mesh.grpc`). Each port is the slice of the
 * sibling's public API the gRPC path calls, so the SDK's objects fit as they are.
 */

/**
 * An instance routing chose, with the decision's rule and lane for the span. @meshlet/route's
 * RouteDecision fits (with `id`, it is the attempt's target as it is; without, the unary
 * call makes a target of it).
 */
export interface RouteChoice {
  /** The instance's id; absent: the instance's own. */
  readonly id?: string;
  readonly instance: Instance;
  readonly rule: string | undefined;
  readonly lane: string | undefined;
  /**
   * Store revision of the rule document whose route section decided (0 or absent: none in
   * force, or rules set directly). The CLIENT span writes it as `io.meshlet.rules.revision`,
   * as HTTP's does.
   */
  readonly revision?: number;
}

/**
 * @meshlet/route's picker for one destination (`Router.picker`): the first attempt's
 * instance, then one not yet tried, nearest locality first.
 */
export interface GrpcPicker {
  /** Throws NoInstanceError when no instance is left. */
  first(tags: TagLookup): RouteChoice;
  /** An instance not in `tried`, or undefined when every usable one was tried. */
  next(tags: TagLookup, tried: ReadonlySet<string>): RouteChoice | undefined;
}

/** @meshlet/route's Router: the same tables as HTTP calls (rules, weights, lanes, nearby, ejected instances left out). */
export interface GrpcRouter {
  /** Throws NoInstanceError when no instance is left. */
  decide(service: string, tags: TagLookup): RouteChoice;
  /** The picker of `service`, made once per destination while it is followed: unary attempts and their retries pick through it. */
  picker(service: string): GrpcPicker;
}

/**
 * The executor's record of one attempt (@meshlet/breaker's AttemptRecord): its number,
 * signal and breaker state, and the abort a transport that cancels by itself hooks.
 */
export interface ExecutorAttempt extends AttemptFields {
  readonly call: unknown;
  readonly target: AttemptTarget;
  /**
   * The attempt's abort when the executor times it (its timeout, the caller's signal):
   * `onAbort` sets the one hook run then, without making an AbortSignal. Undefined
   * without a timeout. The attempt hooks itself (its `abortAttempt`), the one form used
   * here; the executor's AttemptAbort also takes a function, which this port does not need.
   */
  readonly abort?: { onAbort(hook: { abortAttempt(reason: unknown): void } | undefined): void } | undefined;
}

/** One governed call as @meshlet/breaker's CallExecutor drives it (its `GovernedCall`). */
export interface ExecutorCall<R extends { readonly status: number }> {
  readonly service: string;
  readonly method: string;
  readonly path?: string;
  readonly api?: string;
  /** The caller's signal: aborted, the call ends and its outcome counts against no upstream. */
  readonly signal?: AbortSignal | undefined;
  readonly retryable?: boolean;
  /** True when `send` reads its abort from the attempt's record: the executor then passes no signal. */
  readonly abortsOnRecord?: boolean;
  /**
   * True when the promise `send` returns settles by itself once the record's abort aborts:
   * the executor then awaits a timed attempt as it is, without a racing promise.
   */
  readonly settlesOnAbort?: boolean;
  pick(tried: ReadonlySet<string>): AttemptTarget | undefined;
  /** `attempt`: the executor's record of the attempt (its number, abort, breaker state). */
  send(target: AttemptTarget, signal: AbortSignal | undefined, attempt?: ExecutorAttempt): Promise<R>;
  /** Told once per attempt `send` was given a record for, when it settled (see @meshlet/breaker's GovernedCall). */
  settled?(attempt: ExecutorAttempt, result: R | undefined, error: unknown): void;
  /** A Response the mesh made (an injected fault, a breaker's fallback) as the call's result. */
  fromResponse?(response: Response): R;
  discard?(result: R): void;
  /** True when the result was made by the mesh (an injected fault): no instance breaker counts it. */
  injected?(result: R): boolean;
  /** True when an answer that is no failure is worth another instance (see @meshlet/breaker's GovernedCall). */
  retryableAnswer?(result: R): boolean;
}

/** @meshlet/breaker's CallExecutor: service and API breakers, per-attempt timeout, retries with a budget, instance breakers. */
export interface GrpcExecutor {
  call<R extends { readonly status: number }>(call: ExecutorCall<R>): Promise<R | Response>;
}

/**
 * One try of a stream on its instance's breaker (@meshlet/breaker's TrackedAttempt): settles
 * once, the first of its methods called.
 */
export interface GrpcStreamAttempt {
  /** The instance ended the stream with `status` (the gRPC status's HTTP equivalent), counted as a unary answer's; true when a failure. */
  answered(status: number, durationMs?: number): boolean;
  /** The instance sent the stream's response headers: a half-open probe's success at once (any other try waits for its end). */
  responded(durationMs?: number): void;
  /** The try failed (its connection could not be made): a failure of the instance, unless `callerAborted`. */
  failed(error: unknown, callerAborted: boolean, durationMs?: number): void;
  /** Says nothing about the instance (the caller's cancel or deadline, an injected fault): the permit goes back. */
  released(): void;
}

/**
 * The executor's governance of one stream (@meshlet/breaker's TrackedCall, from
 * `CallExecutor.track`): the destination's instance breakers and retry budget, for the
 * tries a stream makes outside the executor.
 */
export interface GrpcStreamGovernance {
  /** The stream's permits on its service and API breakers: settled by how the stream ends, or (a probe's) by its first answer. */
  readonly outcome: GrpcStreamAttempt;
  /** The breaker's permit for a try of `instanceId`; undefined when its breaker refuses (open, its probes taken). */
  attempt(instanceId: string): GrpcStreamAttempt | undefined;
  /**
   * Takes one further try from the destination's retry budget; false when it is spent.
   * `reason`: why (a stream is tried again only when its connection was refused), for the
   * retry counts (`meshlet_retries_total`).
   */
  retry(reason: 'not-sent'): boolean;
}

/** The SDK's service directory: follows a service's instances and rules from its first call on. */
export interface GrpcDirectory {
  /** Notes a call to `service` (an idle destination is released) and says whether it is followed and ready. */
  use(service: string): boolean;
  ensure(service: string): Promise<void>;
}

/** @meshlet/trace's Tracing, the part spans need: the tracer and the configured propagation. */
export interface GrpcTracing {
  readonly tracer: Tracer;
  readonly propagation: {
    extract(headers: Readonly<Record<string, string | readonly string[] | undefined>>, base?: Context): Context;
    inject(context: Context, headers: Record<string, string>): void;
  };
  active(): Context;
  run<T>(context: Context, fn: () => T): T;
}

/** One CLIENT span as @meshlet/trace's `startRpcClientSpan` hands it out (its RpcClientSpanHandle). */
export interface GrpcClientSpan {
  setAttribute(key: string, value: string | number): void;
  setStatus(status: SpanStatus): void;
  /** Writes the span's trace context (and the parent's baggage) into `headers`, in the configured formats. */
  inject(headers: Record<string, string>): void;
  end(): void;
}

export interface GrpcClientPorts {
  readonly directory: GrpcDirectory;
  readonly router: GrpcRouter;
  readonly executor: GrpcExecutor;
  readonly tracing: GrpcTracing | undefined;
  /**
   * Starts an attempt's CLIENT span over `tracing` (@meshlet/trace's `startRpcClientSpan`:
   * head sampling first, no span when unsampled, Meshlet's own span record when sampled).
   * Without it, spans are started with `tracing.tracer`.
   */
  readonly startClientSpan?: (
    tracing: GrpcTracing,
    options: { readonly name: string; readonly attributes: Record<string, string | number>; readonly parent: Context },
  ) => GrpcClientSpan;
  /**
   * The attempt chain a unary call's attempts run, and a stream's start as one attempt
   * (core's `composeAttempt`), composed once per mesh by the sdk, outermost first as
   * HTTP's: the CLIENT span and client metrics (`rpcSpanObserver`),
   * routing's in-flight count (`Router.inFlight`), fault injection (@meshlet/fault's
   * `faultInterceptor`), then the call's own transport. Absent: the span observer alone
   * (when `tracing` is given), and nothing counts attempts in flight.
   */
  readonly attemptChain?: AttemptChain;
  /**
   * Records one finished unary attempt, or one ended stream, in the client call metrics, as HTTP's attempts are
   * (@meshlet/trace's `CallMetrics`: `meshlet_client_*` in the admin endpoint's Prometheus
   * output, its bound on APIs per destination): the destination, the API (`POST
   * /pkg.Service/Method`, the breaker rules' key), the attempt's time on `clock`, and the
   * status name when not OK (`UNAVAILABLE`). Told by the span observer, so only with
   * `tracing`. Absent: no metrics.
   */
  readonly recordCall?: (service: string, api: string, durationMs: number, errorType: string | undefined) => void;
  /**
   * The span attributes a governance error carries (@meshlet/trace's `errorAttributesOf`:
   * a refusal's `io.meshlet.circuit.*`), for the span of a call refused before any attempt.
   */
  readonly errorAttributes?: (error: unknown) => Readonly<Record<string, string | number>> | undefined;
  /**
   * The mesh headers of an outbound call, as metadata: the request's tags in the configured
   * dialects, this service's caller header and (auth on) its signed identity for `service`.
   * The same object comes back while those headers stay the same (the client keeps their
   * Metadata for it), so it is never changed once returned.
   */
  readonly outboundHeaders: (ctx: MeshContext, service: string) => Readonly<Record<string, string>>;
  /**
   * The destination's limits, when the mesh has any (its bulkhead and its outbound adaptive
   * limit, composed by the sdk as around HTTP calls): runs a unary call's attempts (the
   * whole executor call, retries included) in one of `service`'s slots, or throws at once,
   * before routing (`MESHLET_BULKHEAD_FULL`, `MESHLET_OUTBOUND_LIMITED`: RESOURCE_EXHAUSTED).
   */
  readonly outboundLimit?: <T>(service: string, fn: () => Promise<T>, signal: AbortSignal) => Promise<T>;
  /**
   * A slot of the destination's bulkhead for one stream, held from the stream's start to
   * its end, when the mesh has bulkheads (as Envoy's `max_requests` counts active streams):
   * the stream waits in the bulkhead's queue (given up when the caller cancels or the
   * deadline passes), or is refused at once before routing (`MESHLET_BULKHEAD_FULL`:
   * RESOURCE_EXHAUSTED). The adaptive limit does not count streams.
   */
  readonly streamSlot?: (service: string, signal: AbortSignal) => Promise<() => void>;
  /**
   * Further instances a stream tries when its instance's connection cannot be made (nothing
   * was sent; see client.ts's MeshCall). Default `DEFAULT_STREAM_CONNECT_RETRIES` (2, the
   * unary calls' default retries, breaker's `CallDefaults.retries`); 0 turns it off.
   */
  readonly streamConnectRetries?: number;
  /**
   * The destination's breakers and retry budget for a stream (@meshlet/breaker's
   * `CallExecutor.track`, wired by the sdk): the stream passes its service and API
   * breakers as a unary call does (`path`, the method's, for the API rules: `POST path`),
   * refused with a thrown error when one is open (CircuitOpenError, UNAVAILABLE), their
   * permits settled by the stream's end (`outcome`); each try takes its instance's permit
   * and records its outcome (a refused connection a failure, the stream's status as a
   * unary answer's), so the mesh's outlier detection ejects an instance streams cannot
   * reach; each further try is paid from the retry budget. `mayRetry`: the stream may try
   * again (count it in the budget). Absent, or undefined for a service: streams count on
   * no breaker and their tries on no budget.
   */
  readonly trackStream?: (service: string, mayRetry: boolean, path: string) => GrpcStreamGovernance | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** Why an inbound call was refused before its handler ran. */
export interface Refusal {
  readonly code: number;
  readonly details: string;
  /** Sent as trailers (e.g. `retry-after`, `x-meshlet-limited`). */
  readonly trailers: Readonly<Record<string, string>>;
  /** `error.type` of the span: `auth_denied`, `rate_limited`. */
  readonly errorType: string;
}

/** Admitted: `release` gives back the concurrency slots the call holds, once it ends. */
export interface Admitted {
  readonly release: () => void;
}

export interface GrpcServerPorts {
  /**
   * The context of an inbound call from its metadata (as lower-case headers) and path
   * (`/pkg.Service/Method`): tags in every accepted dialect, the caller (verified when auth
   * is on), trace headers.
   */
  readonly context: (headers: Readonly<Record<string, string | string[]>>, path: string) => MeshContext;
  /** Auth rules, then rate limits, for a call to `path` in `ctx`. */
  readonly admit: (ctx: MeshContext, path: string) => Admitted | Refusal | Promise<Admitted | Refusal>;
  readonly tracing: GrpcTracing | undefined;
  /**
   * Starts an inbound call's SERVER span over `tracing` (@meshlet/trace's
   * `startRpcServerSpan`: head sampling first, a non-recording span when unsampled,
   * Meshlet's own span record when sampled). Without it: `tracing.tracer.startSpan`.
   */
  readonly startServerSpan?: (
    tracing: GrpcTracing,
    options: { readonly name: string; readonly attributes: Record<string, string | number>; readonly parent: Context },
  ) => Span;
  readonly logger: Logger;
}
