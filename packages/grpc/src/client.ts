import {
  type Client,
  type InterceptingCall,
  type InterceptingListener,
  type Interceptor,
  type InterceptorOptions,
  Metadata,
  propagate as Propagate,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { currentContext, getTag, type Instance, type MeshContext, MeshletError, SystemTag, sleep, type TagLookup } from '@meshlet/core';
import { type Context, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ChannelPool } from './channel-pool.js';
import { deadlineMs, inboundDeadline } from './inbound-deadline.js';
import type { ExecutorCall, GrpcClientPorts, GrpcPicker, RouteChoice } from './ports.js';
import { LIMITED_TRAILER, rpcNames } from './rpc-names.js';
import { grpcCodeOf, httpStatusOf, statusName } from './status-map.js';

type InterceptingCallInterface = ConstructorParameters<typeof InterceptingCall>[0];
type MessageContext = Parameters<InterceptingCallInterface['sendMessageWithContext']>[0];

/** Trailer on a status the mesh made up (an injected fault), naming the rule. */
export const FAULT_TRAILER = 'x-meshlet-fault';

/**
 * The method the call executor sees for a unary call. Its only use there is the
 * idempotency gate of retries; a gRPC call is retried by its status code instead (see
 * `retryable`), so every unary call passes the gate and `pick` decides per attempt. API
 * breaker rules match `api`, which is always `POST /pkg.Service/Method`, gRPC's request line.
 */
const RETRY_BY_STATUS = 'GET';

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
 * grpc-js's status for a call that never got a connection (its picker's failure while the
 * subchannel is in TRANSIENT_FAILURE: "No connection established. Last error: connect
 * ECONNREFUSED …"). Nothing reached any server.
 */
const NOT_CONNECTED = /^No connection established/;

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
      return { code: Status.RESOURCE_EXHAUSTED, details: message };
    case 'MESHLET_CANCELLED':
      return { code: Status.CANCELLED, details: message };
    default:
      return { code: Status.INTERNAL, details: `meshlet: ${message}` };
  }
}

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
 */
export function meshInterceptor(ports: GrpcClientPorts, service: string, options: MeshInterceptorOptions): Interceptor {
  // grpc-js uses what an interceptor returns only through InterceptingCallInterface: the
  // MeshCall itself, without an InterceptingCall in front that would only pass calls on.
  return (callOptions) => new MeshCall(ports, service, options.pool, callOptions) as unknown as InterceptingCall;
}

/** Cancelled by the caller (cancelWithStatus), or its deadline passed. */
class CallEnded extends MeshletError {
  readonly status: number;
  constructor(status: number, details: string) {
    super(status === Status.DEADLINE_EXCEEDED ? 'MESHLET_DEADLINE' : 'MESHLET_CANCELLED', details);
    this.status = status;
  }
}

type Listener = Partial<InterceptingListener>;

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
 * instance chosen by the mesh. Unary calls buffer their one message and run through the
 * call executor at half-close; streaming calls are routed once at start and bridged to the
 * instance's stream (no retries: the messages already sent cannot be replayed).
 */
class MeshCall implements InterceptingCallInterface {
  readonly #ports: GrpcClientPorts;
  readonly #service: string;
  readonly #pool: ChannelPool;
  readonly #options: InterceptorOptions;
  readonly #unary: boolean;
  readonly #abort = new AbortController();
  #listener: Listener = {};
  #metadata = new Metadata();
  #ctx: MeshContext | undefined;
  #parent: Context | undefined;
  #message: unknown;
  #done = false;
  #peer = '';
  #cancelDeadline: (() => void) | undefined;
  #stream: InstanceStream | undefined;
  #readWanted = false;
  /** The call's deadline in ms since the epoch: its own, or its parent server call's if earlier. */
  #deadline: number | undefined;
  /** A stream's messages written before its instance was chosen. */
  #pending: [unknown, (() => void) | undefined][] | undefined;
  #halfClosed = false;

  constructor(ports: GrpcClientPorts, service: string, pool: ChannelPool, options: InterceptorOptions) {
    this.#ports = ports;
    this.#service = service;
    this.#pool = pool;
    this.#options = options;
    const def = options.method_definition;
    this.#unary = !def.requestStream && !def.responseStream;
    // A single response is read without waiting for startRead, as grpc-js's own unary-response call does.
    this.#readWanted = !def.responseStream;
  }

