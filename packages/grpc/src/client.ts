import {
  type ChannelInterface,
  type Client,
  connectivityState as ConnectivityState,
  type InterceptingCall,
  type InterceptingListener,
  type Interceptor,
  type InterceptorOptions,
  Metadata,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import {
  type Attempt,
  currentContext,
  type MeshContext,
  NoInstanceError,
  newAttempt,
  type OutboundCall,
  refusedInstanceAttributes,
  sendSettled,
  type TagLookup,
} from '@meshlet/core';
import type { Context } from '@opentelemetry/api';
import { ChannelPool } from './channel-pool.js';
import {
  CallEnded,
  DEFAULT_STREAM_CONNECT_RETRIES,
  Destination,
  effectiveDeadline,
  type GrpcAttemptResult,
  injectedResult,
  NotSentError,
  pastDeadline,
  type RpcClientSpan,
  refusalSpan,
  routingTags,
  StreamOpenError,
  statusOfError,
  targetOf,
} from './governance.js';
import type { GrpcClientPorts, GrpcStreamAttempt, GrpcStreamGovernance, RouteChoice } from './ports.js';
import { httpStatusOf, knownStatus } from './status-map.js';
import { UnaryCall, type UnarySink } from './unary-call.js';

export {
  CallEnded,
  FAULT_TRAILER,
  type GrpcAttemptResult,
  NotSentError,
  retryable,
  StreamOpenError,
  statusOfError,
} from './governance.js';

type InterceptingCallInterface = ConstructorParameters<typeof InterceptingCall>[0];
type MessageContext = Parameters<InterceptingCallInterface['sendMessageWithContext']>[0];

export interface MeshInterceptorOptions {
  /** The channels to instances; one pool is shared by all of a mesh's interceptors. */
  readonly pool: ChannelPool;
}

/**
 * A grpc-js client interceptor that sends each call of a client to `service` through the
 * mesh: the interceptor never uses the client's own channel; each call (each attempt, for
 * unary calls) picks an instance with the router HTTP calls use and goes out on that
 * instance's channel from the pool.
 *
 * Why an interceptor that picks per call rather than a grpc-js resolver + LB policy: a
 * picker runs synchronously inside grpc-js's channel, after the request's AsyncLocalStorage
 * context is gone (queued picks) and without a way to run the call executor around an
 * attempt. Per call, the router sees the request's tags, and the same CallExecutor as HTTP
 * gives breakers at three levels, retries with a budget, and per-attempt timeouts.
 *
 * `mesh.grpc.client` also replaces the client's unary methods with governed ones that skip
 * grpc-js's stub and this interceptor (`governUnaryMethods`); the interceptor serves the
 * streaming methods, calls given their own interceptors, and clients made elsewhere.
 */
export function meshInterceptor(ports: GrpcClientPorts, service: string, options: MeshInterceptorOptions): Interceptor {
  return interceptorFor(new Destination(ports, service, options.pool));
}

/** The interceptor of a destination (one Destination shared with the governed unary methods). */
export function interceptorFor(dest: Destination): Interceptor {
  // grpc-js uses what an interceptor returns only through InterceptingCallInterface: the
  // MeshCall itself, without an InterceptingCall in front that would only pass calls on.
  return (callOptions) => new MeshCall(dest, callOptions) as unknown as InterceptingCall;
}

type Listener = Partial<InterceptingListener>;

/** A stream's `headers` as the attempt chain sees them: none (its metadata is its own). */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** The tags before the stream is routed. */
const NO_TAGS: TagLookup = () => undefined;

/** The read side of an instance call on a stream, as makeBidiStreamRequest returns it. */
interface InstanceStream {
  write(message: unknown, cb?: () => void): boolean;
  end(): void;
  cancel(): void;
  pause(): void;
  resume(): void;
  on(event: string, listener: (...args: never[]) => void): unknown;
}

/**
 * The bottom of a governed client call: what grpc-js's own channel call would be, with the
 * instance chosen by the mesh. A unary call is a UnaryCall (the call executor's call) that
 * takes the one message and runs at half-close; streaming calls are routed at start and
 * bridged to the instance's stream. A stream goes to another instance only when its
 * instance's connection could not be made (refused, failed: nothing was sent; the caller's
 * messages wait here until the connection is up), up to `streamConnectRetries` further
 * instances not yet tried; once the stream is open on an instance, never (its messages
 * cannot be replayed), whatever its status.
 *
 * Each try is one attempt down the destination's attempt chain (core's `OutboundCall`: this
 * object is its call), the same stages as a unary attempt's: the CLIENT span and the client
 * call metrics (`rpcSpanObserver`, from the chain's send to the stream's end), the in-flight
 * count, fault rules (an abort ends the stream with the rule's status before anything is
 * sent; a delay holds its start, messages written meanwhile queued; shadow rules only
 * note), then `transport`, which waits for the instance's connection and opens the stream
 * on its channel. The attempt settles with the status the caller gets (the instance's, or
 * the caller's cancel or deadline), or with `NotSentError` when the connection could not
 * be made.
 */
class MeshCall implements InterceptingCallInterface, UnarySink, OutboundCall<GrpcAttemptResult> {
  /** The chain's OutboundCall shape: a gRPC call is a POST. */
  readonly method = 'POST';
  /** No query. */
  readonly search = '';
  /** Nothing reads or writes them (a stream's metadata is its own). */
  readonly headers = NO_HEADERS;
  /** The stream's routing tags (the request's, the destination, the method), as routing and faults read them. */
  tags: TagLookup = NO_TAGS;
  /** The context active when the stream was started: its CLIENT span's parent. */
  parent: Context | undefined;
  readonly #dest: Destination;
  readonly #options: InterceptorOptions;
  readonly #unaryCall: boolean;
  #unary: UnaryCall | undefined;
  #listener: Listener = {};
  #metadata = new Metadata();
  #ctx: MeshContext | undefined;
  #done = false;
  /** Why the stream was ended by the caller or its deadline, if it was. */
  #ended: CallEnded | undefined;
  /** Aborts a fault's delay when the stream ends first; made when the stream is routed. */
  #abort: AbortController | undefined;
  /** Settles the stream's attempt with the caller's end, ahead of the instance's status. */
  #settle: ((err: CallEnded) => void) | undefined;
  #peer = '';
  #cancelDeadline: (() => void) | undefined;
  #stream: InstanceStream | undefined;
  #readWanted = false;
  /** The call's deadline in ms since the epoch: its own, or its parent server call's if earlier. */
  #deadline: number | undefined;
  /** A stream's messages written before its instance was chosen. */
  #pending: [unknown, (() => void) | undefined][] | undefined;
  #halfClosed = false;
  /** When the current try's stream was opened on its instance (the mesh's clock), if it was. */
  #openedAt: number | undefined;
  /** The try now under way on an instance breaker (its permit), and when it began. */
  #try: GrpcStreamAttempt | undefined;
  #tryStart = 0;
  /** The stream's service and API breakers' permits (`outcome`), and when the stream began. */
  #tracked: GrpcStreamGovernance | undefined;
  #callStart = 0;
  /** The stream's bulkhead slot, given back when the stream ends. */
  #slot: (() => void) | undefined;

  constructor(dest: Destination, options: InterceptorOptions) {
    this.#dest = dest;
    this.#options = options;
    const def = options.method_definition;
    this.#unaryCall = !def.requestStream && !def.responseStream;
    // A single response is read without waiting for startRead, as grpc-js's own unary-response call does.
    this.#readWanted = !def.responseStream;
  }

  start(metadata: Metadata, listener?: Listener): void {
    // grpc-js calls start synchronously from the stub's method: the caller's request context.
    const ctx = currentContext();
    this.#ctx = ctx;
    this.#listener = listener ?? {};
    if (this.#unaryCall) {
      this.#unary = new UnaryCall(this.#dest, this.#options.method_definition, ctx, metadata, this.#options, this);
      return;
    }
    this.parent = this.#dest.ports.tracing?.active();
    this.#metadata = metadata;
    const deadline = effectiveDeadline(this.#options, ctx, this);
    const late = pastDeadline(deadline, this.#options, this.#dest.service, this.path);
    if (late !== undefined) {
      // Past already: refused before routing, nothing sent; after the caller's turn, once it has its listeners.
      this.#deadline = deadline;
      void Promise.resolve(late).then((err) => this.#refusedWith(err));
      return;
    }
    if (deadline !== undefined) {
      this.#deadline = deadline;
      const ms = Math.max(0, deadline - Date.now());
      this.#cancelDeadline = this.#dest.ports.clock.setTimeout(
        () => this.#end(new CallEnded(Status.DEADLINE_EXCEEDED, `deadline of ${this.#options.method_definition.path} exceeded`)),
        ms,
      );
    }
    void this.#startStream();
  }

  sendMessageWithContext(context: MessageContext, message: unknown): void {
    if (this.#unary) {
      this.#unary.message = message;
      context.callback?.();
    } else if (this.#stream) this.#stream.write(message, context.callback);
    else {
      this.#pending ??= [];
      this.#pending.push([message, context.callback]);
    }
  }

  sendMessage(message: unknown): void {
    this.sendMessageWithContext({}, message);
  }

  halfClose(): void {
    if (this.#unary) void this.#unary.run();
    else if (this.#stream) this.#stream.end();
    else this.#halfClosed = true;
  }

  startRead(): void {
    if (this.#unaryCall) return;
    this.#readWanted = true;
    this.#stream?.resume();
  }

  cancelWithStatus(code: Status, details: string): void {
    const err = new CallEnded(code, details);
    if (this.#unary) this.#unary.end(err);
    else this.#end(err);
  }

  getPeer(): string {
    return this.#unary?.peer ?? this.#peer;
  }

  getAuthContext(): null {
    return null;
  }

  /** The destination (OutboundCall). */
  get service(): string {
    return this.#dest.service;
  }

  /** `/pkg.Service/Method` (OutboundCall). */
  get path(): string {
    return this.#options.method_definition.path;
  }

  /** The call's deadline in ms since the epoch, if it has one. */
  get deadline(): number | undefined {
    return this.#deadline;
  }

  /** Why the stream was ended by the caller or its deadline, if it was. */
  get ended(): CallEnded | undefined {
    return this.#ended;
  }

  /** The parent server call was cancelled (a stream's; a unary call's UnaryCall hears of it itself). */
  parentCancelled(): void {
    this.#end(new CallEnded(Status.CANCELLED, 'the parent call was cancelled'));
  }

  /** A unary call's end (UnarySink). */
  end(status: StatusObject, headers: Metadata | undefined, message: unknown): void {
    this.#deliver(status, headers, message);
  }

  /** Ends a stream with an error status, once. */
  #end(err: CallEnded): void {
    if (this.#done) return;
    this.#ended = err;
    this.#abort?.abort(err);
    this.#settle?.(err);
    this.#stream?.cancel();
    this.#deliver({ code: err.status, details: err.message, metadata: new Metadata() });
  }

  #deliver(status: StatusObject, headers?: Metadata, message?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#cancelDeadline?.();
    const slot = this.#slot;
    this.#slot = undefined;
    slot?.();
    const l = this.#listener;
    if (headers) l.onReceiveMetadata?.(headers);
    if (status.code === Status.OK && message !== undefined) l.onReceiveMessage?.(message);
    l.onReceiveStatus?.(status);
  }

  /**
   * Routes a streaming call, then sends it down the destination's attempt chain as one
   * attempt. An attempt whose instance's connection could not be made (`NotSentError`: no
   * message left the mesh, they wait in `#pending`) is followed by another on an instance
   * not yet tried (routing's picker), each its own attempt down the chain (span, metrics),
   * up to the ports' `streamConnectRetries`; nothing else is tried again.
   */
  async #startStream(): Promise<void> {
    const dest = this.#dest;
    const ports = dest.ports;
    const ctx = this.#ctx ?? currentContext();
    let choice: RouteChoice | undefined;
    try {
      if (ports.streamSlot !== undefined) {
        // One of the destination's bulkhead slots for the stream's life, before routing (as a
        // unary call's limits); a cancel or the deadline while it waits gives the wait up.
        this.#abort = new AbortController();
        const release = await ports.streamSlot(dest.service, this.#abort.signal);
        if (this.#done) {
          release();
          return;
        }
        this.#slot = release;
      }
      await dest.ensure();
      this.tags = routingTags(ctx, dest.service, this.path);
      choice = ports.router.decide(dest.service, this.tags);
    } catch (err) {
      if (this.#done) return;
      return this.#refusedWith(err);
    }
    const retries = Math.max(0, ports.streamConnectRetries ?? DEFAULT_STREAM_CONNECT_RETRIES);
    // The destination's service and API breakers (an open one refuses the stream), its
    // instance breakers and retry budget, for tries the executor does not run.
    let tracked: GrpcStreamGovernance | undefined;
    try {
      tracked = ports.trackStream?.(dest.service, retries > 0, this.path);
    } catch (err) {
      return this.#refusedWith(err);
    }
    const callStart = ports.clock.now();
    this.#tracked = tracked;
    this.#callStart = callStart;
    const chain = dest.chain;
    let tried: Set<string> | undefined;
    for (let number = 0; ; number++) {
      if (this.#done) {
        tracked?.outcome.released();
        return;
      }
      let target = targetOf(choice);
      let permit: GrpcStreamAttempt | undefined;
      if (tracked !== undefined) {
        // An instance whose breaker refuses (open, or half-open with its probes taken, which
        // routing had not yet heard of) is passed over for another, as the executor does.
        const refused: string[] = [];
        for (;;) {
          permit = tracked.attempt(target.id);
          if (permit !== undefined) break;
          refused.push(target.id);
          tried ??= new Set();
          tried.add(target.id);
          const next = this.#next(tried);
          if (next === undefined) return this.#refused(number, refused, tracked);
          choice = next;
          target = targetOf(next);
        }
      }
      this.#peer = ChannelPool.target(choice.instance);
      this.#abort = new AbortController();
      this.#openedAt = undefined;
      const t0 = ports.clock.now();
      this.#try = permit;
      this.#tryStart = t0;
      const attempt = newAttempt<GrpcAttemptResult>(this, target, number, this.#abort.signal);
      let result: GrpcAttemptResult | undefined;
      let error: unknown;
      try {
        // Settled by the chain (the span and metrics end) before the caller hears the status, as a unary call's.
        result = await sendSettled(chain, attempt);
      } catch (err) {
        error = err;
      }
      if (permit !== undefined) this.#record(permit, result, error, t0);
      if (error instanceof NotSentError && number < retries && !this.#done) {
        tried ??= new Set();
        tried.add(attempt.target.id);
        const next = this.#next(tried);
        // Another try is paid from the destination's retry budget, as a unary retry is: spent, the refusal is the stream's end.
        if (next !== undefined && (tracked === undefined || tracked.retry('not-sent'))) {
          choice = next;
          continue;
        }
      }
      // The stream's end settles its service and API permits, as its last try's settles the instance's.
      if (tracked !== undefined) this.#record(tracked.outcome, result, error, callStart);
      if (result !== undefined) this.#deliver({ code: result.code, details: result.details, metadata: result.trailers });
      else {
        const s = statusOfError(error);
        this.#deliver({ code: s.code, details: s.details, metadata: new Metadata() });
      }
      return;
    }
  }

  /**
   * Records a try's outcome on its instance's breaker as the executor records a unary
   * attempt's: a connection that could not be made is a failure; a status the instance
   * ended the stream with is classified as a unary answer with that status (by default
   * the 5xx equivalents: UNKNOWN, INTERNAL, UNIMPLEMENTED, UNAVAILABLE, DEADLINE_EXCEEDED,
   * DATA_LOSS); the caller's cancel or deadline and an injected fault say nothing about
   * the instance. The time the breaker's slow-call check reads is the time until the
   * stream opened: how long it then lives is the caller's.
   */
  #record(permit: GrpcStreamAttempt, result: GrpcAttemptResult | undefined, error: unknown, t0: number): void {
    const opened = this.#openedAt;
    const durationMs = opened === undefined ? undefined : opened - t0;
    // The caller's end, or the mesh's own failure to open the stream: nothing about the instance.
    if (this.#ended !== undefined || error instanceof CallEnded || error instanceof StreamOpenError) permit.released();
    else if (result === undefined) permit.failed(error, false, durationMs);
    else if (result.injected === true) permit.released();
    // The call's own deadline, reported by grpc-js ahead of the mesh's timer: the caller's, as a cancel.
    else if (result.code === Status.DEADLINE_EXCEEDED && this.#deadline !== undefined && Date.now() >= this.#deadline) permit.released();
    else permit.answered(result.status, durationMs);
  }

  /** Every instance left was refused by its breaker: the stream ends UNAVAILABLE, its span naming them, as a unary call's refusal. */
  #refused(number: number, refused: readonly string[], tracked: GrpcStreamGovernance | undefined): void {
    const err = Object.assign(
      new NoInstanceError(this.#dest.service, number === 0 ? 'no instance to send to' : 'no instance left to retry on'),
      { spanAttributes: refusedInstanceAttributes('instance', refused) },
    );
    tracked?.outcome.failed(err, false);
    this.#refusedWith(err);
  }

  /** The stream refused before any try (routing, an open service or API breaker, no instance left): its status from the error, a span for the refusal. */
  #refusedWith(err: unknown): void {
    const ports = this.#dest.ports;
    const s = statusOfError(err);
    refusalSpan(ports, this.parent, this.path, this.#dest.service, s.code, s.details, ports.errorAttributes?.(err));
    this.#deliver({ code: s.code, details: s.details, metadata: new Metadata() });
  }

  /** An instance not yet tried, nearest locality first (routing's picker, as a unary retry picks); none when none is left. */
  #next(tried: ReadonlySet<string>): RouteChoice | undefined {
    try {
      return this.#dest.picker.next(this.tags, tried);
    } catch {
      return undefined;
    }
  }

  /** A fault rule's abort as the stream's result (OutboundCall): nothing was sent. */
  fromResponse(response: Response): GrpcAttemptResult {
    return injectedResult(response);
  }

  /**
   * The chain's last step: waits for the instance's connection, then opens the stream on
   * the instance's channel, with the mesh's metadata and the span's trace context, and
   * bridges it; settles with the stream's status, or at once with the caller's cancel or
   * deadline. A connection that cannot be made rejects with `NotSentError` before the stream
   * exists: the messages the caller wrote are still queued here, so another instance may
   * take the stream (`#startStream`). Once the stream is opened, its messages are the
   * instance's and nothing is tried again.
   */
  transport(attempt: Attempt<GrpcAttemptResult>): Promise<GrpcAttemptResult> {
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    const instance = attempt.target.instance;
    // Counted in flight by the chain's own stage (Router.inFlight), as a unary attempt is.
    return new Promise<GrpcAttemptResult>((resolve, reject) => {
      this.#settle = reject;
      const pooled = this.#dest.pool.channel(instance);
      const open = () => {
        // Ended while the connection was being made: #end rejected the attempt already.
        if (this.#ended !== undefined) return;
        // Run from grpc-js's connectivity callback when the channel was not READY yet, where
        // a throw is uncaught and ends the process: it fails this attempt instead.
        try {
          this.#open(attempt, pooled.client, resolve);
        } catch (err) {
          this.#settle = undefined;
          const stream = this.#stream;
          this.#stream = undefined;
          try {
            stream?.cancel();
          } catch {
            // Cancelled already, or never started: nothing left to end.
          }
          reject(new StreamOpenError(err));
        }
      };
      const refused = () => {
        if (this.#ended !== undefined) return;
        this.#settle = undefined;
        reject(new NotSentError(notConnected(pooled.target)));
      };
      whenConnected(pooled.channel, this, open, refused);
    });
  }

  /** Opens the stream on the instance's client, bridges it and writes the queued messages; `done` hears its status. */
  #open(attempt: Attempt<GrpcAttemptResult>, client: Client, done: (result: GrpcAttemptResult) => void): void {
    const dest = this.#dest;
    const def = this.#options.method_definition;
    const md = dest.outbound(this.#ctx ?? currentContext(), this.#metadata);
    (attempt.span as RpcClientSpan | undefined)?.writeCaptured(md, dest.dropped);
    const deadline = this.#deadline;
    this.#openedAt = dest.ports.clock.now();
    const stream = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, md, {
      ...(deadline !== undefined ? { deadline } : {}),
    }) as unknown as InstanceStream;
    this.#stream = stream;
    // Flow control: one message per startRead, as grpc-js's own call delivers them.
    if (!this.#readWanted) stream.pause();
    stream.on('metadata', (headers: Metadata) => {
      // The instance answers (grpc-js gives no headers for a trailers-only answer): a probe's success now.
      const now = dest.ports.clock.now();
      this.#try?.responded(now - this.#tryStart);
      this.#tracked?.outcome.responded(now - this.#callStart);
      this.#listener.onReceiveMetadata?.(headers);
    });
    stream.on('data', (message: unknown) => {
      if (def.responseStream) {
        this.#readWanted = false;
        stream.pause();
      }
      this.#listener.onReceiveMessage?.(message);
    });
    stream.on('error', () => {});
    stream.on('status', (received: StatusObject) => {
      const s = knownStatus(received);
      done({
        status: httpStatusOf(s.code),
        code: s.code,
        details: s.details,
        message: undefined,
        headers: undefined,
        trailers: s.metadata,
      });
    });
    for (const [m, cb] of this.#pending ?? []) stream.write(m, cb);
    this.#pending = undefined;
    if (this.#halfClosed) stream.end();
  }
}

/**
 * Calls `open` once `channel` is connected (READY), at once when it is; `refused` once it
 * cannot connect (TRANSIENT_FAILURE: its connection was refused or failed; a closed
 * channel), the state in which grpc-js fails a call with "No connection established"
 * without sending it. While it connects, waits for it, until the call's deadline or end.
 */
function whenConnected(channel: ChannelInterface, call: MeshCall, open: () => void, refused: () => void): void {
  let state: ConnectivityState;
  try {
    state = channel.getConnectivityState(true);
  } catch {
    refused();
    return;
  }
  if (state === ConnectivityState.READY) open();
  else if (state === ConnectivityState.TRANSIENT_FAILURE || state === ConnectivityState.SHUTDOWN) refused();
  else
    try {
      channel.watchConnectivityState(state, call.deadline ?? Number.POSITIVE_INFINITY, (err) => {
        // The deadline passed: the call's own timer ends it. Ended meanwhile: nothing left to wait for.
        if (err === undefined && call.ended === undefined) whenConnected(channel, call, open, refused);
      });
    } catch {
      refused();
    }
}

/** The status of a stream whose instance's connection could not be made, as grpc-js words it for a call. */
function notConnected(target: string): GrpcAttemptResult {
  const details = `No connection established to ${target}`;
  return {
    status: httpStatusOf(Status.UNAVAILABLE),
    code: Status.UNAVAILABLE,
    details,
    message: undefined,
    headers: undefined,
    trailers: new Metadata(),
  };
}
