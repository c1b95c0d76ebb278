import { createRequire } from 'node:module';
import type * as GrpcJs from '@grpc/grpc-js';
import type { ChannelCredentials, Client, ClientOptions, Interceptor, Server, ServerInterceptor, ServiceDefinition } from '@grpc/grpc-js';
import { type Authorizer, verifiedCaller } from '@meshlet/auth';
import {
  badOption,
  CALLER_HEADER,
  getTag,
  type Logger,
  type MeshContext,
  MeshletError,
  onlyOptionKeys,
  optionObject,
  shownValue,
  wholeNumber,
} from '@meshlet/core';
import type * as MeshletGrpc from '@meshlet/grpc';
import type { Admitted, ChannelPool, ChannelPoolOptions, GrpcClientPorts, Refusal } from '@meshlet/grpc';
import { requestTagsOf } from '@meshlet/propagation';
import type { Decision, RateLimiter } from '@meshlet/ratelimit';
import { errorAttributesOf, startRpcClientSpan, startRpcServerSpan } from '@meshlet/trace';
import { meshAttemptChain } from './attempt-stages.js';
import type { StreamSlot } from './destination-guard.js';
import type { GovernedCallDeps } from './governed-fetch.js';
import { checkGrpcShutdownOptions } from './mesh-option-checks.js';
import type { RequestHead } from './mesh-options.js';

/**
 * @grpc/grpc-js and @meshlet/grpc, loaded with this module when grpc-js is installed, else
 * undefined. grpc-js is an optional peer: an app that speaks gRPC has its own, and that one
 * copy must serve the mesh too (a second copy refuses the app's credentials and clients);
 * an app that does not is spared it. Loaded synchronously, so `mesh.grpc` stays a getter.
 */
const grpcModules = loadGrpc();

