import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { MeshKey, RouteDeclaration } from '@meshlet/auth';
import type { CallDefaults, CallExecutor } from '@meshlet/breaker';
import type {
  Clock,
  Instance,
  KvStore,
  Logger,
  LogLevel,
  MeshContext,
  Registry,
  RuleRepository,
  RuleWatcherStatus,
  TagLookup,
} from '@meshlet/core';
import type { ChannelPoolOptions } from '@meshlet/grpc';
import type { TagPropagationOptions } from '@meshlet/propagation';
import type { BulkheadOptions, RateLimiter } from '@meshlet/ratelimit';
import type { Router, RouterOptions, WarmupOptions } from '@meshlet/route';
import type { Tracing, TracingOptions } from '@meshlet/trace';
import type { AdaptiveOption, OutboundAdaptiveOption } from './adaptive-protection.js';
import type { Fetch } from './governed-fetch.js';
import type { MeshRequest } from './governed-request.js';
import type { MeshGrpc } from './grpc.js';
import type { HeaderTag, TagHeaderTrust } from './inbound.js';
import type { KoaMiddleware } from './koa.js';
import type { ServeOptions } from './lifecycle.js';

export interface MeshOptions {
  /** This service's name: a lower-case DNS label (letters, digits, `-`; starts with a letter), as Spring Cloud and URLs require. */
  readonly service: string;
  readonly version?: string;
  readonly namespace?: string;
  /** The port this service listens on; can also be given to `register()`, or found by `serve()`. */
  readonly port?: number;
  /** The address other services reach this one at. Default 127.0.0.1. */
  readonly address?: string;
  /** Default `<service>-<port>`, as Spring Cloud Consul does. */
  readonly instanceId?: string;
  /**
   * Extra instance metadata (zone, region, lane, weight, `secure: 'true'` for https). The keys the
   * mesh writes itself (MESH_METADATA: version, namespace, registered-at, meshlet-admin,
   * apis-hash, gRPC_port) are refused here, each naming the option that sets it.
   */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Where services are found. Default: the process-wide in-memory registry. */
  readonly registry?: Registry;
  /** Where rules live (`meshlet/rules/<service>`). Default: the process-wide in-memory store. */
  readonly rules?: KvStore;
  /** Request headers, cookies and query parameters lifted into custom tags at this service's edge. */
  readonly tagsFromHeaders?: readonly HeaderTag[];
  /**
   * Whose tag headers (`x-meshlet-tags`, TSF's, Polaris', SCT's) this service believes:
   * `'verified'` — only a mesh caller whose signed identity verifies (needs `auth`; the
   * default with `auth`); `'any'` — every sender, an edge client too (the default without
   * `auth`: a client can then pick its own gray release, lane or tier); `'none'` — nobody,
   * tags come only from `tagsFromHeaders` (what an edge service without `auth` should set).
   */
  readonly tagHeaders?: TagHeaderTrust;
  /**
   * Routing defaults: balancer, nearby threshold, panic threshold, departed grace, seeded
   * random. The caller's zone/region come from metadata.
   */
  readonly route?: Omit<RouterOptions, 'exclusion' | 'location'>;
  /**
   * What protects calls to services without rules: retries on another instance when
   * nothing was sent, passive outlier ejection (README, "Safe defaults"). A service's
   * `breaker` rules override each part they name; false turns the defaults off.
   */
  readonly callDefaults?: Partial<CallDefaults> | false;
  /** Tracing: spans, propagation formats, trace log, metrics. Off when absent. */
  readonly tracing?: Tracing | Omit<TracingOptions, 'service' | 'version' | 'namespace' | 'instanceId' | 'clock'>;
  /** Distributed rate limits through Redis, and client-side bulkheads per destination. */
  readonly ratelimit?: {
    readonly redisUrl?: string;
    readonly redisTimeoutMs?: number;
    /**
     * An adaptive concurrency limit on inbound requests (`true`: every default), refusing
     * with 503 past it; a rule document's `ratelimit.adaptive` wins. See the ratelimit README.
     */
    readonly adaptive?: AdaptiveOption;
    readonly bulkheads?: { readonly defaults?: BulkheadOptions; readonly services?: Readonly<Record<string, BulkheadOptions>> };
    /**
     * An adaptive concurrency limit per destination (`true`: every destination, every
     * default): a call over it is refused at once with OutboundLimitError
     * (`MESHLET_OUTBOUND_LIMITED`). See README, "Adaptive protection".
     */
    readonly outboundAdaptive?: OutboundAdaptiveOption;
  };
  /**
   * Service auth: calls carry an identity signed with the mesh key (the first key signs,
   * all verify, for rollovers); inbound, only a verified identity is a caller, and the
   * service's `auth` rules allow or deny (403). `openapiFiles`, `routes` and `catalogPath`
   * here are the same as `catalog`'s (kept for earlier code; `catalog` wins).
   */
  readonly auth?: {
    readonly keys: readonly MeshKey[];
    readonly defaultAction?: 'allow' | 'deny';
    readonly ttlMs?: number;
    readonly maxSkewMs?: number;
    readonly openapiFiles?: readonly string[];
    readonly routes?: readonly RouteDeclaration[];
    readonly catalogPath?: string | false;
  };
  /**
   * The API catalog: this service's APIs from OpenAPI JSDoc in `openapiFiles` (swagger-jsdoc)
   * or declared `routes`, served at `path` (default `/meshlet/apis`; false: not served),
   * published in the rule store with its hash in the registration `Meta`, and used to name
   * server spans by route template where the framework does not (node:http). On whenever
   * `auth` is given, too (as when the catalog was part of `auth`). Its endpoint is an API of
   * the service: only a request the service's auth rules and limits admit is answered.
   * `path` is the request's whole path, the one the rules compare (Express's `originalUrl`):
   * under `app.use('/api', mesh.express())`, serve it with `path: '/api/meshlet/apis'`.
   */
  readonly catalog?: {
    readonly openapiFiles?: readonly string[];
    readonly routes?: readonly RouteDeclaration[];
    readonly path?: string | false;
  };
  /** Tag header dialects read and written (TSF, Polaris, Spring Cloud Tencent), scopes, raw pass-through headers. Default: read all, write Meshlet's. */
  readonly dialects?: TagPropagationOptions;
  /** Ramp a new instance's weight up over a window after its registration, so a cold process is not flooded. */
  readonly warmup?: WarmupOptions;
  /**
   * How long the services this mesh calls stay followed. A destination is followed from its
   * first call (a registry watch of its instances, a watch of its rules, its breakers,
   * routing and limits); one not called for `idleMs` (default 10 minutes) with no attempt
   * in flight is released: its watches end and its state is dropped, and its next call
   * follows it again, waiting for its instances as a first call does. At most `max`
   * (default 1,024) are followed at once: a call to another releases the least recently
   * called one with nothing in flight, and is refused with TooManyDestinationsError
   * (`MESHLET_TOO_MANY_DESTINATIONS`) when every one has a call in flight.
   */
  readonly destinations?: { readonly idleMs?: number; readonly max?: number };
  /**
   * Adjusts a called service's instances before routing sees them, e.g. TSF lanes:
   * `(service, list) => tsfLanes.annotate(list)`.
   */
  readonly instanceFilter?: (service: string, instances: readonly Instance[]) => readonly Instance[];
  /**
   * Tags to add to an inbound request from its other tags (they never replace a tag that
   * arrived), e.g. the TSF lane an entrance group puts a request in.
   */
  readonly inboundTags?: (tags: TagLookup) => Readonly<Record<string, string>> | undefined;
  /**
   * Mount the admin status endpoint (off unless given). `token` is a secret of at least 16
   * characters (shorter: AdminTokenError, `MESHLET_ADMIN_TOKEN`) that callers never send:
   * they send core's adminToken(token, "<address>:<port>") for the address this mesh registered at.
   * `path` (default `/_meshlet`; published in the registration) is the request's whole path,
   * compared as the catalog's is (canonical, case kept): under `app.use('/api', mesh.express())`,
   * give `path: '/api/_meshlet'`.
   */
  readonly admin?: { readonly token: string; readonly path?: string };
  /** Path answered by the mesh with 200 (503 while stopping) for health checks; false to leave it to the app. Default `/health`. */
  readonly healthPath?: string | false;
  readonly clock?: Clock;
  /** Where the mesh logs; wrapped so that per-request conditions are logged at most once per code per `logIntervalMs`. */
  readonly logger?: Logger;
  /**
   * The least level written (`debug`, `info`, `warn`, `error`): entries below it are counted
   * (`meshlet_conditions_total`), not written. Default `warn` for the default logger (JSON
   * lines on stderr); with `logger` given, every level is passed on unless this is set.
   */
  readonly logLevel?: LogLevel;
  /** Least time between two log lines of one per-request code (a bad header, a dropped tag). Default 60 000. */
  readonly logIntervalMs?: number;
  /** The HTTP client governed calls are sent with. Default: global fetch. */
  readonly fetch?: Fetch;
  /** gRPC clients (`mesh.grpc`): the channels to instances (credentials, grpc-js channel options, `maxChannels`, default 1 024). */
  readonly grpc?: { readonly channels?: ChannelPoolOptions };
}

