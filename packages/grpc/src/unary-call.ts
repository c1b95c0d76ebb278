import { EventEmitter } from 'node:events';
import {
  type CallOptions,
  type Client,
  type ClientUnaryCall,
  type InterceptingListener,
  type Interceptor,
  Metadata,
  type MethodDefinition,
  type ServiceDefinition,
  type ServiceError,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import {
  type AttemptResult,
  type AttemptTarget,
  type Attempt as ChainAttempt,
  currentContext,
  type MeshContext,
  newAttempt,
  type OutboundCall,
  sendSettled,
  type TagLookup,
} from '@meshlet/core';
import type { Context } from '@opentelemetry/api';
import type { PooledChannel } from './channel-pool.js';
import {
  apiOf,
  CallEnded,
  type DeadlineOptions,
  type Destination,
  effectiveDeadline,
  type GrpcAttemptResult,
  injectedResult,
  NotSentError,
  pastDeadline,
  type RpcClientSpan,
  refusalSpan,
  retryable,
  routingTags,
  statusOfError,
  targetOf,
} from './governance.js';
import type { ExecutorAttempt, ExecutorCall } from './ports.js';
import { grpcCodeOf, httpStatusOf, knownStatus, statusName } from './status-map.js';

/**
 * The method the call executor sees for a unary call. Its only use there is the
 * idempotency gate of retries; a gRPC call is retried by its status code instead (see
 * `retryable`), so every unary call passes the gate and `pick` decides per attempt. API
 * breaker rules match `api`, which is always `POST /pkg.Service/Method`, gRPC's request line.
 */
const RETRY_BY_STATUS = 'GET';

/** The parts of a method definition a unary call uses. */
export interface UnaryMethod {
  readonly path: string;
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js's serializers take the message type of the generated client.
  readonly requestSerialize: (value: any) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => unknown;
}

/** Where a governed unary call's end goes: grpc-js's listener (interceptor path) or the caller's callback. */
export interface UnarySink {
  /** Once: the response headers (when an instance answered), the message (with OK), the status. */
  end(status: StatusObject, headers: Metadata | undefined, message: unknown): void;
}

/** No write callback, no flags: one object for every attempt's message. */
const NO_CONTEXT = Object.freeze({});

/** A unary call's `headers` as the chain sees them: none (its metadata is its own, per attempt). */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** The tags before the call has its own (`run` sets them before any attempt). */
const NO_TAGS: TagLookup = () => undefined;

/**
 * One governed unary call: the call executor's call itself (breakers, per-attempt timeout,
 * retries), picking through routing's picker for the destination, each attempt handed
 * down the destination's attempt chain (core's `composeAttempt`, the same stages as HTTP's:
 * the CLIENT span, the in-flight count, faults) as the record the executor made, and
 * settled by the executor (`settled`); the chain's last step is `transport`, which starts
 * the attempt on the instance's pooled channel directly (what grpc-js's bottom unary call
 * does: send the serialized message, half-close, read one message). The request is
 * serialized and the outbound metadata built once per call, not per attempt.
 *
 * Cancellation without an AbortController per call: the caller's cancel and the call's
 * deadline end the call here (`end`), cancelling the attempts in flight; the executor's
 * `signal` is made only then (already aborted), so a call that is not cancelled costs no
 * signal, no listener and no controller. A timed attempt is cancelled through the
 * executor's abort hook (`abortsOnRecord`; the Attempt is the hook, no closure), and it
 * rejects by itself then (`settlesOnAbort`): the executor awaits it without a race.
 */
export class UnaryCall implements ExecutorCall<GrpcAttemptResult>, OutboundCall<GrpcAttemptResult> {
  readonly service: string;
  readonly method = RETRY_BY_STATUS;
  readonly path: string;
  /** No query: the chain's OutboundCall shape. */
  readonly search = '';
  /** The chain's OutboundCall shape: nothing reads or writes them (an attempt's metadata is its own). */
  readonly headers = NO_HEADERS;
  /** The call's routing tags (the request's, the destination, the method), as routing and faults read them; set by `run`. */
  tags: TagLookup = NO_TAGS;
  /** The context active when the call was made: its attempts' CLIENT spans are children of it. */
  readonly parent: Context | undefined;
  readonly retryable = true;
  readonly abortsOnRecord = true;
  /** An attempt rejects with the abort's reason once its abort hook ran (its stream reset). */
  readonly settlesOnAbort = true;
  /** Attempts sent so far. */
  started = 0;
  /** `host:port` of the last attempt's instance. */
  peer = '';
  /** Whether the last attempt's status may go to another instance (see `retryable`). */
  lastRetryable = false;
  /** The request message, set before `run`. */
  message: unknown;
  readonly #dest: Destination;
  readonly #def: UnaryMethod;
  readonly #ctx: MeshContext;
  readonly #own: Metadata;
  readonly #sink: UnarySink;
  readonly #deadline: number | undefined;
  #cancelTimer: (() => void) | undefined;
  /** The refusal of a call whose deadline had passed when it was made. */
  readonly #late: Error | undefined;
  #serialized: Buffer | undefined;
  #metadata: Metadata | undefined;
  #ended: CallEnded | undefined;
  #done = false;
  #controller: AbortController | undefined;
  /** The attempt in flight (and any hedge beside it), cancelled when the call ends. */
  #inflight: Attempt | undefined;
  #more: Attempt[] | undefined;

  constructor(dest: Destination, def: UnaryMethod, ctx: MeshContext, own: Metadata, options: DeadlineOptions, sink: UnarySink) {
    this.#dest = dest;
    this.service = dest.service;
    this.#def = def;
    this.path = def.path;
    this.#ctx = ctx;
    this.#own = own;
    this.#sink = sink;
    const ports = dest.ports;
    this.parent = ports.tracing?.active();
    // The outbound limit reads a signal: the call has one from the start when the limit is on.
    if (ports.outboundLimit !== undefined) this.#controller = new AbortController();
    const deadline = effectiveDeadline(options, ctx, this);
    this.#deadline = deadline;
    // Past already: `run` refuses it before anything is sent (a timer would fire only after the call went out).
    this.#late = pastDeadline(deadline, options, dest.service, def.path);
    if (deadline !== undefined && this.#late === undefined)
      this.#cancelTimer = ports.clock.setTimeout(
        () => this.end(new CallEnded(Status.DEADLINE_EXCEEDED, `deadline of ${def.path} exceeded`)),
        Math.max(0, deadline - Date.now()),
      );
  }

  /** The parent server call (`{ parent }`) was cancelled: so is this call. */
  parentCancelled(): void {
    this.end(new CallEnded(Status.CANCELLED, 'the parent call was cancelled'));
  }

  /** API breaker rules match it: `POST /pkg.Service/Method` (read only when the service has API rules). */
  get api(): string {
    return apiOf(this.path);
  }

  /** The caller's signal as the executor reads it: none while the call runs (see the class), aborted once it ended. */
  get signal(): AbortSignal | undefined {
    return this.#controller?.signal;
  }

  /** Ends the call with the caller's cancel or its deadline, once: the attempts in flight are cancelled. */
  end(err: CallEnded): void {
    if (this.#done) return;
    this.#ended = err;
    this.#controller ??= new AbortController();
    this.#controller.abort(err);
    this.#inflight?.cancel(err.message);
    if (this.#more) for (const a of this.#more) a.cancel(err.message);
    this.#finish({ code: err.status, details: err.message, metadata: new Metadata() }, undefined, undefined);
  }

  #finish(status: StatusObject, headers: Metadata | undefined, message: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#cancelTimer?.();
    this.#sink.end(status, headers, message);
  }

  /** Runs the call to its end; the sink hears of it. */
  async run(): Promise<void> {
    const dest = this.#dest;
    const ports = dest.ports;
    let status: StatusObject;
    let headers: Metadata | undefined;
    let message: unknown;
    try {
      if (this.#late !== undefined) {
        // Not in the caller's own turn: its callback and events come after it returns, as for any call.
        await undefined;
        throw this.#late;
      }
      const ready = dest.ensure();
      if (ready !== undefined) await ready;
      if (this.#done) return;
      try {
        this.#serialized = this.#def.requestSerialize(this.message);
      } catch (err) {
        // The caller's message cannot be sent: nothing to route, nothing for a breaker to count.
        throw new SerializationError(err);
      }
      this.#metadata = dest.outbound(this.#ctx, this.#own);
      this.tags = routingTags(this.#ctx, this.service, this.path);
      // The destination's adaptive limit around the executor, as HTTP's governedCall does:
      // a call over it is refused before routing; the limit samples the call's whole time.
      const limit = ports.outboundLimit;
      const out = await (limit === undefined
        ? ports.executor.call(this)
        : limit(this.service, () => ports.executor.call(this), this.#controller?.signal as AbortSignal));
      // A breaker's fallback comes back through `fromResponse`; an executor that hands the Response back as it is, too.
      const result = out instanceof Response ? this.fromResponse(out) : out;
      status = { code: result.code, details: result.details, metadata: result.trailers };
      headers = result.headers;
      message = result.message;
    } catch (err) {
      // Ended by the caller or its deadline: that status went out already.
      if (this.#done) return;
      const s = err instanceof SerializationError ? err.status : statusOfError(err);
      // Refused before any attempt (a breaker, no instance): the refusal's span, naming what refused (io.meshlet.circuit.*).
      if (this.started === 0) refusalSpan(ports, this.parent, this.path, this.service, s.code, s.details, ports.errorAttributes?.(err));
      status = { code: s.code, details: s.details, metadata: new Metadata() };
    }
    // Outside the try: a callback that throws is the caller's error, not the call's status.
    this.#finish(status, headers, message);
  }

  /**
   * A breaker refused the call and its fallback answered (nothing was sent): the span of the
   * logical call, naming the refusing breaker (io.meshlet.circuit.*) and the fallback, with
   * the status the fallback's answer maps to — as HTTP's.
   */
  fellBack(refusal: unknown, response: Response): void {
    const ports = this.#dest.ports;
    const extra = { ...ports.errorAttributes?.(refusal), 'io.meshlet.fallback': 'breaker' };
    refusalSpan(
      ports,
      this.parent,
      this.path,
      this.service,
      grpcCodeOf(response.status),
      `fallback of ${this.service}: HTTP ${response.status}`,
      extra,
    );
  }

  injected(result: GrpcAttemptResult): boolean {
    return result.injected === true;
  }

  discard(): void {}

  /**
   * An answer the breakers do not count as a failure that still goes to another instance
   * under a retry rule: RESOURCE_EXHAUSTED from a peer's Meshlet limiter (see `retryable`),
   * which the breakers see as a 429. The executor pays the retry from the budget as any
   * other, and `pick` gives an instance not tried yet.
   */
  retryableAnswer(result: GrpcAttemptResult): boolean {
    return retryable(result);
  }

  pick(tried: ReadonlySet<string>): AttemptTarget | undefined {
    if (this.#ended !== undefined) return undefined;
    const picker = this.#dest.picker;
    const tags = this.tags;
    if (tried.size === 0 && this.started === 0) return targetOf(picker.first(tags));
    // Before any attempt went out, `tried` holds instances whose breakers refused the pick
    // (routing had not yet heard): another instance, as for HTTP. After one, a retry: only
    // after a status gRPC calls safe to retry. Either way an instance not yet tried, nearest
    // locality first (routing's picker, not a re-decision that may repeat one).
    if (this.started > 0 && !this.lastRetryable) return undefined;
    const next = picker.next(tags, tried);
    return next === undefined ? undefined : targetOf(next);
  }

  /**
   * Sends one attempt down the destination's attempt chain: the executor's record is the
   * chain's record (its call is this object, its target routing's decision). An executor
   * that gives no record (a test's) gets the attempt settled here.
   */
  send(target: AttemptTarget, signal: AbortSignal | undefined, attempt?: ExecutorAttempt): Promise<GrpcAttemptResult> {
    const n = this.started++;
    this.lastRetryable = false;
    this.peer = this.#dest.pool.channel(target.instance).target;
    const chain = this.#dest.chain;
    if (attempt !== undefined) return chain.send(attempt as unknown as ChainAttempt<GrpcAttemptResult>);
    // Not through the executor (a client with interceptors of its own): the chain settles it.
    return sendSettled(chain, newAttempt<GrpcAttemptResult>(this, target, n, signal));
  }

  /** The executor's await of an attempt settled: the chain's observers end (the span, the in-flight count). */
  settled(attempt: ExecutorAttempt, result: GrpcAttemptResult | undefined, error: unknown): void {
    this.#dest.chain.settle(attempt as unknown as ChainAttempt, result as AttemptResult | undefined, error);
  }

  /**
   * The chain's last step: starts one attempt on its instance's channel, with the call's
   * metadata (a copy for a retry or hedge) and the span's trace context; settles with
   * whatever status it ends with.
   */
  transport(attempt: ChainAttempt<GrpcAttemptResult>): Promise<GrpcAttemptResult> {
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    const base = this.#metadata as Metadata;
    const md = attempt.number === 0 ? base : base.clone();
    (attempt.span as RpcClientSpan | undefined)?.writeCaptured(md, this.#dest.dropped);
    const a = new Attempt(this, this.#def);
    if (this.#inflight === undefined) this.#inflight = a;
    else {
      this.#more ??= [];
      this.#more.push(a);
    }
    const pooled = this.#dest.pool.channel(attempt.target.instance);
    a.start(pooled, this.path, this.#deadline, md, this.#serialized as Buffer, (attempt as unknown as ExecutorAttempt).abort);
    return a.promise;
  }

  /**
   * A Response the mesh made, as a gRPC result. An injected fault's (fault's `faultInterceptor`
   * gives the attempt it answered; the response names its rule in `x-meshlet-fault`): its
   * HTTP status as gRPC maps it (503 → UNAVAILABLE…), the rule in the `x-meshlet-fault`
   * trailer, marked `injected` so it counts for no instance. A breaker's fallback (the
   * executor gives no attempt), whatever headers its rule set: its status mapped the same
   * way, with `x-meshlet-fallback: circuit-open`.
   */
  fromResponse(response: Response, attempt?: ExecutorAttempt): GrpcAttemptResult {
    if (attempt !== undefined) {
      const result = injectedResult(response);
      this.lastRetryable = retryable(result);
      return result;
    }
    const code = grpcCodeOf(response.status);
    const trailers = new Metadata();
    // A breaker's fallback: an HTTP answer, as gRPC maps a response without grpc-status.
    void response.body?.cancel().catch(() => {});
    trailers.set('x-meshlet-fallback', 'circuit-open');
    return {
      status: response.status,
      code,
      details: `fallback of ${this.service}: HTTP ${response.status}`,
      message: undefined,
      headers: undefined,
      trailers,
    };
  }

  /** An attempt ended: no longer cancelled with the call. */
  detach(a: Attempt): void {
    if (this.#inflight === a) this.#inflight = undefined;
    else if (this.#more) {
      const i = this.#more.indexOf(a);
      if (i >= 0) this.#more.splice(i, 1);
    }
  }

  /** Why the call ended early, if it did. */
  get ended(): CallEnded | undefined {
    return this.#ended;
  }
}

/** A request message the method's serializer refused: INTERNAL, as grpc-js reports it. */
class SerializationError extends Error {
  readonly status: { code: number; details: string };
  constructor(cause: unknown) {
    const details = `request message serialization failure: ${cause instanceof Error ? cause.message : String(cause)}`;
    super(details);
    this.status = { code: Status.INTERNAL, details };
  }
}

type ChannelCall = ReturnType<PooledChannel['channel']['createCall']>;

/**
 * One attempt on an instance's channel, as grpc-js's bottom unary call drives it: the
 * listener of the channel's call (methods, not closures), the attempt's promise, and its
 * cancel (the call's end, or the executor's timeout through the attempt's abort hook). Its
 * span and in-flight count are the attempt chain's observers', ended when the executor
 * settles the attempt.
 */
class Attempt implements InterceptingListener {
  readonly promise: Promise<GrpcAttemptResult>;
  #resolve!: (r: GrpcAttemptResult) => void;
  #reject!: (e: unknown) => void;
  readonly #owner: UnaryCall;
  readonly #def: UnaryMethod;
  #call: ChannelCall | undefined;
  #value: unknown;
  #headers: Metadata | undefined;
  #readError: { code: number; details: string } | undefined;
  #abortReason: unknown;
  #aborted = false;
  #done = false;

  constructor(owner: UnaryCall, def: UnaryMethod) {
    this.#owner = owner;
    this.#def = def;
    this.promise = new Promise<GrpcAttemptResult>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  start(
    pooled: PooledChannel,
    path: string,
    deadline: number | undefined,
    md: Metadata,
    serialized: Buffer,
    abort: ExecutorAttempt['abort'],
  ): void {
    const call = pooled.channel.createCall(path, deadline ?? Number.POSITIVE_INFINITY, undefined, null, null);
    this.#call = call;
    // The executor's timeout (and, with a signal, the caller's abort) cancels the attempt here.
    abort?.onAbort(this);
    call.start(md, this);
    call.sendMessageWithContext(NO_CONTEXT, serialized);
    call.halfClose();
    call.startRead();
  }

  cancel(details: string): void {
    if (!this.#done) this.#call?.cancelWithStatus(Status.CANCELLED, details);
  }

  /** The executor's abort hook (its timeout, the caller's abort): the stream is reset and the attempt rejects with `reason`. */
  abortAttempt(reason: unknown): void {
    this.#aborted = true;
    this.#abortReason = reason;
    this.cancel('attempt aborted');
  }

  onReceiveMetadata(headers: Metadata): void {
    this.#headers = headers;
  }

  onReceiveMessage(buffer: Buffer): void {
    try {
      this.#value = this.#def.responseDeserialize(buffer);
    } catch (err) {
      this.#readError = { code: Status.INTERNAL, details: `response message parsing error: ${(err as Error).message}` };
      this.#call?.cancelWithStatus(this.#readError.code, this.#readError.details);
    }
  }

  onReceiveStatus(received: StatusObject): void {
    if (this.#done) return;
    const s = knownStatus(received);
    this.#done = true;
    const owner = this.#owner;
    owner.detach(this);
    // Ended by the attempt's timeout or by the caller: the executor decides what that means.
    const ended = this.#aborted ? this.#abortReason : owner.ended;
    if (this.#aborted || ended !== undefined) {
      this.#reject(ended);
      return;
    }
    const readError = this.#readError;
    let result: GrpcAttemptResult;
    if (readError !== undefined)
      result = { status: httpStatusOf(readError.code), ...readError, message: undefined, headers: this.#headers, trailers: s.metadata };
    // OK without a message is a broken server, as grpc-js reports it.
    else if (s.code === Status.OK && this.#value === undefined)
      result = {
        status: 501,
        code: Status.UNIMPLEMENTED,
        details: 'no message received',
        message: undefined,
        headers: this.#headers,
        trailers: s.metadata,
      };
    else
      result = {
        status: httpStatusOf(s.code),
        code: s.code,
        details: s.details,
        message: this.#value,
        headers: this.#headers,
        trailers: s.metadata,
      };
    owner.lastRetryable = retryable(result);
    if (result.code === Status.UNAVAILABLE && neverSent(this.#call)) this.#reject(new NotSentError(result));
    else this.#resolve(result);
  }
}

/**
 * Whether grpc-js ended the call without ever opening an HTTP/2 stream for it: its own
 * failure (the picker's while the subchannel is in TRANSIENT_FAILURE, "No connection
 * established…"; a channel closed), so nothing reached any server. A call's auth context is
 * its stream's transport's (an object, `{}` without TLS); grpc-js gives null until a stream
 * was created. Not the status text: a server's trailers-only answer has no headers either,
 * and a relay passing on its own upstream's "No connection established" would read as not
 * sent, its handler run again on another instance.
 */
function neverSent(call: ChannelCall | undefined): boolean {
  return call !== undefined && call.getAuthContext() === null;
}

/** grpc-js's unary argument forms: (arg, [metadata], [options], callback). */
function unaryArguments(
  a1: unknown,
  a2: unknown,
  a3: unknown,
): { metadata: Metadata; options: CallOptions; callback: (err: ServiceError | null, value?: unknown) => void } {
  type Callback = (err: ServiceError | null, value?: unknown) => void;
  if (typeof a1 === 'function') return { metadata: new Metadata(), options: {}, callback: a1 as Callback };
  if (typeof a2 === 'function')
    return a1 instanceof Metadata
      ? { metadata: a1, options: {}, callback: a2 as Callback }
      : { metadata: new Metadata(), options: (a1 ?? {}) as CallOptions, callback: a2 as Callback };
  if (!(a1 instanceof Metadata && a2 instanceof Object && typeof a3 === 'function')) throw new Error('Incorrect arguments passed');
  return { metadata: a1, options: a2 as CallOptions, callback: a3 as Callback };
}

/** The error a unary callback gets, as grpc-js makes it: `<code> <NAME>: <details>`, with the status's fields. */
function serviceError(status: StatusObject): ServiceError {
  return Object.assign(new Error(`${status.code} ${statusName(status.code)}: ${status.details}`), status);
}

/** What a governed unary method returns: grpc-js's ClientUnaryCall (events `metadata`, `status`; `cancel`, `getPeer`). */
class GovernedUnaryCall extends EventEmitter implements ClientUnaryCall, UnarySink {
  unary: UnaryCall | undefined;
  readonly #callback: (err: ServiceError | null, value?: unknown) => void;

  constructor(callback: (err: ServiceError | null, value?: unknown) => void) {
    super();
    this.#callback = callback;
  }

  cancel(): void {
    this.unary?.end(new CallEnded(Status.CANCELLED, 'Cancelled on client'));
  }

  getPeer(): string {
    return this.unary?.peer || 'unknown';
  }

  getAuthContext(): null {
    return null;
  }

  end(status: StatusObject, headers: Metadata | undefined, message: unknown): void {
    if (headers !== undefined) this.emit('metadata', headers);
    if (status.code === Status.OK) this.#callback(null, message);
    else this.#callback(serviceError(status));
    this.emit('status', status);
  }
}

/** Names a client's methods must not take (grpc-js skips them too). */
const RESERVED = new Set(['__proto__', 'prototype', 'constructor']);

/**
 * grpc-js drops a client's own interceptors for a call given `interceptors` or
 * `interceptor_providers` of its own ("interceptors passed to the call override interceptors
 * passed to the client constructor"), and with them the mesh's: the call would go to the
 * client's placeholder target. The call's options with the mesh's interceptor last (the
 * bottom of the chain), as an interceptor or a provider, whichever the call used (grpc-js
 * refuses both at once); undefined when the call brings none.
 */
function withMeshLast(options: unknown, mesh: Interceptor): CallOptions | undefined {
  if (options === null || typeof options !== 'object' || options instanceof Metadata) return undefined;
  const o = options as CallOptions;
  if (o.interceptor_providers?.length) return { ...o, interceptor_providers: [...o.interceptor_providers, () => mesh] };
  if (o.interceptors?.length) return { ...o, interceptors: [...o.interceptors, mesh] };
  return undefined;
}

/**
 * Governs the methods of a generated client (`ctor.service`'s, under their name and
 * `originalName`). With `direct`, unary methods run the governed call here (UnaryCall),
 * without grpc-js's stub and interceptor chain in front: no interceptor objects, no
 * listener wrappers and no caller-stack Error per call. A call given interceptors of its
 * own goes through the stub with the mesh's interceptor appended (see withMeshLast), as do
 * streaming methods' calls; the rest of a streaming method's calls, and every call of a
 * client not `direct` (one with interceptors of the application's), use the stub as is.
 */
export function governMethods(
  client: Client,
  definition: ServiceDefinition | undefined,
  dest: Destination,
  mesh: Interceptor,
  direct: boolean,
): void {
  if (definition === undefined) return;
  const target = client as unknown as Record<string, unknown>;
  for (const name of Object.keys(definition)) {
    const def: MethodDefinition<unknown, unknown> | undefined = definition[name];
    if (def === undefined || RESERVED.has(name)) continue;
    const stub = target[name];
    if (typeof stub !== 'function') continue;
    const unary = !def.requestStream && !def.responseStream;
    const governed =
      unary && direct
        ? governedUnaryMethod(dest, def, stub as StubMethod, mesh)
        : interceptedMethod(stub as StubMethod, mesh, !def.requestStream);
    const method = Object.assign(governed, def);
    target[name] = method;
    const alias = (def as { originalName?: string }).originalName;
    if (alias !== undefined && !RESERVED.has(alias) && target[alias] === stub) target[alias] = method;
  }
}

type StubMethod = (this: Client, ...args: unknown[]) => ClientUnaryCall;

/** The stub, with the mesh's interceptor kept for a call that brings interceptors of its own. */
function interceptedMethod(stub: StubMethod, mesh: Interceptor, argumentFirst: boolean) {
  return function intercepted(this: Client, ...args: unknown[]): ClientUnaryCall {
    // The request message (unary, server streaming) comes first and is never the options.
    for (let i = argumentFirst ? 1 : 0; i < args.length; i++) {
      const options = withMeshLast(args[i], mesh);
      if (options !== undefined) {
        args[i] = options;
        break;
      }
    }
    return stub.apply(this, args);
  };
}

function governedUnaryMethod(dest: Destination, def: UnaryMethod, stub: StubMethod, mesh: Interceptor) {
  return function governedUnary(this: Client, argument: unknown, a1?: unknown, a2?: unknown, a3?: unknown): ClientUnaryCall {
    const { metadata, options, callback } = unaryArguments(a1, a2, a3);
    const intercepted = withMeshLast(options, mesh);
    if (intercepted !== undefined) return stub.call(this, argument, metadata, intercepted, callback);
    const call = new GovernedUnaryCall(callback);
    // The caller's request context: the method runs synchronously in the caller's code.
    const unary = new UnaryCall(dest, def, currentContext(), metadata, options, call);
    call.unary = unary;
    unary.message = argument;
    void unary.run();
    return call;
  };
}