function loadGrpc(): { grpcJs: typeof GrpcJs; meshletGrpc: typeof MeshletGrpc } | undefined {
  const require = createRequire(import.meta.url);
  let grpcJs: typeof GrpcJs;
  try {
    grpcJs = require('@grpc/grpc-js') as typeof GrpcJs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
  return { grpcJs, meshletGrpc: require('@meshlet/grpc') as typeof MeshletGrpc };
}

/**
 * Takes `logger` out of the loggers grpc-js's lines go to (a mesh being released): nothing to
 * do when grpc-js is not installed, since then no line was ever routed.
 */
export function unrouteGrpcLogOf(logger: Logger): void {
  grpcModules?.meshletGrpc.unrouteGrpcLog(logger);
}

/** What `mesh.grpc` and the `grpc` option say when @grpc/grpc-js is not installed. */
const GRPC_NOT_INSTALLED = 'needs @grpc/grpc-js, an optional peer dependency of meshlet: npm install @grpc/grpc-js';

function grpcLoaded(): { grpcJs: typeof GrpcJs; meshletGrpc: typeof MeshletGrpc } {
  if (grpcModules === undefined) throw new MeshletError('MESHLET_GRPC_NOT_INSTALLED', `mesh.grpc ${GRPC_NOT_INSTALLED}`);
  return grpcModules;
}

/** A grpc-js generated client's constructor (`loadPackageDefinition(…).pkg.Service`, or protoc's). */
export type GrpcClientConstructor<C extends Client = Client> = (new (
  address: string,
  credentials: ChannelCredentials,
  options?: ClientOptions,
) => C) & {
  /** The methods (makeGenericClientConstructor's `service`): unary ones are governed without grpc-js's stub. */
  readonly service?: ServiceDefinition;
};

/** gRPC, governed like HTTP: `mesh.grpc`. */
export interface MeshGrpc {
  /**
   * A client of `service` by name: each call is routed by the mesh's rules to an instance's
   * gRPC port (`gRPC_port` metadata, else its port), with breakers, retries of UNAVAILABLE,
   * deadlines, faults, a CLIENT span, and the tags, identity and trace context in metadata.
   */
  client<K extends GrpcClientConstructor>(ctor: K, service: string, options?: ClientOptions): InstanceType<K>;
  /** The interceptor `client` installs, for a client made elsewhere: `{ interceptors: [mesh.grpc.interceptor('svc')] }`. */
  interceptor(service: string): Interceptor;
  /** The server interceptor: `new Server({ interceptors: [mesh.grpc.serverInterceptor()] })`. */
  serverInterceptor(): ServerInterceptor;
  /**
   * Registers the gRPC port once the server is bound: as `Meta.gRPC_port` beside the HTTP
   * port when this mesh serves HTTP too (registered already, or by `serve`/`register`
   * later), else as the instance's port (a gRPC-only service), as grpc-spring does. Adds
   * the standard health service (`grpc.health.v1.Health/Check`) unless the server has one:
   * give a gRPC-only service's ConsulRegistry `healthCheck: { type: 'grpc' }`.
   */
  serve(server: Server, port: number): Promise<void>;
  /** Graceful stop of the gRPC server: deregister, wait `deregisterDelayMs`, stop accepting, drain. */
  shutdown(options?: { deregisterDelayMs?: number; drainTimeoutMs?: number }): Promise<boolean>;
  /** Closes the channels to instances. */
  close(): void;
}

export interface MeshGrpcDeps extends GovernedCallDeps {
  readonly service: string;
  readonly contextOf: (req: RequestHead) => MeshContext;
  readonly authorizer: Authorizer;
  readonly rateLimiter: RateLimiter;
  /** Whether this mesh was given an HTTP port (createMesh({ port })). */
  readonly httpPort: number | undefined;
  /** The registered instance's port, if registered. */
  readonly registeredPort: () => number | undefined;
  readonly register: (overrides: { port: number }) => Promise<unknown>;
  readonly deregister: () => Promise<void>;
  /** True once the mesh's graceful stop began: the health service answers NOT_SERVING. */
  readonly stopping: () => boolean;
  /** Sets the gRPC port written to the registration's `Meta`. */
  readonly setGrpcPort: (port: number) => void;
  readonly channels?: ChannelPoolOptions;
  /** Further instances a stream whose instance refused its connection tries (the ports' `streamConnectRetries`). */
  readonly streamConnectRetries?: number;
  /** A stream's bulkhead slot (`destination-guard.ts`); undefined without bulkheads. */
  readonly streamSlot?: StreamSlot;
}

export function meshGrpc(deps: MeshGrpcDeps): MeshGrpc {
  const { grpcJs, meshletGrpc } = grpcLoaded();
  const { credentials, status } = grpcJs;
  const {
    addHealthService,
    ChannelPool,
    Destination,
    governMethods,
    interceptorFor,
    LIMITED_TRAILER,
    meshServerInterceptor,
    rpcSpanObserver,
    stopGracefully,
  } = meshletGrpc;
  const { PERMISSION_DENIED, RESOURCE_EXHAUSTED } = status;
  const { logger } = deps;
  let pool: ChannelPool | undefined;
  const channels = () => {
    pool ??= new ChannelPool(deps.channels);
    return pool;
  };
  const { guard } = deps;
  // Head sampling first, Meshlet's own span record when sampled (as HTTP's attempt spans).
  // Each unary attempt, and each stream at its end, is counted and timed in the client call metrics (`meshlet_client_*`), as HTTP's.
  const metrics = deps.tracing?.clientMetrics;
  const spans = {
    tracing: deps.tracing,
    startClientSpan: startRpcClientSpan,
    ...(metrics !== undefined ? { recordCall: metrics.add.bind(metrics), clock: deps.clock } : {}),
  };
  const clientPorts: GrpcClientPorts = {
    directory: deps.directory,
    router: deps.router,
    executor: deps.executor,
    ...spans,
    errorAttributes: errorAttributesOf,
    // Unary attempts and streams run the same chain as HTTP's (attempt-stages.ts), with gRPC's span, composed once per mesh.
    attemptChain: meshAttemptChain(deps, () => rpcSpanObserver(spans)),
    outboundHeaders: outboundHeaders(deps),
    // The destination's bulkhead and adaptive limit around a unary call, as around HTTP's;
    // a stream holds one of the bulkhead's slots for its life.
    ...(guard !== undefined ? { outboundLimit: guard } : {}),
    ...(deps.streamSlot !== undefined ? { streamSlot: deps.streamSlot } : {}),
    ...(deps.streamConnectRetries !== undefined ? { streamConnectRetries: deps.streamConnectRetries } : {}),
    // A stream's tries on the executor's instance breakers (outlier detection) and retry budget, as a unary call's attempts.
    trackStream: (service, mayRetry, path) => deps.executor.track(service, mayRetry, { method: 'POST', path }),
    clock: deps.clock,
    logger,
  };
  // A limiter's decision as the server interceptor's admission: an allowed decision is an
  // Admitted itself (its `release`, no `code`), so nothing is made for it.
  const toAdmission = (d: Decision): Admitted | Refusal =>
    d.allowed
      ? d
      : {
          code: RESOURCE_EXHAUSTED,
          details: `rate limited by ${deps.service}'s rule "${d.rule.name}"; retry after ${d.retryAfterSeconds} s`,
          trailers: { 'retry-after': String(d.retryAfterSeconds), [LIMITED_TRAILER]: d.rule.name },
          errorType: 'rate_limited',
        };
  const serverPorts = {
    // The HTTP pipeline's own context builder: the same dialects, verified caller and tags.
    context: (headers: Readonly<Record<string, string | string[]>>, path: string) => deps.contextOf({ headers, method: 'POST', url: path }),
    admit(ctx: MeshContext, path: string): Admitted | Refusal | Promise<Admitted | Refusal> {
      const tags = (k: string) => getTag(k, ctx);
      const auth = deps.authorizer.decide(verifiedCaller(ctx), { method: 'POST', path }, tags);
      if (!auth.allowed)
        return {
          code: PERMISSION_DENIED,
          details: `call refused by ${deps.service}'s auth rule "${auth.rule ?? '(default)'}": ${auth.reason}`,
          trailers: {},
          errorType: 'auth_denied',
        };
      const decided = deps.rateLimiter.decide({ method: 'POST', path, tag: tags });
      return decided instanceof Promise ? decided.then(toAdmission) : toAdmission(decided);
    },
    tracing: deps.tracing,
    // Head sampling first, Meshlet's own span record when sampled (as HTTP's SERVER spans).
    startServerSpan: startRpcServerSpan,
    logger,
  };
  let served: Server | undefined;
  let stopping = false;
  return {
    interceptor: (service) => interceptorFor(new Destination(clientPorts, service, channels())),
    client(ctor, service, options = {}) {
      const dest = new Destination(clientPorts, service, channels());
      const mesh = interceptorFor(dest);
      // The mesh's interceptor last (the bottom: it never calls on), beside the application's
      // own, in the form they came in (grpc-js refuses interceptors and providers together).
      const providers = options.interceptor_providers;
      const chain: ClientOptions = providers?.length
        ? { ...options, interceptor_providers: [...providers, () => mesh] }
        : { ...options, interceptors: [...(options.interceptors ?? []), mesh] };
      // The target is never dialled: every call goes out on an instance's channel from the pool.
      const client = new ctor(`dns:///${service}.meshlet.invalid`, credentials.createInsecure(), chain) as InstanceType<typeof ctor>;
      // Unary methods run governed without grpc-js's stub and interceptor chain, unless the
      // application put interceptors (or a call transformer) of its own on the client: those
      // see every call through the stub. Calls given their own interceptors keep the mesh's.
      const own = options.interceptors?.length || providers?.length || options.callInvocationTransformer;
      governMethods(client, ctor.service, dest, mesh, !own);
      return client;
    },
    serverInterceptor: () => meshServerInterceptor(serverPorts),
    async serve(server, port) {
      served = server;
      // For Consul's GRPC check (ConsulRegistry healthCheck { type: 'grpc' }) and Kubernetes' grpc probe.
      addHealthService(server, () => stopping || deps.stopping(), [deps.service]);
      deps.setGrpcPort(port);
      const registered = deps.registeredPort();
      if (registered !== undefined) await deps.register({ port: registered });
      else if (deps.httpPort === undefined) await deps.register({ port });
    },
    async shutdown(options = {}) {
      checkGrpcShutdownOptions(options);
      stopping = true;
      const server = served;
      if (!server) {
        await deps.deregister();
        return true;
      }
      return stopGracefully(server, {
        deregister: deps.deregister,
        ...(options.deregisterDelayMs !== undefined ? { deregisterDelayMs: options.deregisterDelayMs } : {}),
        ...(options.drainTimeoutMs !== undefined ? { drainTimeoutMs: options.drainTimeoutMs } : {}),
        clock: deps.clock,
        logger,
      });
    },
    close() {
      pool?.close();
      pool = undefined;
    },
  };
}

/** The last mesh headers made for one destination, and what they were made from. */
interface HeadersMemo {
  emitted: Readonly<Record<string, string>> | undefined;
  caller: string;
  identity: string | undefined;
  out: Readonly<Record<string, string>>;
}

/**
 * The mesh headers of a gRPC call, as the HTTP pipeline writes them (tags by dialect and
 * scope, caller, identity). The same frozen object comes back for a destination while the
 * emitted tag headers (propagation's, reused per request's tags), the caller header and
 * the identity stay the same, so the client keeps their Metadata instead of building it
 * per call. One memo per destination, bounded by the services called.
 */
function outboundHeaders(deps: GovernedCallDeps): (ctx: MeshContext, service: string) => Readonly<Record<string, string>> {
  const memos = new Map<string, HeadersMemo>();
  return (ctx, service) => {
    let emitted: Readonly<Record<string, string>> | undefined;
    const scoped = requestTagsOf(ctx);
    if (ctx.tags.size > 0 || scoped?.passThrough.size || deps.propagation.emitsWithoutTags) {
      const e = deps.propagation.emit(ctx.tags, scoped?.scopes, scoped?.passThrough);
      for (const d of e.dropped) deps.logger.warn('tag not sent', { code: 'MESHLET_TAG_DROPPED', key: d.key, reason: d.reason, service });
      emitted = e.headers;
    }
    const caller = deps.callerHeader();
    const identity = deps.identityHeader?.(service);
    const memo = memos.get(service);
    if (memo !== undefined && memo.emitted === emitted && memo.caller === caller && memo.identity === identity?.[1]) return memo.out;
    const out: Record<string, string> = {};
    if (emitted) for (const k in emitted) out[k.toLowerCase()] = emitted[k] as string;
    out[CALLER_HEADER] = caller;
    if (identity) out[identity[0].toLowerCase()] = identity[1];
    Object.freeze(out);
    memos.set(service, { emitted, caller, identity: identity?.[1], out });
    return out;
  };
}

/** The most channels `grpc.channels.maxChannels` may keep (README, "Safe defaults"): each holds a connection. */
export const MAX_GRPC_CHANNELS = 65_536;

/**
 * Checks createMesh's `grpc` option before anything starts: MeshletError
 * `MESHLET_BAD_OPTION` naming the field. Unknown keys are refused (a misspelt option is
 * not silently off); `channelOptions` are grpc-js's, except the overrides of the channel
 * itself: the pool makes one channel per instance, and one channel for all would undo routing.
 */
export function checkGrpcOptions(options: { readonly channels?: ChannelPoolOptions } | undefined): void {
  if (options === undefined) return;
  if (grpcModules === undefined) throw badOption('grpc', GRPC_NOT_INSTALLED);
  const grpcOption = optionObject(options, 'grpc');
  onlyOptionKeys(grpcOption, 'grpc', ['channels']);
  if (grpcOption.channels === undefined) return;
  const channels = optionObject(grpcOption.channels, 'grpc.channels');
  onlyOptionKeys(channels, 'grpc.channels', ['maxChannels', 'credentials', 'channelOptions']);
  const { maxChannels, credentials: creds, channelOptions } = channels;
  if (maxChannels !== undefined && !wholeNumber(maxChannels, 1, MAX_GRPC_CHANNELS))
    throw badOption('grpc.channels.maxChannels', `${shownValue(maxChannels)} must be a whole number from 1 to ${MAX_GRPC_CHANNELS}`);
  if (creds !== undefined && typeof creds !== 'function')
    throw badOption(
      'grpc.channels.credentials',
      "must be a function (instance) => ChannelCredentials (the pool asks it for each instance's channel)",
    );
  if (channelOptions === undefined) return;
  const grpcJsOptions = optionObject(channelOptions, 'grpc.channels.channelOptions');
  for (const key of ['channelOverride', 'channelFactoryOverride'])
    if (grpcJsOptions[key] !== undefined)
      throw badOption(
        `grpc.channels.channelOptions.${key}`,
        'the pool makes one channel per instance; a channel of your own would bypass routing',
      );
}