/**
 * What the mesh reads of an inbound request to build its context: a node:http
 * IncomingMessage is one; a gRPC call's metadata and method path make another.
 */
export interface RequestHead {
  readonly headers: IncomingHttpHeaders;
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  /** Express's path before a router's mount point was cut from `url`: preferred when present. */
  readonly originalUrl?: string | undefined;
}

export type NodeListener<Req extends IncomingMessage, Res extends ServerResponse> = (req: Req, res: Res) => void;
export type Next = (err?: unknown) => void;

/** The part of a Fastify reply the plugin's error handler uses. */
export interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  headers(values: Readonly<Record<string, string>>): FastifyReplyLike;
  send(payload?: unknown): unknown;
}

/** The part of a Fastify instance the plugin uses. */
export interface FastifyHookHost {
  /** Governance errors a handler threw answer 429/403; any other error is sent as Fastify would. */
  setErrorHandler(handler: (error: unknown, request: unknown, reply: FastifyReplyLike) => unknown): unknown;
  addHook(
    name: 'onRequest',
    hook: (
      request: { raw: IncomingMessage; routeOptions?: { url?: string | undefined } },
      reply: { raw: ServerResponse; hijack(): void },
      done: (err?: Error) => void,
    ) => void,
  ): unknown;
}
export type FastifyPlugin = (app: FastifyHookHost, opts: unknown, done: (err?: Error) => void) => void;