  start(metadata: Metadata, listener?: Listener): void {
    // grpc-js calls start synchronously from the stub's method: the caller's request context.
    this.#ctx = currentContext();
    this.#parent = this.#ports.tracing?.active();
    this.#metadata = metadata;
    this.#listener = listener ?? {};
    const deadline = this.#effectiveDeadline();
    if (deadline !== undefined) {
      this.#deadline = deadline;
      const ms = Math.max(0, deadline - Date.now());
      this.#cancelDeadline = this.#ports.clock.setTimeout(
        () => this.#end(new CallEnded(Status.DEADLINE_EXCEEDED, `deadline of ${this.#options.method_definition.path} exceeded`)),
        ms,
      );
    }
    if (!this.#unary) void this.#startStream();
  }

  sendMessageWithContext(context: MessageContext, message: unknown): void {
    if (this.#unary) {
      this.#message = message;
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
    if (this.#unary) void this.#runUnary();
    else if (this.#stream) this.#stream.end();
    else this.#halfClosed = true;
  }

  startRead(): void {
    if (this.#unary) return;
    this.#readWanted = true;
    this.#stream?.resume();
  }

  /**
   * The earliest of the call's own deadline, the deadline of the inbound gRPC call being
   * served (from the request context, as grpc-java's Context carries it) and its `parent`
   * server call's; the parent's cancellation passed on — grpc-js's `propagate_flags`
   * (DEFAULTS: both).
   */
  #effectiveDeadline(): number | undefined {
    let deadline = deadlineMs(this.#options.deadline);
    // Inside a gRPC handler: the inbound call's deadline, unless this call's own is earlier.
    const inbound = this.#ctx ? inboundDeadline(this.#ctx) : undefined;
    if (inbound !== undefined && (deadline === undefined || inbound < deadline)) deadline = inbound;
    const parent = this.#options.parent;
    if (!parent) return deadline;
    const flags = this.#options.propagate_flags ?? Propagate.DEFAULTS;
    if (flags & Propagate.DEADLINE) {
      const inherited = deadlineMs(parent.getDeadline());
      if (inherited !== undefined) deadline = deadline === undefined ? inherited : Math.min(deadline, inherited);
    }
    if (flags & Propagate.CANCELLATION)
      (parent as unknown as { once(e: 'cancelled', f: () => void): void }).once('cancelled', () =>
        this.#end(new CallEnded(Status.CANCELLED, 'the parent call was cancelled')),
      );
    return deadline;
  }

  cancelWithStatus(code: Status, details: string): void {
    this.#end(new CallEnded(code, details));
  }

  getPeer(): string {
    return this.#peer;
  }

  getAuthContext(): null {
    return null;
  }

  /** Ends the call with an error status, once: the attempt in flight is aborted. */
  #end(err: CallEnded): void {
    if (this.#done) return;
    this.#abort.abort(err);
    this.#stream?.cancel();
    this.#deliver({ code: err.status, details: err.message, metadata: new Metadata() });
  }

  #deliver(status: StatusObject, headers?: Metadata, message?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#cancelDeadline?.();
    const l = this.#listener;
    if (headers) l.onReceiveMetadata?.(headers);
    if (status.code === Status.OK && message !== undefined) l.onReceiveMessage?.(message);
    l.onReceiveStatus?.(status);
  }

  /** Routing tags of this call: the request's, plus the destination and the gRPC method. */
  #tags(): TagLookup {
    const ctx = this.#ctx ?? currentContext();
    const service = this.#service;
    const path = this.#options.method_definition.path;
    return (tag) => {
      if (tag === SystemTag.destinationService) return service;
      if (tag === 'destination.interface') return path;
      if (tag === 'request.http.method') return 'POST';
      return getTag(tag, ctx);
    };
  }

  /** The outbound metadata of every attempt: the caller's, plus the mesh's headers (never replacing the caller's own). */
  #outbound(): Metadata {
    const md = this.#metadata.clone();
    const ctx = this.#ctx ?? currentContext();
    const headers = this.#ports.outboundHeaders(ctx, this.#service);
    for (const k in headers) if (md.get(k).length === 0) md.set(k, headers[k] as string);
    if (!this.#ports.tracing && ctx.trace && md.get('traceparent').length === 0) {
      // No tracing configured: pass the caller's trace context on as it came.
      md.set('traceparent', ctx.trace.traceparent);
      if (ctx.trace.tracestate) md.set('tracestate', ctx.trace.tracestate);
    }
    return md;
  }

  async #ensure(): Promise<void> {
    const { directory } = this.#ports;
    if (!directory.isReady(this.#service)) await directory.ensure(this.#service);
  }

  async #runUnary(): Promise<void> {
    const ports = this.#ports;
    const attempts = new UnaryAttempts(
      ports,
      this.#service,
      this.#options,
      this.#pool,
      this.#message,
      this.#outbound(),
      this.#tags(),
      this.#deadline,
      this.#abort.signal,
    );
    try {
      await this.#ensure();
      if (this.#done) return;
      // The destination's adaptive limit around the executor, as HTTP's governedCall does:
      // a call over it is refused before routing; the limit samples the call's whole time.
      const limit = ports.outboundLimit;
      const out = await (limit === undefined
        ? ports.executor.call(attempts)
        : limit(this.#service, () => ports.executor.call(attempts), this.#abort.signal));
      if (out instanceof Response) {
        // A breaker's fallback: an HTTP answer, as gRPC maps a response without grpc-status.
        void out.body?.cancel().catch(() => {});
        const trailers = new Metadata();
        trailers.set('x-meshlet-fallback', 'circuit-open');
        this.#deliver({ code: grpcCodeOf(out.status), details: `fallback of ${this.#service}: HTTP ${out.status}`, metadata: trailers });
        return;
      }
      this.#deliver({ code: out.code, details: out.details, metadata: out.trailers }, out.headers, out.message);
    } catch (err) {
      if (err instanceof CallEnded) return this.#end(err);
      if (attempts.started === 0) attempts.rejectedSpan(err);
      const s = statusOfError(err);
      this.#deliver({ code: s.code, details: s.details, metadata: new Metadata() });
    }
  }

  /** Routes a streaming call once, opens the stream on the instance and bridges it. */
  async #startStream(): Promise<void> {
    const ports = this.#ports;
    const def = this.#options.method_definition;
    let choice: RouteChoice;
    try {
      await this.#ensure();
      choice = ports.router.decide(this.#service, this.#tags());
    } catch (err) {
      if (this.#done) return;
      const s = statusOfError(err);
      rpcSpan(ports, this.#parent, def.path, this.#service, undefined, 0)?.end(s.code, s.details);
      return this.#deliver({ code: s.code, details: s.details, metadata: new Metadata() });
    }
    if (this.#done) return;
    const instance = choice.instance;
    this.#peer = ChannelPool.target(instance);
    const span = rpcSpan(ports, this.#parent, def.path, this.#service, choice, 0);
    const md = this.#outbound();
    span?.inject(md);
    const end = ports.router.callStarted(instance);
    const client: Client = this.#pool.get(instance);
    const deadline = this.#deadline;
    const stream = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, md, {
      ...(deadline !== undefined ? { deadline } : {}),
    }) as unknown as InstanceStream;
    this.#stream = stream;
    // Flow control: one message per startRead, as grpc-js's own call delivers them.
    if (!this.#readWanted) stream.pause();
    stream.on('metadata', (headers: Metadata) => this.#listener.onReceiveMetadata?.(headers));
    stream.on('data', (message: unknown) => {
      if (def.responseStream) {
        this.#readWanted = false;
        stream.pause();
      }
      this.#listener.onReceiveMessage?.(message);
    });
    stream.on('error', () => {});
    stream.on('status', (s: StatusObject) => {
      end();
      span?.end(s.code, s.details);
      this.#deliver(s);
    });
    for (const [m, cb] of this.#pending ?? []) stream.write(m, cb);
    this.#pending = undefined;
    if (this.#halfClosed) stream.end();
  }
}

/**
 * The attempts of one unary call, as the call executor drives them: the object is the
 * executor's call itself (methods, not a set of closures per call), and picks through
 * routing's picker for the destination, made once per service.
 */
class UnaryAttempts implements ExecutorCall<GrpcAttemptResult> {
  started = 0;
  readonly service: string;
  readonly method = RETRY_BY_STATUS;
  readonly path: string;
  readonly api: string;
  readonly retryable = true;
  readonly signal: AbortSignal;
  #lastRetryable = false;
  #choice: RouteChoice | undefined;
  readonly #ports: GrpcClientPorts;
  readonly #picker: GrpcPicker;
  readonly #options: InterceptorOptions;
  readonly #pool: ChannelPool;
  readonly #message: unknown;
  readonly #metadata: Metadata;
  readonly #tags: TagLookup;
  readonly #parent: Context | undefined;
  readonly #deadline: number | undefined;

  constructor(
    ports: GrpcClientPorts,
    service: string,
    options: InterceptorOptions,
    pool: ChannelPool,
    message: unknown,
    metadata: Metadata,
    tags: TagLookup,
    deadline: number | undefined,
    signal: AbortSignal,
  ) {
    this.#deadline = deadline;
    this.#ports = ports;
    this.service = service;
    this.#picker = ports.router.picker(service);
    this.#options = options;
    this.path = options.method_definition.path;
    this.api = `POST ${this.path}`;
    this.signal = signal;
    this.#pool = pool;
    this.#message = message;
    this.#metadata = metadata;
    this.#tags = tags;
    this.#parent = ports.tracing?.active();
  }

  discard(): void {}

  injected(result: GrpcAttemptResult): boolean {
    return result.injected === true;
  }

  pick(tried: ReadonlySet<string>): Instance | undefined {
    if (tried.size === 0) {
      this.#choice = this.#picker.first(this.#tags);
      return this.#choice.instance;
    }
    // A retry: only after a status gRPC calls safe to retry; then an instance not yet
    // tried, nearest locality first (routing's picker, not a re-decision that may repeat one).
    if (!this.#lastRetryable) return undefined;
    const next = this.#picker.next(this.#tags, tried);
    if (next === undefined) return undefined;
    this.#choice = next;
    return next.instance;
  }

  send(instance: Instance, signal: AbortSignal | undefined): Promise<GrpcAttemptResult> {
    return this.#send(instance, signal);
  }

  async #send(instance: Instance, signal: AbortSignal | undefined): Promise<GrpcAttemptResult> {
    const ports = this.#ports;
    const def = this.#options.method_definition;
    const attempt = this.started++;
    this.#lastRetryable = false;
    const span = rpcSpan(ports, this.#parent, def.path, this.service, this.#choice, attempt, instance);
    const md = attempt === 0 ? this.#metadata : this.#metadata.clone();
    span?.inject(md);
    const end = ports.router.callStarted(instance);
    try {
      const fault = ports.faults(this.service)?.decide(this.#tags);
      if (fault?.rule !== undefined) span?.setAttribute('io.meshlet.fault', fault.rule);
      if (fault?.delayMs) await sleep(ports.clock, fault.delayMs, signal);
      let result: GrpcAttemptResult;
      if (fault?.abortStatus !== undefined) {
        const trailers = new Metadata();
        trailers.set(FAULT_TRAILER, fault.rule ?? 'fault');
        const code = grpcCodeOf(fault.abortStatus);
        result = {
          status: httpStatusOf(code),
          code,
          details: `fault injected by rule ${fault.rule ?? ''}`,
          message: undefined,
          headers: undefined,
          trailers,
          injected: true,
        };
      } else result = await unaryAttempt(this.#pool.get(instance), def, this.#message, md, this.#deadline, signal);
      this.#lastRetryable = retryable(result);
      span?.end(result.code, result.details);
      if (result.code === Status.UNAVAILABLE && result.headers === undefined && NOT_CONNECTED.test(result.details))
        throw new NotSentError(result);
      return result;
    } catch (err) {
      const s = statusOfError(err);
      span?.end(s.code, s.details);
      throw err;
    } finally {
      end();
    }
  }

  /** A span for a call refused before any attempt (breaker open, no instance). */
  rejectedSpan(err: unknown): void {
    const s = statusOfError(err);
    rpcSpan(this.#ports, this.#parent, this.path, this.service, undefined, 0)?.end(s.code, s.details);
  }
}

/**
 * One unary attempt on an instance's channel; resolves with whatever status it ends with.
 * It drives the channel's call itself (what grpc-js's bottom unary call does: serialize,
 * send, half-close, read one message) rather than going through a second stub
 * (`makeUnaryRequest`), which would cost an Error stack capture, an EventEmitter and an
 * interceptor chain per attempt on top of the caller's own stub.
 */
function unaryAttempt(
  client: Client,
  def: InterceptorOptions['method_definition'],
  message: unknown,
  metadata: Metadata,
  deadline: number | undefined,
  signal: AbortSignal | undefined,
): Promise<GrpcAttemptResult> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    let serialized: Buffer;
    try {
      serialized = def.requestSerialize(message);
    } catch (err) {
      const details = `request message serialization failure: ${(err as Error).message}`;
      return resolve({ status: 500, code: Status.INTERNAL, details, message: undefined, headers: undefined, trailers: new Metadata() });
    }
    const call = client.getChannel().createCall(def.path, deadline ?? Number.POSITIVE_INFINITY, undefined, null, null);
    let value: unknown;
    let headers: Metadata | undefined;
    let readError: { code: number; details: string } | undefined;
    const onAbort = () => call.cancelWithStatus(Status.CANCELLED, 'attempt aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    call.start(metadata, {
      onReceiveMetadata(h) {
        headers = h;
      },
      onReceiveMessage(buffer: Buffer) {
        try {
          value = def.responseDeserialize(buffer);
        } catch (err) {
          readError = { code: Status.INTERNAL, details: `response message parsing error: ${(err as Error).message}` };
          call.cancelWithStatus(readError.code, readError.details);
        }
      },
      onReceiveStatus(s) {
        signal?.removeEventListener('abort', onAbort);
        // Ended by the attempt's timeout or the caller: the executor decides what that means.
        if (signal?.aborted) return reject(signal.reason);
        const code = readError?.code ?? s.code;
        const details = readError?.details ?? s.details;
        // OK without a message is a broken server, as grpc-js reports it.
        if (code === Status.OK && value === undefined)
          return resolve({
            status: 501,
            code: Status.UNIMPLEMENTED,
            details: 'no message received',
            message: undefined,
            headers,
            trailers: s.metadata,
          });
        resolve({ status: httpStatusOf(code), code, details, message: value, headers, trailers: s.metadata });
      },
    });
    call.sendMessageWithContext({}, serialized);
    call.halfClose();
    call.startRead();
  });
}

/** A CLIENT span for one attempt, with OpenTelemetry's rpc.* semantic conventions. */
interface RpcClientSpan {
  inject(md: Metadata): void;
  setAttribute(key: string, value: string | number): void;
  end(code: number, details: string): void;
}

function rpcSpan(
  ports: GrpcClientPorts,
  parent: Context | undefined,
  path: string,
  service: string,
  choice: RouteChoice | undefined,
  attempt: number,
  instance: Instance | undefined = choice?.instance,
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
    const port = Number(ChannelPool.target(instance).split(':').at(-1));
    attributes['server.port'] = port;
    attributes['io.meshlet.instance'] = instance.id;
  }
  if (choice?.rule) attributes['io.meshlet.route'] = choice.rule;
  if (choice?.lane) attributes['io.meshlet.lane'] = choice.lane;
  if (choice?.revision) attributes['io.meshlet.rules.revision'] = choice.revision;
  if (attempt > 0) attributes['io.meshlet.attempt'] = attempt;
  const base = parent ?? tracing.active();
  const span: Span = tracing.tracer.startSpan(names.spanName, { kind: SpanKind.CLIENT, attributes }, base);
  const ctx = trace.setSpan(base, span);
  let ended = false;
  return {
    inject(md) {
      const carrier: Record<string, string> = {};
      tracing.propagation.inject(ctx, carrier);
      for (const k in carrier) md.set(k, carrier[k] as string);
    },
    setAttribute(key, value) {
      span.setAttribute(key, value);
    },
    end(code, details) {
      if (ended) return;
      ended = true;
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
