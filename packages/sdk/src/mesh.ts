import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import {
  AuthDeniedError,
  Authorizer,
  authRules,
  bindVerifiedCaller,
  CATALOG_META_KEY,
  catalogHandler,
  forbidden,
  IDENTITY_HEADER,
  IdentitySigner,
  IdentityVerifier,
  loadCatalog,
  type MeshKey,
  publishCatalog,
  type RouteDeclaration,
  verifiedCaller,
} from '@meshlet/auth';
import { breakerRuleKind, CallExecutor } from '@meshlet/breaker';
import {
  type Clock,
  consoleLogger,
  currentContext,
  encodeTags,
  getTag,
  InMemoryKvStore,
  InMemoryRegistry,
  type Instance,
  type KvStore,
  type Logger,
  type MeshContext,
  MeshletError,
  MetaKey,
  NoMeshError,
  putTag,
  type Registry,
  type RuleKind,
  RuleRepository,
  RuleWatcher,
  runWithContext,
  SERVICE_NAME,
  systemClock,
  type TagLookup,
} from '@meshlet/core';
import {
  applyWarmup,
  FaultInjector,
  faultRuleKind,
  nextWarmupChangeAt,
  REGISTERED_AT_META,
  TagPropagation,
  type TagPropagationOptions,
  type WarmupOptions,
} from '@meshlet/dialects';
import {
  type BulkheadOptions,
  Bulkheads,
  connectRedis,
  RateLimitedError,
  RateLimiter,
  type RedisConnection,
  RedisTokenBuckets,
  ratelimitRules,
  rejection,
} from '@meshlet/ratelimit';
import { Router, type RouterOptions, routeRuleKind } from '@meshlet/route';
import { createTracing, type Tracing, type TracingOptions } from '@meshlet/trace';
import { Agent } from 'undici';
import { ADMIN_META_KEY, type AdminStatus, createAdminHandler } from './admin-handler.js';
import { type Fetch, type GovernedCallDeps, governedCall, governedFetch } from './governed-fetch.js';
import { governedRequest, type MeshRequest } from './governed-request.js';
import { type HeaderTag, inboundContext } from './inbound.js';
import { drain, type ServeOptions, waitUntilReady } from './lifecycle.js';
import { ServiceDirectory } from './service-directory.js';

export interface MeshOptions {
  /** This service's name: a DNS label (letters, digits, `-`; starts with a letter), as Spring Cloud requires. */
  readonly service: string;
  readonly version?: string;
  readonly namespace?: string;
  /** The port this service listens on; can also be given to `register()`, or found by `serve()`. */
  readonly port?: number;
  /** The address other services reach this one at. Default 127.0.0.1. */
  readonly address?: string;
  /** Default `<service>-<port>`, as Spring Cloud Consul does. */
  readonly instanceId?: string;
  /** Extra instance metadata (zone, region, lane, weight…); version and namespace are added. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Where services are found. Default: the process-wide in-memory registry. */
  readonly registry?: Registry;
  /** Where rules live (`meshlet/rules/<service>`). Default: the process-wide in-memory store. */
  readonly rules?: KvStore;
  /** Request headers lifted into custom tags at this service's edge. */
  readonly tagsFromHeaders?: readonly HeaderTag[];
  /** Routing defaults: balancer, nearby threshold, seeded random. The caller's zone/region come from metadata. */
  readonly route?: Omit<RouterOptions, 'exclusion' | 'location'>;
  /** Tracing: spans, propagation formats, trace log, metrics. Off when absent. */
  readonly tracing?: Tracing | Omit<TracingOptions, 'service' | 'version' | 'namespace' | 'instanceId'>;
  /** Distributed rate limits through Redis, and client-side bulkheads per destination. */
  readonly ratelimit?: {
    readonly redisUrl?: string;
    readonly redisTimeoutMs?: number;
    readonly bulkheads?: { readonly defaults?: BulkheadOptions; readonly services?: Readonly<Record<string, BulkheadOptions>> };
  };
  /**
   * Service auth: calls carry an identity signed with the mesh key (the first key signs,
   * all verify, for rollovers); inbound, only a verified identity is a caller, and the
   * service's `auth` rules allow or deny (403). The API catalog is served at
   * `catalogPath` (default `/meshlet/apis`) and published with the registration.
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
  /** Tag header dialects read and written (TSF, Polaris, Spring Cloud Tencent), scopes, raw pass-through headers. Default: read all, write Meshlet's. */
  readonly dialects?: TagPropagationOptions;
  /** Ramp a new instance's weight up over a window after its registration, so a cold process is not flooded. */
  readonly warmup?: WarmupOptions;
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
  /** Mount the admin status endpoint (off unless given). The token is required of callers. */
  readonly admin?: { readonly token: string; readonly path?: string };
  /** Path answered by the mesh with 200 (503 while stopping) for health checks; false to leave it to the app. Default `/health`. */
  readonly healthPath?: string | false;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** The HTTP client governed calls are sent with. Default: global fetch. */
  readonly fetch?: Fetch;
}