export interface Mesh {
  readonly service: string;
  readonly version: string;
  readonly namespace: string;
  readonly registry: Registry;
  readonly logger: Logger;
  /** WHATWG fetch that governs calls to services and carries tags on. */
  readonly fetch: Fetch;
  /**
   * undici's `request`, governed exactly as `fetch` and sent through one keep-alive Agent
   * of this mesh: the fast path, several times less CPU a call than WHATWG fetch.
   */
  readonly request: MeshRequest;
  /** Writes rules with validation, history and one-call rollback. */
  readonly rules: RuleRepository;
  /**
   * Resolves once this process has the rules document now in the store for `service` in
   * force (its watch of the store has caught up, e.g. after `rules.apply` or `rollback`).
   * Rejects with `MESHLET_RULES_REJECTED` when this process rejected that document (the
   * previous rules stay in force), and with `MESHLET_RULES_NOT_IN_FORCE` after `timeoutMs`
   * (default 10 000, real time).
   */
  rulesInForce(service: string, options?: { timeoutMs?: number }): Promise<RuleWatcherStatus>;
  readonly router: Router;
  /** Breakers, timeouts and retries around governed calls; `snapshot()` for dashboards. */
  readonly breakers: CallExecutor;
  readonly rateLimiter: RateLimiter;
  readonly tracing: Tracing | undefined;
  /** True from the start of a graceful stop: the health path answers 503. */
  readonly stopping: boolean;
  /**
   * Registers this instance; call it once the server is listening (or use serve()). Called
   * again, it registers after the one before; an instance under another id (another port)
   * replaces the one before, which is deregistered. `instance` names it once the registry
   * took it: a refused registration leaves the one before (or none).
   */
  register(overrides?: { port?: number; address?: string }): Promise<Instance>;
  /**
   * Rotates the identity keys of a running mesh (auth on): `keys[0]` signs from now on and
   * every key verifies. A key no longer listed is still accepted for `overlapMs` (default:
   * the token lifetime plus the skew, 35 s), so calls signed with it just before stay good
   * until they expire. Bad keys throw (`MESHLET_BAD_MESH_KEY`) and the keys in force stay.
   * Rollover across a mesh: add the new key behind the old one everywhere, then put it
   * first everywhere, then drop the old one (a new key first anywhere before every service
   * verifies it makes that caller anonymous). Other bytes under an id still accepted are
   * refused: a new key takes a new id. See `followIdentityKeys` for keys from config.
   */
  setIdentityKeys(keys: readonly MeshKey[], options?: { readonly overlapMs?: number }): void;
  /** The registered instance, if any. */
  readonly instance: Instance | undefined;
  /** A healthy instance of `service`, chosen as a governed call from the current request would. */
  resolve(service: string): Promise<Instance>;
  /** The context of an inbound request, built from its headers (a node:http request, or its head alone). */
  contextOf(req: RequestHead): MeshContext;
  /** Wraps a node:http request listener: context, health path, span, rate limits. */
  httpHandler<Req extends IncomingMessage, Res extends ServerResponse>(listener: NodeListener<Req, Res>): NodeListener<Req, Res>;
  /** Express middleware: `app.use(mesh.express())`. */
  express(): (req: IncomingMessage, res: ServerResponse, next: Next) => void;
  /**
   * Express error middleware, after the routes: a limit or auth rule a decorated handler
   * threw (`@RateLimit`, `@Authorize`) becomes its 429 or 403; other errors go on.
   */
  expressErrors(): (err: unknown, req: IncomingMessage, res: ServerResponse, next: Next) => void;
  /** Koa middleware: `app.use(mesh.koa())`, on the same pipeline (see koaMiddleware). */
  koa(): KoaMiddleware;
  /** Fastify plugin: `app.register(mesh.fastify)`. */
  readonly fastify: FastifyPlugin;
  /** gRPC (@grpc/grpc-js), governed like HTTP: clients by service name, a server interceptor, registration of the gRPC port. */
  readonly grpc: MeshGrpc;
  /**
   * Lossless start: waits until `server` listens and answers its health path, then
   * registers, and stops gracefully on SIGTERM/SIGINT.
   */
  serve(server: Server, options?: ServeOptions): Promise<Instance>;
  /**
   * Graceful stop: health 503, deregister, wait for callers to notice, drain in-flight
   * requests, flush traces. A call during a stop (or a close) resolves when that is done.
   */
  shutdown(): Promise<void>;
  /**
   * Deregisters and stops following the registry and rules, at once. During a graceful
   * stop, resolves when the stop is done (it does not cut the drain).
   */
  close(): Promise<void>;
}
