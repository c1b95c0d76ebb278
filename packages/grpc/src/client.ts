import {
  type Client,
  type InterceptingCall,
  type InterceptingListener,
  type Interceptor,
  type InterceptorOptions,
  Metadata,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { currentContext, type MeshContext } from '@meshlet/core';
import type { Context } from '@opentelemetry/api';
import { ChannelPool } from './channel-pool.js';
import { CallEnded, Destination, effectiveDeadline, refusalSpan, routingTags, rpcSpan, statusOfError } from './governance.js';
import type { GrpcClientPorts, RouteChoice } from './ports.js';
import { UnaryCall, type UnarySink } from './unary-call.js';

export {
  CallEnded,
  FAULT_TRAILER,
  type GrpcAttemptResult,
  NotSentError,
  retryable,
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
 * takes the one message and runs at half-close; streaming calls are routed once at start
 * and bridged to the instance's stream (no retries: the messages already sent cannot be
 * replayed).
 */
class MeshCall implements InterceptingCallInterface, UnarySink {
  readonly #dest: Destination;
  readonly #options: InterceptorOptions;
  readonly #unaryCall: boolean;
  #unary: UnaryCall | undefined;
  #listener: Listener = {};
  #metadata = new Metadata();
  #ctx: MeshContext | undefined;
  #parent: Context | undefined;
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
    this.#parent = this.#dest.ports.tracing?.active();
    this.#metadata = metadata;
    const deadline = effectiveDeadline(this.#options, ctx, this);
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

  /** Routes a streaming call once, opens the stream on the instance and bridges it. */
  async #startStream(): Promise<void> {
    const dest = this.#dest;
    const ports = dest.ports;
    const def = this.#options.method_definition;
    const ctx = this.#ctx ?? currentContext();
    let choice: RouteChoice;
    try {
      await dest.ensure();
      choice = ports.router.decide(dest.service, routingTags(ctx, dest.service, def.path));
    } catch (err) {
      if (this.#done) return;
      const s = statusOfError(err);
      refusalSpan(ports, this.#parent, def.path, dest.service, s.code, s.details, ports.errorAttributes?.(err));
      return this.#deliver({ code: s.code, details: s.details, metadata: new Metadata() });
    }
    if (this.#done) return;
    const instance = choice.instance;
    this.#peer = ChannelPool.target(instance);
    const span = rpcSpan(ports, this.#parent, def.path, dest.service, choice, 0);
    const md = dest.outbound(ctx, this.#metadata);
    span?.inject(md);
    const end = ports.router.callStarted(instance);
    const client: Client = dest.pool.get(instance);
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