type NodeListener<Req extends IncomingMessage, Res extends ServerResponse> = (req: Req, res: Res) => void;
type Next = (err?: unknown) => void;

/** The part of a Fastify instance the plugin uses. */
/** The part of a Fastify reply the plugin's error handler uses. */
export interface FastifyReplyLike {
  code(status: number): FastifyReplyLike;
  headers(values: Readonly<Record<string, string>>): FastifyReplyLike;
  send(payload?: unknown): unknown;
}

export interface FastifyHookHost {
  /** Governance errors a handler threw answer 429/403; any other error is sent as Fastify would. */
  setErrorHandler(handler: (error: unknown, request: unknown, reply: FastifyReplyLike) => unknown): unknown;
  addHook(
    name: 'onRequest',
    hook: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }, done: (err?: Error) => void) => void,
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
  readonly router: Router;
  /** Breakers, timeouts and retries around governed calls; `snapshot()` for dashboards. */
  readonly breakers: CallExecutor;
  readonly rateLimiter: RateLimiter;
  readonly tracing: Tracing | undefined;
  /** True from the start of a graceful stop: the health path answers 503. */
  readonly stopping: boolean;
  /** Registers this instance; call it once the server is listening (or use serve()). */
  register(overrides?: { port?: number; address?: string }): Promise<Instance>;
  /** The registered instance, if any. */
  readonly instance: Instance | undefined;
  /** A healthy instance of `service`, chosen as a governed call from the current request would. */
  resolve(service: string): Promise<Instance>;
  /** The context of an inbound request, built from its headers. */
  contextOf(req: IncomingMessage): MeshContext;
  /** Wraps a node:http request listener: context, health path, span, rate limits. */
  httpHandler<Req extends IncomingMessage, Res extends ServerResponse>(listener: NodeListener<Req, Res>): NodeListener<Req, Res>;
  /** Express middleware: `app.use(mesh.express())`. */
  express(): (req: IncomingMessage, res: ServerResponse, next: Next) => void;
  /**
   * Express error middleware, after the routes: a limit or auth rule a decorated handler
   * threw (`@RateLimit`, `@Authorize`) becomes its 429 or 403; other errors go on.
   */
  expressErrors(): (err: unknown, req: IncomingMessage, res: ServerResponse, next: Next) => void;
  /** Fastify plugin: `app.register(mesh.fastify)`. */
  readonly fastify: FastifyPlugin;
  /**
   * Lossless start: waits until `server` listens and answers its health path, then
   * registers, and stops gracefully on SIGTERM/SIGINT.
   */
  serve(server: Server, options?: ServeOptions): Promise<Instance>;
  /** Graceful stop: health 503, deregister, wait for callers to notice, drain in-flight requests, flush traces. */
  shutdown(): Promise<void>;
  /** Deregisters and stops following the registry and rules, at once. */
  close(): Promise<void>;
}

let processRegistry: InMemoryRegistry | undefined;
/** The in-memory registry shared by every mesh in this process that was not given one. */
export function defaultRegistry(): InMemoryRegistry {
  processRegistry ??= new InMemoryRegistry();
  return processRegistry;
}

let processRules: InMemoryKvStore | undefined;
/** The in-memory rule store shared by every mesh in this process that was not given one. */
export function defaultRuleStore(): InMemoryKvStore {
  processRules ??= new InMemoryKvStore();
  return processRules;
}

/** The rule kinds a mesh reads. */
export const ruleKinds: readonly RuleKind<unknown>[] = [routeRuleKind, breakerRuleKind, ratelimitRules, authRules, faultRuleKind];

/** How long the first call to a service waits for its rules before going on without them. */
const RULES_FIRST_LOAD_MS = 3_000;

let lastMesh: Mesh | undefined;

/** Creates a mesh for one service. Invalid options throw MeshletError `MESHLET_BAD_OPTION` naming the field. */
export function createMesh(options: MeshOptions): Mesh {
  const service = options.service;
  if (typeof service !== 'string' || !SERVICE_NAME.test(service)) {
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `service: "${String(service)}" is not a DNS label (letters, digits and "-", starting with a letter, at most 63): Spring clients cannot call such a name`,
    );
  }
  if (options.port !== undefined && !validPort(options.port)) {
    throw new MeshletError('MESHLET_BAD_OPTION', `port: ${options.port} is not a port number (1-65535)`);
  }
  const version = options.version ?? '0.0.0';
  const namespace = options.namespace ?? 'default';
  const registry = options.registry ?? defaultRegistry();
  const kv = options.rules ?? defaultRuleStore();
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? consoleLogger('warn', service);
  const healthPath = options.healthPath === undefined ? '/health' : options.healthPath;
  const metadata = options.metadata ?? {};

  const tracing: Tracing | undefined =
    options.tracing === undefined
      ? undefined
      : 'startClientSpan' in options.tracing
        ? options.tracing
        : createTracing({ ...options.tracing, service, version, namespace, clock });

  const executor = new CallExecutor({ clock, logger });
  const router = new Router({
    ...options.route,
    exclusion: executor.instanceBreakers,
    location: {
      ...(metadata[MetaKey.zone] ? { zone: metadata[MetaKey.zone] } : {}),
      ...(metadata[MetaKey.region] ? { region: metadata[MetaKey.region] } : {}),
    },
  });
  const watchers = new Map<string, RuleWatcher>();
  const watchRules = (name: string): RuleWatcher => {
    let w = watchers.get(name);
    if (!w) {
      w = new RuleWatcher({ kv, service: name, kinds: ruleKinds, logger }).start();
      watchers.set(name, w);
    }
    return w;
  };

  const propagation = new TagPropagation(options.dialects);
  const faults = new Map<string, FaultInjector>();
  const warmupTimers = new Map<string, () => void>();
  /** Feeds routing, with warm-up weights when configured; re-feeds once when the ramp next moves. */
  const feedRouter = (destination: string, instances: readonly Instance[]) => {
    warmupTimers.get(destination)?.();
    warmupTimers.delete(destination);
    const warmup = options.warmup;
    if (!warmup || warmup.windowMs <= 0) return router.setInstances(destination, instances);
    const now = clock.now();
    router.setInstances(destination, applyWarmup(instances, now, warmup));
    const at = nextWarmupChangeAt(instances, now, warmup);
    if (at !== undefined)
      warmupTimers.set(
        destination,
        clock.setTimeout(() => feedRouter(destination, instances), at - now),
      );
  };

  const directory = new ServiceDirectory(registry, {
    async follow(destination) {
      const watcher = watchRules(destination);
      router.followRules(destination, watcher);
      executor.follow(watcher, destination);
      const injector = new FaultInjector();
      injector.follow(watcher);
      faults.set(destination, injector);
      // A rule stored before the first call (a gray release) applies from that call on; a
      // rule store that does not answer does not block calls for long.
      await Promise.race([watcher.ready, new Promise((r) => setTimeout(r, RULES_FIRST_LOAD_MS).unref())]);
    },
    instances(destination, instances) {
      feedRouter(destination, options.instanceFilter ? options.instanceFilter(destination, instances) : instances);
      executor.setInstances(
        destination,
        instances.map((i) => i.id),
      );
    },
  });

  let redis: RedisConnection | undefined;
  if (options.ratelimit?.redisUrl) redis = connectRedis(options.ratelimit.redisUrl, { logger });
  const rateLimiter = new RateLimiter({
    service,
    clock,
    logger,
    ...(redis
      ? {
          redis: new RedisTokenBuckets({
            send: redis.send,
            clock,
            ...(options.ratelimit?.redisTimeoutMs ? { timeoutMs: options.ratelimit.redisTimeoutMs } : {}),
          }),
        }
      : {}),
    // The local share of a distributed limit divides by the healthy instances of this service.
    instances: () => Math.max(1, directory.instances(service).length),
  });
  rateLimiter.follow(watchRules(service));
  if (redis) void directory.ensure(service).catch(() => {});
  const bulkheads = options.ratelimit?.bulkheads ? new Bulkheads(options.ratelimit.bulkheads) : undefined;
  const rules = new RuleRepository({ kv, kinds: ruleKinds, clock });

  const auth = options.auth;
  const authKey = auth?.keys[0];
  if (auth && !authKey) throw new MeshletError('MESHLET_BAD_OPTION', 'auth.keys: give at least one mesh key (meshKey(id, base64))');
  // Auth rules apply whenever the service's document has them (TSF authority rules match
  // tags); only with mesh keys is there a verified caller for rules on the caller itself.
  const authorizer = new Authorizer({ ...(auth?.defaultAction ? { defaultAction: auth.defaultAction } : {}) });
  authorizer.follow(watchRules(service));
  const verifier = auth
    ? new IdentityVerifier({ keys: [...auth.keys], clock, audience: service, ...(auth.maxSkewMs ? { maxSkewMs: auth.maxSkewMs } : {}) })
    : undefined;
  const signer = authKey
    ? new IdentitySigner({
        identity: { service, namespace, instance: service, version },
        key: authKey,
        clock,
        ...(auth?.ttlMs ? { ttlMs: auth.ttlMs } : {}),
      })
    : undefined;
  const catalog = auth
    ? loadCatalog({
        ...(auth.openapiFiles ? { openapiFiles: auth.openapiFiles } : {}),
        ...(auth.routes ? { routes: auth.routes } : {}),
        logger,
      })
    : undefined;
  let loadedCatalog: Awaited<NonNullable<typeof catalog>> | undefined;
  void catalog?.then((c) => {
    loadedCatalog = c;
  });
  const serveCatalog =
    auth && auth.catalogPath !== false
      ? catalogHandler(() => loadedCatalog ?? { apis: [], hash: '' }, { service, ...(auth.catalogPath ? { path: auth.catalogPath } : {}) })
      : undefined;

  const adminPath = options.admin?.path ?? '/_meshlet';
  const adminStatus = (): AdminStatus => {
    const registryStatus = (registry as { status?: { degraded: boolean; errors: number } }).status;
    return {
      service,
      ...(instance ? { instance: instance.id } : {}),
      version,
      rules: [...watchers.entries()].map(([name, w]) => ({ service: name, ...w.status })),
      breakers: executor.snapshot(),
      limiter: rateLimiter.stats,
      registry: {
        mode: registry.constructor.name,
        degraded: registryStatus?.degraded ?? false,
        ...(registryStatus ? { errors: registryStatus.errors } : {}),
      },
      degraded: { registry: registryStatus?.degraded ?? false, ratelimitRedis: rateLimiter.stats.degraded },
    };
  };
  const adminHandler = options.admin ? createAdminHandler({ token: options.admin.token, path: adminPath, status: adminStatus }) : undefined;

  let instance: Instance | undefined;
  let stopping = false;
  let servedBy: { server: Server; options: ServeOptions } | undefined;

  const callerHeader = () =>
    encodeTags([
      ['service', service],
      ['version', version],
      ['namespace', namespace],
      ...(instance ? [['instance', instance.id] as const] : []),
    ]).header;
  let callerValue = callerHeader();

  const callDeps: GovernedCallDeps = {
    directory,
    router,
    executor,
    tracing,
    bulkheads,
    propagation,
    faults: (name) => faults.get(name),
    callerHeader: () => callerValue,
    identityHeader: signer ? (audience) => [IDENTITY_HEADER, signer.header(audience)] : undefined,
    clock,
    logger,
  };
  const pipeline = governedCall(callDeps);
  const fetchImpl = governedFetch({ ...callDeps, send: options.fetch ?? globalThis.fetch }, pipeline);
  const agent = new Agent();
  const requestImpl = governedRequest({ directory, dispatcher: agent }, pipeline);
  const inbound = { tagsFromHeaders: options.tagsFromHeaders ?? [], propagation, logger, owner: undefined as unknown };

  /**
   * The context of an inbound request. With auth on, the caller is the verified identity
   * or nobody: never the caller header, which anyone can type.
   */
  const contextOf = (req: IncomingMessage): MeshContext => withInboundTags(verifiedContextOf(req));
  /** Adds the tags `inboundTags` derives, leaving every tag that arrived as it was. */
  const withInboundTags = (ctx: MeshContext): MeshContext => {
    const derive = options.inboundTags;
    if (!derive) return ctx;
    const extra = derive((k) => getTag(k, ctx));
    if (extra) for (const [k, v] of Object.entries(extra)) if (!ctx.tags.has(k)) putTag(ctx.tags as Map<string, string>, k, v);
    return ctx;
  };
  const verifiedContextOf = (req: IncomingMessage): MeshContext => {
    const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
    if (!verifier) return inboundContext(req.headers, req.method ?? 'GET', url, inbound);
    const raw = req.headers[IDENTITY_HEADER];
    const identity = verifier.verify(Array.isArray(raw) ? raw.join(', ') : raw);
    const caller = identity
      ? {
          service: identity.service,
          namespace: identity.namespace,
          instance: identity.instance,
          ...(identity.version ? { version: identity.version } : {}),
        }
      : {};
    const ctx = inboundContext(req.headers, req.method ?? 'GET', url, inbound, caller);
    bindVerifiedCaller(ctx, identity);
    return ctx;
  };

  /**
   * The inbound path shared by every framework: admin endpoint, API catalog, health,
   * context (with the verified caller), auth (403), span, rate limits (429), then `next`
   * inside the context. `respond` answers without the app.
   */
  const admit = (req: IncomingMessage, res: ServerResponse, respond: Respond, next: () => void): void => {
    if (adminHandler && req.url?.startsWith(adminPath)) adminHandler(req, res, () => admitApp(req, res, respond, next));
    else admitApp(req, res, respond, next);
  };
  const admitApp = (req: IncomingMessage, res: ServerResponse, respond: Respond, next: () => void): void => {
    if (serveCatalog?.(req, res)) return;
    const ctx = contextOf(req);
    const path = ctx.request?.path ?? '/';
    if (healthPath && path === healthPath && (req.method === 'GET' || req.method === 'HEAD')) {
      respond(stopping ? 503 : 200, { 'content-type': 'application/json' }, JSON.stringify({ status: stopping ? 'DOWN' : 'UP' }));
      return;
    }
    const allowed = authorizer.decide(verifiedCaller(ctx), { method: req.method ?? 'GET', path }, (k) => getTag(k, ctx));
    if (!allowed.allowed) {
      const f = forbidden(allowed, service);
      respond(f.status, f.headers, f.body);
      return;
    }
    const span = tracing?.startServerSpan(req.headers, req.method ?? 'GET', undefined, {
      target: req.url ?? '/',
      ...(ctx.caller.service ? { caller: ctx.caller.service } : {}),
    });
    if (span) {
      res.once('close', () => {
        const route = (req as { route?: { path?: string }; baseUrl?: string }).route?.path;
        if (typeof route === 'string') span.setRoute(`${(req as { baseUrl?: string }).baseUrl ?? ''}${route}`);
        span.end(res.statusCode);
      });
    }
    const go = () => (span ? span.run(() => runWithContext(ctx, next)) : runWithContext(ctx, next));
    const decision = rateLimiter.decide({ method: req.method ?? 'GET', path, tag: (k) => getTag(k, ctx) });
    const act = (d: Awaited<typeof decision>) => {
      if (d.allowed) return go();
      const r = rejection(d, service);
      respond(r.status, r.headers, r.body);
    };
    if (decision instanceof Promise)
      decision.then(act, (err: Error) => {
        logger.error('rate limiter failed; admitting', { error: err.message });
        go();
      });
    else act(decision);
  };

  /** The response for a governance error a handler threw (a decorator's limit or auth rule). */
  const governedError = (err: unknown) =>
    err instanceof RateLimitedError
      ? rejection(err.decision, service)
      : err instanceof AuthDeniedError
        ? forbidden(err.decision, service)
        : undefined;

  const writeNode =
    (res: ServerResponse): Respond =>
    (status, headers, body) => {
      res.writeHead(status, headers);
      res.end(body);
    };

  const fastifyPlugin: FastifyPlugin = (app, _opts, done) => {
    app.addHook('onRequest', (request, reply, next) =>
      admit(
        request.raw,
        reply.raw,
        (status, headers, body) => {
          reply.hijack();
          writeNode(reply.raw)(status, headers, body);
        },
        () => next(),
      ),
    );
    app.setErrorHandler((error, _request, reply) => {
      const answer = governedError(error);
      if (!answer) return reply.send(error);
      return reply.code(answer.status).headers(answer.headers).send(answer.body);
    });
    done();
  };
  // What fastify-plugin sets: the hook applies to the whole app, not only an encapsulated child.
  const fastify = Object.assign(fastifyPlugin, { [Symbol.for('skip-override')]: true });

  const register = async (overrides: { port?: number; address?: string } = {}): Promise<Instance> => {
    const port = overrides.port ?? options.port;
    if (port === undefined || !validPort(port)) {
      throw new MeshletError(
        'MESHLET_BAD_OPTION',
        `port: ${String(port)} — give createMesh({ port }) or register({ port }) the port the server listens on`,
      );
    }
    const address = overrides.address ?? options.address ?? '127.0.0.1';
    const extra: Record<string, string> = { [REGISTERED_AT_META]: String(Math.round(clock.now())) };
    if (adminHandler) extra[ADMIN_META_KEY] = adminPath;
    if (catalog) {
      const c = await catalog;
      if (c.apis.length > 0) {
        try {
          extra[CATALOG_META_KEY] = await publishCatalog(kv, service, c);
        } catch (err) {
          logger.warn('API catalog not published; registering without it', { code: 'MESHLET_BAD_CATALOG', error: (err as Error).message });
        }
      }
    }
    instance = {
      id: options.instanceId ?? `${service}-${port}`,
      service,
      address,
      port,
      tags: [],
      metadata: { [MetaKey.secure]: 'false', ...extra, ...metadata, [MetaKey.version]: version, [MetaKey.namespace]: namespace },
      health: 'passing',
    };
    callerValue = callerHeader();
    signer?.setIdentity({ service, namespace, instance: instance.id, version });
    await registry.register(instance);
    return instance;
  };

  const deregister = async () => {
    if (!instance) return;
    const id = instance.id;
    instance = undefined;
    try {
      await registry.deregister(id);
    } catch (err) {
      logger.warn('deregistration failed; the registry will reap the instance when its check fails', { error: (err as Error).message });
    }
  };

  const closeAll = async () => {
    for (const cancel of warmupTimers.values()) cancel();
    warmupTimers.clear();
    directory.close();
    router.close();
    for (const w of watchers.values()) w.close();
    watchers.clear();
    await tracing?.shutdown();
    await redis?.close();
    // Destroy, not close: a body the application never read would hold close() forever.
    await agent.destroy();
    if (lastMesh === mesh) lastMesh = undefined;
  };

  let signalHandler: (() => void) | undefined;
  const mesh: Mesh = {
    service,
    version,
    namespace,
    registry,
    logger,
    fetch: fetchImpl,
    request: requestImpl,
    rules,
    router,
    breakers: executor,
    rateLimiter,
    tracing,
    get stopping() {
      return stopping;
    },
    get instance() {
      return instance;
    },
    register,
    async resolve(name) {
      await directory.require(name);
      const ctx = currentContext();
      return router.pick(name, (t) => (t === 'destination.service' ? name : getTag(t, ctx)));
    },
    contextOf,
    httpHandler: (listener) => (req, res) =>
      admit(req, res, writeNode(res), () => {
        const result: unknown = listener(req, res);
        if (result instanceof Promise) {
          result.catch((err: unknown) => {
            const answer = governedError(err);
            if (!answer) return Promise.reject(err); // not ours: surfaces as it would without the mesh
            if (!res.headersSent) writeNode(res)(answer.status, answer.headers, answer.body);
          });
        }
      }),
    express: () => (req, res, next) => admit(req, res, writeNode(res), () => next()),
    expressErrors: () => (err, _req, res, next) => {
      const answer = governedError(err);
      if (!answer || res.headersSent) return next(err);
      writeNode(res)(answer.status, answer.headers, answer.body);
    },
    fastify,
    async serve(server, serveOptions = {}) {
      const path = serveOptions.healthPath ?? (healthPath || '/health');
      const port = await waitUntilReady(server, path, serveOptions.readinessTimeoutMs ?? 30_000);
      servedBy = { server, options: serveOptions };
      const registered = await register({ port });
      const signals = serveOptions.signals ?? ['SIGTERM', 'SIGINT'];
      if (signals.length > 0 && !signalHandler) {
        signalHandler = () => {
          logger.info('graceful stop', { service });
          void mesh.shutdown().then(
            () => {
              if (serveOptions.exitOnSignal !== false) process.exit(0);
            },
            (err: Error) => {
              logger.error('graceful stop failed', { error: err.message });
              process.exit(1);
            },
          );
        };
        for (const s of signals) process.once(s, signalHandler);
      }
      return registered;
    },
    async shutdown() {
      if (stopping) return;
      stopping = true;
      const opts = servedBy?.options ?? {};
      await deregister();
      const delay = opts.deregisterDelayMs ?? (registry instanceof InMemoryRegistry ? 0 : 35_000);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      if (servedBy) await drain(servedBy.server, opts.drainTimeoutMs ?? 10_000);
      await closeAll();
    },
    async close() {
      await deregister();
      await closeAll();
    },
  };
  inbound.owner = mesh;
  lastMesh = mesh;
  return mesh;
}

type Respond = (status: number, headers: Readonly<Record<string, string>>, body: string) => void;

function validPort(port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < 65536;
}

/**
 * fetch bound to the current mesh: the one serving the current request, else the mesh
 * created last. Same signature as global fetch.
 */
export const fetch: Fetch = (input, init) => {
  const owner = currentContext().owner as Mesh | undefined;
  const mesh = owner ?? lastMesh;
  if (!mesh) return Promise.reject(new NoMeshError());
  return mesh.fetch(input, init);
};
